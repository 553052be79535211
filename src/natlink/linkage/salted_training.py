"""Training on block-salted token tables (:mod:`natlink.tokens.salted`): u at the providers,
lambda and m at the centre.

A salted token equals another only inside one block, so the centre cannot score random pairs
(today's u estimate) nor count value frequencies. The parameters come from where they can:

* **u, at each provider** (:func:`provider_u`): from the provider's own records, on per-field
  tokens it computes and never exports; what it ships (in its signed manifest) is one rate per
  comparison level and its record count. The centre pools the providers' rates weighted by their
  pairs (:func:`pooled_u`) and fixes them.
* **lambda, at the centre** (:func:`estimate_lambda`): pairs meeting the deterministic rules,
  counted inside the blocks of the first prediction rule the deterministic rule contains (equal
  salted tokens of its other fields), over the recall, as Splink's estimator does.
* **m, at the centre** (:func:`train_salted`): Splink's EM with u fixed, one session per EM rule,
  inside the blocks of the first prediction rule containing the EM rule's columns; the session's
  blocking names that rule's columns, so Splink leaves the comparisons they decide out of it.

A ``link_only`` model: lambda and EM count and compare pairs of records from different datasets
only (Splink's ``link_only`` with the ``dataset`` column as its source dataset column). u still
comes from each provider's own record pairs, all of one dataset: salted tokens cannot show the
centre which values two datasets share, so the providers' rates stand in for those of pairs
across datasets (an assumption that the datasets' values are distributed alike).

The trained model is the model's own Splink settings (its logical rules, no term frequencies),
which :func:`natlink.linkage.blocking.rules_for` turns into per-rule column maps at link time.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Mapping, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.model import ModelConfig
from natlink.errors import ConfigError, EncodingMismatchError, ModelError, TrainingError
from natlink.linkage.blocking import group_pairs
from natlink.linkage.engine import compact_columns
from natlink.linkage.model_store import TrainedModel, parameter_table
from natlink.linkage.settings import cross_source, for_splink, rule_sql, splink_settings
from natlink.linkage.completeness import TrainingEvidence, complete_levels
from natlink.linkage.u_exact import exact_u
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.salted import SaltedScheme

__all__ = ["check_scheme", "estimate_lambda", "long_frame", "pooled_u", "provider_u", "train_salted"]

log = logging.getLogger(__name__)

BLOCK = C.token("block")
RULE = "rule"


# --------------------------------------------------------------------------------------------
# At a provider


def provider_u(inner: DataFrame, settings: Mapping[str, Any], *, max_pairs: float, seed: int, max_records: int = 1_000_000) -> dict[str, Any]:
    """u per comparison level from a provider's own records (``inner``: per-field tokens named as
    the model's columns, :func:`natlink.tokens.salted.inner_tokens`).

    Equality levels are counted exactly over all the provider's record pairs
    (:func:`natlink.linkage.u_exact.exact_u`, aggregates only); any other level (e.g. day and month
    swapped) from random pairs scored by Splink (DuckDB, on the driver, tokens compacted to 64-bit
    integers, records sampled to at most ``max_records``). The result holds rates, the methods
    and a record count: nothing per value.
    """
    columns = [c for c in inner.columns if C.is_token(c)]
    slim = inner.select(F.concat_ws(":", C.DATASET, C.RECORD_ID).alias(C.UNIQUE_ID), *compact_columns(inner, columns))
    # Computed once (the inner tokens read the source and hash every field), read three times
    # below: a count, the exact counts and the sample. Spill is encrypted (spark.io.encryption).
    slim = slim.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _rates(slim, settings, max_pairs=max_pairs, seed=seed, max_records=max_records)
    finally:
        slim.unpersist()


def _rates(slim: DataFrame, settings: Mapping[str, Any], *, max_pairs: float, seed: int, max_records: int) -> dict[str, Any]:
    n = int(slim.count())
    if n < 2:
        raise ModelError(f"u at the provider needs two or more records, not {n}")
    s = copy.deepcopy(dict(settings))
    # A provider holds one dataset: u over all its pairs, whatever the model's link type.
    s.update(unique_id_column_name=C.UNIQUE_ID, blocking_rules_to_generate_predictions=[], link_type="dedupe_only")
    s.pop("source_dataset_column_name", None)
    exact = exact_u(slim, s)
    sampled: dict[str, list[float | None]] = {}
    sampled_pairs = 0
    if any(u is None for c in s["comparisons"] for u, lv in zip(exact.get(c["output_column_name"], []), c["comparison_levels"]) if not lv.get("is_null_level")):
        from splink import DuckDBAPI, Linker

        fraction = 1.0 if n <= max_records else max_records / n
        table = (slim if fraction >= 1.0 else slim.sample(fraction=fraction, seed=seed)).toArrow()
        linker = Linker(DuckDBAPI().register(table), s, log_level=logging.ERROR)
        linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
        trained = linker.misc.save_model_to_json()
        sampled = {c["output_column_name"]: [lv.get("u_probability") for lv in c["comparison_levels"]] for c in trained["comparisons"]}
        sampled_pairs = int(min(max_pairs, table.num_rows * (table.num_rows - 1) // 2))
    levels, methods = {}, {}
    for c in s["comparisons"]:
        name = c["output_column_name"]
        e, r = exact.get(name) or [None] * len(c["comparison_levels"]), sampled.get(name) or [None] * len(c["comparison_levels"])
        levels[name] = [x if x is not None else y for x, y in zip(e, r)]
        methods[name] = ["exact" if x is not None else ("sampled" if y is not None else None) for x, y in zip(e, r)]
    return {"records": n, "sampled_pairs": sampled_pairs, "levels": levels, "methods": methods}


# --------------------------------------------------------------------------------------------
# At the centre


def check_scheme(manifests: Sequence[TokenManifest], settings: Mapping[str, Any]) -> SaltedScheme | None:
    """The token tables' salted scheme (None for deterministic tables), refused unless the model's
    rules and compared fields are the ones the tables were made with."""
    schemes = {m.dataset: m.scheme for m in manifests}
    salted = [s for s in schemes.values() if s is not None]
    if not salted:
        return None
    if len(salted) != len(schemes) or len({s.fingerprint for s in salted}) != 1:
        raise EncodingMismatchError(f"token tables mix encodings: {sorted((d, s.fingerprint if s else 'deterministic') for d, s in schemes.items())}")
    scheme = salted[0]
    wanted = SaltedScheme.from_settings(settings)
    if wanted.rules != scheme.rules or not set(wanted.fields) <= set(scheme.fields):
        raise EncodingMismatchError(
            f"the model's prediction rules {['+'.join(r) for r in wanted.rules]} and compared fields {list(wanted.fields)} are not "
            f"those the token tables were salted with (rules {['+'.join(r) for r in scheme.rules]}, fields {list(scheme.fields)}, "
            f"{scheme.fingerprint}): salted tokens depend on the rules; re-tokenise with this model or use theirs"
        )
    return scheme


def pooled_u(manifests: Sequence[TokenManifest]) -> dict[str, list[float | None]]:
    """Each level's u averaged over the providers, weighted by their record pairs n(n-1)."""
    totals: dict[str, list[float]] = {}
    weights: dict[str, list[float]] = {}
    for m in manifests:
        u = m.data["u"]
        w = float(u["records"]) * (float(u["records"]) - 1)
        for name, levels in u["levels"].items():
            t, ws = totals.setdefault(name, [0.0] * len(levels)), weights.setdefault(name, [0.0] * len(levels))
            if len(t) != len(levels):
                raise EncodingMismatchError(f"providers' u aggregates disagree on the levels of comparison {name!r}")
            for i, value in enumerate(levels):
                if value is not None:
                    t[i] += w * float(value)
                    ws[i] += w
    return {name: [t / w if w else None for t, w in zip(totals[name], weights[name])] for name in totals}


def with_fixed_u(settings: Mapping[str, Any], u: Mapping[str, list[float | None]]) -> dict[str, Any]:
    """``settings`` with every non-null level's u set from ``u`` and fixed. A level no provider
    could rate, or rated 0 (no pair of any provider at that level), is left without u for
    :func:`natlink.linkage.train.complete_levels` to refuse or floor (``training.allow_unobserved``)."""
    s = copy.deepcopy(dict(settings))
    for comp in s["comparisons"]:
        name = comp["output_column_name"]
        rates = u.get(name)
        if rates is None or len(rates) != len(comp["comparison_levels"]):
            raise EncodingMismatchError(f"the providers' u aggregates have no rates for comparison {name!r} as this model defines it")
        for level, rate in zip(comp["comparison_levels"], rates):
            if level.get("is_null_level") or not rate:
                continue
            level["u_probability"] = float(rate)
            level["fix_u_probability"] = True
    return s


def _first_rule(scheme: SaltedScheme, columns: Sequence[str], *, contains: bool) -> int:
    """The first prediction rule whose fields contain (``contains``) or lie within ``columns``."""
    wanted = {c[len(C.TOKEN_PREFIX):] for c in columns}
    for i, rule in enumerate(scheme.rules):
        if (wanted <= set(rule)) if contains else (set(rule) <= wanted):
            return i
    how = "contains" if contains else "lies within"
    raise ConfigError(f"no prediction rule {how} {sorted(columns)}: with salted tokens, training rules must fit the prediction rules")


def estimate_lambda(
    tokens: DataFrame, scheme: SaltedScheme, rules: Sequence[Sequence[str] | str], recall: float, n_records: int,
    *, by_dataset: Mapping[str, int] | None = None,
) -> float:
    """P(two random records match): pairs meeting any deterministic rule (counted once), over
    ``recall`` and all record pairs. Each rule is counted inside the blocks of the first
    prediction rule within it (with equal salted tokens of its other fields).

    ``by_dataset`` (records per dataset; a ``link_only`` model): pairs of two datasets only,
    over all the pairs across datasets."""
    if not 0 < recall <= 1:
        raise ConfigError(f"training.deterministic_recall must be in (0, 1], not {recall}")
    pairs = None
    for rule in rules:
        cols = list(rule) if not isinstance(rule, str) else _columns_of(rule)
        i = _first_rule(scheme, cols, contains=False)
        others = [scheme.salted_column(c[len(C.TOKEN_PREFIX):], i) for c in cols if c[len(C.TOKEN_PREFIX):] not in scheme.rules[i]]
        keys = [scheme.block_column(i), *others]
        source = [C.DATASET] if by_dataset is not None else []
        base = tokens.select(C.UNIQUE_ID, *source, *keys).where(" AND ".join(f"{k} IS NOT NULL" for k in keys))
        left = base.select(F.col(C.UNIQUE_ID).alias("a"), *[F.col(c).alias("a_source") for c in source], *keys)
        right = base.select(F.col(C.UNIQUE_ID).alias("b"), *[F.col(c).alias("b_source") for c in source], *keys)
        pair = F.col("a") < F.col("b")
        if source:
            pair = pair & (F.col("a_source") != F.col("b_source"))
        found = left.join(right, on=keys, how="inner").where(pair).select("a", "b")
        pairs = found if pairs is None else pairs.unionByName(found)
    matched = 0 if pairs is None else int(pairs.distinct().count())
    if by_dataset is None:
        total = n_records * (n_records - 1) / 2
    else:
        total = (sum(by_dataset.values()) ** 2 - sum(n * n for n in by_dataset.values())) / 2
    return min(max(matched / recall / total, 1e-12), 0.5)


def _rows_by_dataset(manifests: Sequence[TokenManifest]) -> dict[str, int]:
    """Records per dataset (a link_only model), refused unless there are two or more datasets."""
    rows: dict[str, int] = {}
    for m in manifests:
        rows[m.dataset] = rows.get(m.dataset, 0) + int(m.rows)
    if len(rows) < 2:
        raise TrainingError(
            f"link_type link_only compares records of different datasets, but the token tables hold {len(rows)} dataset(s): "
            "train on the token tables of two or more datasets"
        )
    return rows


def _columns_of(rule_text: str) -> list[str]:
    import re

    return re.findall(r"\bl\.`?(tk_[a-z0-9_]+)`?", rule_text)


def _block_pairs(long: DataFrame, rule: int, cap: float | None, *, cross_source: bool = False) -> int:
    """Record pairs inside the blocks of ``rule`` (what an EM session there can see; ``cross_source``:
    those across datasets), capped like EM."""
    sizes = group_pairs(long.where(F.col(RULE) == rule), [BLOCK], cross_source=cross_source)
    pairs = int(sizes.agg(F.sum("pairs")).first()[0] or 0)
    return int(min(pairs, cap)) if cap else pairs


def long_frame(tokens: DataFrame, scheme: SaltedScheme, columns: Sequence[str], *, with_dataset: bool = False) -> DataFrame:
    """One row per (record, rule it is blocked by): ``unique_id#i``, the rule, its block key and
    the rule's salted tokens under the model's ``columns`` names, compacted to 64-bit integers
    (and the record's ``dataset``, ``with_dataset``)."""
    source = [C.DATASET] if with_dataset else []
    parts = []
    for i in range(len(scheme.rules)):
        mapping = scheme.rule_columns(i)
        block = scheme.block_column(i)
        parts.append(
            tokens.where(F.col(block).isNotNull()).select(
                F.concat(F.col(C.UNIQUE_ID), F.lit(f"#{i}")).alias(C.UNIQUE_ID),
                *source,
                F.lit(i).alias(RULE),
                F.xxhash64(block).alias(BLOCK),
                *[F.when(F.col(mapping[c]).isNotNull(), F.xxhash64(mapping[c])).alias(c) for c in columns],
            )
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def train_salted(tokens: DataFrame, cfg: ModelConfig, manifests: Sequence[TokenManifest]) -> TrainedModel:
    """Lambda and m at the centre, u from the providers' manifests (see the module doc)."""
    from splink import DuckDBAPI, Linker

    settings = splink_settings(cfg)
    scheme = check_scheme(manifests, settings)
    if scheme is None:
        raise EncodingMismatchError(f"model {cfg.name!r} is for salted token tables; these tables hold deterministic tokens")
    t = cfg.training
    timings: dict[str, float] = {}
    n_records = sum(int(m.rows) for m in manifests)
    cross = cross_source(settings)
    by_dataset = _rows_by_dataset(manifests) if cross else None

    start = time.perf_counter()
    u = pooled_u(manifests)
    fixed = with_fixed_u(settings, u)
    lam = None
    if t.deterministic_rules:
        lam = estimate_lambda(tokens, scheme, t.deterministic_rules, t.deterministic_recall, n_records, by_dataset=by_dataset)
    if lam is not None:
        fixed["probability_two_random_records_match"] = lam
    timings["lambda_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    columns = [C.token(f) for f in scheme.fields]
    fraction = 1.0 if not t.max_records or n_records <= t.max_records else t.max_records / n_records
    sample = tokens if fraction >= 1.0 else tokens.sample(fraction=fraction, seed=t.seed)
    long = long_frame(sample, scheme, columns, with_dataset=cross)
    em_settings = for_splink({**fixed, "blocking_rules_to_generate_predictions": [f"l.{BLOCK} = r.{BLOCK}"]})
    if t.backend == "duckdb":
        linker = Linker(DuckDBAPI().register(long.toArrow()), em_settings, log_level=logging.WARNING)
    else:
        from splink.backends.spark import SparkAPI

        db = SparkAPI(spark_session=tokens.sparkSession, break_lineage_method="parquet")
        linker = Linker(db.register(long.cache()), em_settings, log_level=logging.WARNING)
    timings["sample_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    sessions = []
    for em_rule in t.em_blocking_rules:
        cols = list(em_rule) if not isinstance(em_rule, str) else _columns_of(em_rule)
        i = _first_rule(scheme, cols, contains=True)
        # Naming the rule's own columns makes Splink leave the comparisons they decide out of the
        # session (inside the block they always agree); the block key does the blocking.
        sql = f"l.{BLOCK} = r.{BLOCK} AND " + rule_sql([C.token(f) for f in scheme.rules[i]])
        linker.training.estimate_parameters_using_expectation_maximisation(sql, max_pairs=t.em_max_pairs)
        sessions.append({"rule": rule_sql(cols), "inside_prediction_rule": i, "sql": sql, "pairs": _block_pairs(long, i, t.em_max_pairs, cross_source=cross)})
    timings["em_seconds"] = time.perf_counter() - start

    trained = linker.misc.save_model_to_json()
    trained["blocking_rules_to_generate_predictions"] = settings["blocking_rules_to_generate_predictions"]
    for comp in trained["comparisons"]:  # u comes from the providers; 0 and unknown rates stay unset
        rates = u[comp["output_column_name"]]
        for level, rate in zip(comp["comparison_levels"], rates):
            level.pop("fix_u_probability", None)
            if not level.get("is_null_level") and not rate:
                level["u_probability"] = None
    sampled_records = int(sample.count()) if fraction < 1.0 else n_records
    evidence = TrainingEvidence(
        population_records=n_records,
        sample_records=sampled_records,
        u_pairs=sum(int(m.data["u"].get("sampled_pairs") or 0) for m in manifests),
        em_pairs={s["sql"]: s["pairs"] for s in sessions},
        em_columns={s["sql"]: {BLOCK, *(C.token(f) for f in scheme.rules[s["inside_prediction_rule"]])} for s in sessions},
        exact={name: [0.0 if r == 0 else None for r in rates] for name, rates in u.items()},
    )
    trained, floors = complete_levels(trained, cfg, evidence)
    return TrainedModel(
        settings=trained,
        diagnostics={
            "timings": timings,
            "backend": t.backend,
            "encoding": scheme.as_dict(),
            "sample": {"records": n_records, "fraction": round(fraction, 6), "max_records": t.max_records, "rows": long.count() if t.backend == "spark" else None},
            "lambda": lam,
            "u": {"pooled_from": {m.dataset: m.data["u"]["records"] for m in manifests}},
            "em_blocking_rules": sessions,
            "floors": floors,
            "parameters": parameter_table(trained),
        },
    )
