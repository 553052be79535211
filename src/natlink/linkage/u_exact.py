"""u probabilities computed exactly from value frequencies, for the levels where that is possible.

A comparison level's u is the share of random pairs of distinct records (among pairs where the
comparison is not NULL) that fall in that level. Splink estimates it by sampling pairs, which
cannot see a level as rare as "same NHS number" in a large population (2e6 sampled pairs of a
2e6-record population hold about one such pair). For an equality level it is instead a count:
the pairs of distinct records agreeing on a column are ``sum over values v of n_v (n_v - 1)``
(ordered pairs) out of ``N (N - 1)``. A level is also "not in any earlier level", which
inclusion-exclusion over the earlier equality levels turns into counts of groups on column sets:

    pairs(level k) = sum over S, subsets of the earlier levels, of (-1)^|S| * pairs(k and all of S)

Only aggregates run (one GROUPING SETS pass over the records, then sums of its group counts); no
record reaches the driver.

Levels computed: every ``col_l = col_r`` level up to the first level of another kind, and the
ELSE level when every level before it was computed. Not computed (None, left to sampling): a level
of any other SQL, and every level after one. A cross-column level such as
``tk_dob_swapped_l = tk_dob_r`` is one of those: which record is on the left follows the pair's
unique-id order, which value counts do not see, so its count is exact only when the relation is
symmetric, a property of the encoding this module does not assume.

It reads nothing but the DataFrame and the Splink settings dict (the columns named by the levels,
and the source dataset column for ``link_only``), so it runs wherever those columns are: at the
linkage centre on a token union, or at a data provider on its own per-field tokens.
"""

from __future__ import annotations

import re
from functools import reduce
from itertools import combinations
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink.errors import SchemaError

__all__ = ["exact_u", "level_plan"]

_EXACT = re.compile(r"^\s*\(?\s*`?([A-Za-z_][A-Za-z0-9_]*)_l`?\s*=\s*`?\1_r`?\s*\)?\s*$")
_NULL_PART = re.compile(r"^\s*\(?\s*`?([A-Za-z_][A-Za-z0-9_]*)_([lr])`?\s+IS\s+NULL\s*\)?\s*$", re.IGNORECASE)
NULL, ELSE = "NULL", "ELSE"  # level kinds besides an equality column (None: any other SQL)
_WIDE = "decimal(38,0)"  # n (n - 1) summed over a population: exact where a long could overflow


def _null_columns(level: dict[str, Any]) -> list[str] | None:
    """The columns of a null level ``a_l IS NULL OR a_r IS NULL OR ...``; None if it is other SQL."""
    parts = re.split(r"\s+OR\s+", level["sql_condition"].strip(), flags=re.IGNORECASE)
    cols = []
    for part in parts:
        m = _NULL_PART.match(part)
        if not m:
            return None
        cols.append(m.group(1))
    return list(dict.fromkeys(cols))


def level_plan(comparison: dict[str, Any]) -> tuple[list[str] | None, list[str | None]]:
    """(null columns, per level: ``"NULL"``, its equality column, ``"ELSE"``, or None) for one comparison.

    The null columns are None when the null level is SQL this module cannot read (then nothing of
    the comparison is computed); a comparison without a null level has ``[]``.
    """
    nulls: list[str] | None = []
    kinds: list[str | None] = []
    for level in comparison["comparison_levels"]:
        if level.get("is_null_level"):
            nulls = _null_columns(level)
            kinds.append(NULL)
            continue
        sql = level["sql_condition"].strip()
        if sql.upper() == ELSE:
            kinds.append(ELSE)
            continue
        m = _EXACT.match(sql)
        kinds.append(m.group(1) if m else None)
    return nulls, kinds


def _count_pairs(df: DataFrame, sets: dict[str, tuple[str, ...]], source: str | None) -> dict[str, int]:
    """Ordered pairs of distinct records equal (and non-null) on every column of each set, in one
    pass: one GROUPING SETS aggregate (each set's groups, told apart by ``grouping()`` flags), then
    sum n (n - 1) per set; for link_only, n^2 - sum over sources of n_s^2 (pairs across sources)."""
    columns = sorted({c for cols in sets.values() for c in cols})
    extra = [source] if source else []
    flags = [F.grouping(c).alias(f"g_{i}") for i, c in enumerate(columns)]
    grouped = df.groupingSets([[*cols, *extra] for cols in sets.values()], *columns, *extra).agg(
        F.count(F.lit(1)).cast(_WIDE).alias("n"), *flags
    )
    # A group whose in-set value is NULL is not agreement (SQL equality): drop it.
    present = reduce(lambda a, b: a & b, [(F.col(f"g_{i}") == 1) | F.col(c).isNotNull() for i, c in enumerate(columns)])
    if source:
        present = present & F.col(source).isNotNull()
    grouped = grouped.where(present)
    keys = [f"g_{i}" for i in range(len(columns))]
    if source is None:
        pairs = F.sum(F.col("n") * (F.col("n") - 1))
    else:
        grouped = grouped.groupBy(*keys, *columns).agg(F.sum("n").alias("n"), F.sum(F.col("n") * F.col("n")).alias("sq"))
        pairs = F.sum(F.col("n") * F.col("n") - F.col("sq"))
    rows = grouped.groupBy(*keys).agg(pairs.cast(_WIDE).alias("pairs")).collect()  # one row per set
    by_flags = {tuple(int(r[k]) for k in keys): int(r["pairs"] or 0) for r in rows}
    return {key: by_flags.get(tuple(0 if c in cols else 1 for c in columns), 0) for key, cols in sets.items()}


def _count_totals(df: DataFrame, conditions: dict[str, Any], source: str | None) -> dict[str, int]:
    """Ordered pairs of distinct records meeting each condition: N (N - 1), or across sources."""
    n = {key: F.sum(F.when(cond, 1).otherwise(0)).cast(_WIDE).alias(f"n_{i}") for i, (key, cond) in enumerate(conditions.items())}
    if source is None:
        row = df.agg(*n.values()).first()
        return {key: int(row[f"n_{i}"] or 0) * (int(row[f"n_{i}"] or 0) - 1) for i, key in enumerate(conditions)}
    rows = df.where(F.col(source).isNotNull()).groupBy(source).agg(*n.values()).collect()  # one row per source
    out = {}
    for i, key in enumerate(conditions):
        per_source = [int(r[f"n_{i}"] or 0) for r in rows]
        out[key] = sum(per_source) ** 2 - sum(x * x for x in per_source)
    return out


def _computable(kinds: list[str | None]) -> list[int]:
    """Indexes of the equality levels before the first level of another kind (the null level aside)."""
    out = []
    for i, kind in enumerate(kinds):
        if kind == NULL:
            continue
        if kind is None or kind == ELSE:
            break
        out.append(i)
    return out


def exact_u(df: DataFrame, settings: dict[str, Any]) -> dict[str, list[float | None]]:
    """u per level of every comparison (aligned with its ``comparison_levels``), None where not exact.

    The null level's entry is always None (a null level has no u). A comparison whose pairs are
    all NULL gets None everywhere. Refused with :class:`SchemaError` when a column a computable
    level names is absent from ``df`` (or, for ``link_only``, the source dataset column).
    """
    link_type = settings.get("link_type", "dedupe_only")
    source = None
    if link_type == "link_only":
        source = settings.get("source_dataset_column_name") or "source_dataset"
        if source not in df.columns:
            raise SchemaError(f"exact u for link_only needs the source dataset column {source!r}; present: {sorted(df.columns)}")

    plans: dict[str, tuple[list[str], list[str | None], list[int]]] = {}
    derived: list[Any] = []  # per comparison, its columns NULL wherever the comparison is NULL
    sets: dict[str, tuple[str, ...]] = {}
    conditions: dict[str, Any] = {}
    for k, comparison in enumerate(settings.get("comparisons", [])):
        name = comparison["output_column_name"]
        nulls, kinds = level_plan(comparison)
        levels = _computable(kinds) if nulls is not None else []
        plans[name] = (nulls or [], kinds, levels)
        if not levels:
            continue
        missing = sorted(({kinds[i] for i in levels} | set(nulls or [])) - set(df.columns))
        if missing:
            raise SchemaError(f"exact u for comparison {name}: columns {missing} are absent; present: {sorted(df.columns)}")
        cond = reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in nulls]) if nulls else F.lit(True)
        conditions[name] = cond
        used = {kinds[i] for i in levels}
        derived += [F.when(cond, F.col(c)).alias(f"c{k}__{c}") for c in sorted(used)]
        for pos, i in enumerate(levels):
            earlier = levels[:pos]
            for size in range(len(earlier) + 1):
                for subset in combinations(earlier, size):
                    cols = tuple(sorted({kinds[i], *(kinds[j] for j in subset)}))
                    sets[f"{name}|{','.join(cols)}"] = tuple(f"c{k}__{c}" for c in cols)

    counts: dict[str, int] = {}
    if sets:
        counts = _count_pairs(df.select(*derived, *([source] if source else [])), sets, source)
        counts.update({f"{name}|": n for name, n in _count_totals(df, conditions, source).items()})

    out: dict[str, list[float | None]] = {}
    for name, (_nulls, kinds, levels) in plans.items():
        u: list[float | None] = [None] * len(kinds)
        total = counts.get(f"{name}|", 0)
        if not levels or total == 0:
            out[name] = u
            continue
        for pos, i in enumerate(levels):
            earlier = levels[:pos]
            count = 0
            for size in range(len(earlier) + 1):
                for subset in combinations(earlier, size):
                    cols = tuple(sorted({kinds[i], *(kinds[j] for j in subset)}))
                    count += (-1) ** size * counts[f"{name}|{','.join(cols)}"]
            u[i] = count / total
        first_other = next((i for i, k in enumerate(kinds) if k != NULL and i not in levels), None)
        if first_other is not None and kinds[first_other] == ELSE:
            u[first_other] = max(0.0, 1.0 - sum(u[i] for i in levels))
        out[name] = u
    return out
