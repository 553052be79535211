"""Candidate pairs from blocking rules, in one Spark plan, with a comparison budget.

A rule is a set of columns that must agree exactly (``l.a = r.a AND l.b = r.b``; the form
natlink's model config writes). Each rule excludes the pairs an earlier rule already produced,
as Splink does, so every candidate pair is generated once. Before any pair is generated,
:func:`count_comparisons` bounds the pairs per rule from key-group sizes (sum of n choose 2),
so a rule that would explode is refused with :class:`BlockingBudgetError`.

``cross_source`` (a ``link_only`` model, :func:`natlink.linkage.settings.cross_source`): only
pairs of records from different datasets are made, the condition inside the join, and counted
(per key group, the pairs across its datasets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import BlockingBudgetError, ConfigError
from natlink.spark.scratch import Scratch

NODE = C.NODE_ID
# pairs_touching broadcasts up to this many node ids (8 bytes each) to pick the records near arrivals.
BROADCAST_NODES = 5_000_000
_EQ = re.compile(r"^\s*l\.`?([A-Za-z_][A-Za-z0-9_]*)`?\s*=\s*r\.`?([A-Za-z_][A-Za-z0-9_]*)`?\s*$")


@dataclass(frozen=True)
class Rule:
    """Columns that must agree; ``columns`` maps a model column to the column this rule's pairs
    read it from (block-salted tables: ``tk_x`` -> ``tk_x__r<i>``; empty: the column itself)."""

    keys: tuple[str, ...]
    columns: tuple[tuple[str, str], ...] = ()
    blocks_on: tuple[str, ...] = ()  # the model columns a salted rule's block key stands for

    @property
    def model_keys(self) -> tuple[str, ...]:
        """The model columns this rule's pairs agree on (its keys, or what its block key stands for)."""
        return self.blocks_on or self.keys

    @property
    def sql(self) -> str:
        return " AND ".join(f"l.{k} = r.{k}" for k in self.keys)

    def column(self, name: str) -> str:
        return dict(self.columns).get(name, name)


def physical_columns(rules: Sequence[Rule], columns: Sequence[str]) -> list[str]:
    """The table columns ``rules`` read for the model ``columns`` (and their own keys)."""
    mapped = [r.column(c) for r in rules for c in columns] if rules else list(columns)
    return list(dict.fromkeys([*mapped, *[k for r in rules for k in r.keys]]))


def parse_rule(rule: str | dict[str, Any] | Sequence[str]) -> Rule:
    """A rule from a column list or Splink SQL of the form ``l.a = r.a AND l.b = r.b``."""
    if isinstance(rule, dict):
        rule = rule["blocking_rule"]
    if not isinstance(rule, str):
        keys = tuple(rule)
    else:
        parts = re.split(r"\s+AND\s+", rule.strip().strip("()"), flags=re.IGNORECASE)
        keys_list = []
        for part in parts:
            m = _EQ.match(part.strip("() "))
            if not m or m.group(1) != m.group(2):
                raise ConfigError(
                    f"blocking rule {rule!r}: natlink's engine takes conjunctions of l.col = r.col on the same column"
                )
            keys_list.append(m.group(1))
        keys = tuple(keys_list)
    if not keys:
        raise ConfigError("a blocking rule needs at least one column")
    return Rule(keys)


def rules_from_settings(settings: dict[str, Any], scheme: Any = None) -> list[Rule]:
    """The model's prediction rules; with a block-salted ``scheme``
    (:class:`natlink.tokens.salted.SaltedScheme`), rule ``i`` blocks on its block key and reads
    the model's columns from its own salted columns. Pairs agreeing on an earlier rule's block
    key are that rule's, so each pair is still produced once, by the first rule that meets it."""
    rules = [parse_rule(r) for r in settings.get("blocking_rules_to_generate_predictions", [])]
    if scheme is None:
        return rules
    if [tuple(k[len(C.TOKEN_PREFIX):] for k in r.keys) for r in rules] != [tuple(r) for r in scheme.rules]:
        raise ConfigError("the model's prediction rules are not those of the salted token tables")
    return [Rule((scheme.block_column(i),), tuple(scheme.rule_columns(i).items()), r.keys) for i, r in enumerate(rules)]


def key_of(rules: Sequence[Rule], column: str) -> str | None:
    """The table column whose equality is agreement on the model ``column`` alone, where a rule
    blocks on it alone (deterministic tables: the column; block-salted: that rule's block key)."""
    return next((r.keys[0] for r in rules if r.model_keys == (column,)), None)


def agree(rule: Rule, left: str = "l", right: str = "r") -> Column:
    """``left`` and ``right`` agree on every key of ``rule`` (null when a key is null)."""
    return reduce(lambda a, b: a & b, [F.col(f"{left}.{k}") == F.col(f"{right}.{k}") for k in rule.keys])


def group_pairs(records: DataFrame, keys: Sequence[Any], *, cross_source: bool = False) -> DataFrame:
    """One row per group of ``records`` by ``keys``, column ``pairs``: its record pairs, n choose 2,
    or with ``cross_source`` only those across datasets, (n^2 - sum over its datasets of n_d^2) / 2."""
    if cross_source:
        by_source = records.groupBy(*keys, C.DATASET).agg(F.count(F.lit(1)).cast("long").alias("n"))
        sizes = by_source.groupBy(*keys).agg(F.sum("n").alias("n"), F.sum(F.col("n") * F.col("n")).alias("sq"))
        return sizes.select(((F.col("n") * F.col("n") - F.col("sq")) / 2).alias("pairs"))
    sizes = records.groupBy(*keys).agg(F.count(F.lit(1)).cast("long").alias("n"))
    return sizes.select((F.col("n") * (F.col("n") - 1) / 2).alias("pairs"))


def count_comparisons(records: DataFrame, rules: Sequence[Rule], *, cross_source: bool = False) -> list[int]:
    """Upper bound of pairs per rule (sum over key groups of n choose 2), all rules in one job.

    ``cross_source``: pairs across datasets only, per key group (n^2 - sum over its datasets of
    n_d^2) / 2, from group sizes by key and dataset.
    """
    if not rules:
        return []
    parts = []
    for i, rule in enumerate(rules):
        sizes = group_pairs(records.where(_all_present(rule)), rule.keys, cross_source=cross_source)
        parts.append(sizes.agg(F.sum("pairs").cast("long").alias("pairs")).select(F.lit(i).alias("rule"), "pairs"))
    totals = {r["rule"]: r["pairs"] for r in reduce(DataFrame.unionByName, parts).collect()}
    return [int(totals.get(i) or 0) for i in range(len(rules))]


def check_budget(records: DataFrame, rules: Sequence[Rule], budget: float, *, cross_source: bool = False) -> list[int]:
    return enforce_budget(rules, count_comparisons(records, rules, cross_source=cross_source), budget)


def enforce_budget(rules: Sequence[Rule], counts: list[int], budget: float) -> list[int]:
    """``counts`` (pairs per rule) unchanged, or a named error for the first rule over ``budget``."""
    for rule, count in zip(rules, counts):
        if count > budget:
            raise BlockingBudgetError(
                f"blocking rule {rule.sql!r} would generate {count:,} comparisons, over the budget of "
                f"{int(budget):,} (link.max_comparisons_per_rule); make it stricter or raise the budget"
            )
    return counts


def candidate_pairs(records: DataFrame, rules: Sequence[Rule], columns: Sequence[str], *, cross_source: bool = False) -> DataFrame:
    """Pairs (``node_id_l < node_id_r``) from all rules, each pair once, with ``c_l``/``c_r`` columns.

    ``records`` must hold ``node_id`` (unique, ordered like the unique id) and ``columns`` (and
    ``dataset`` when ``cross_source``: then only pairs of two datasets are made).
    """
    keep = [NODE, *dict.fromkeys(columns)]
    base = records.select(*physical_columns(rules, [*keep, *([C.DATASET] if cross_source else [])]))
    parts = []
    for i, rule in enumerate(rules):
        left, right = base.alias("l"), base.alias("r")
        condition = agree(rule) & (F.col(f"l.{NODE}") < F.col(f"r.{NODE}"))
        if cross_source:
            condition = condition & (F.col(f"l.{C.DATASET}") != F.col(f"r.{C.DATASET}"))
        pairs = left.join(right, on=condition, how="inner")
        for earlier in rules[:i]:
            pairs = pairs.where(~F.coalesce(agree(earlier), F.lit(False)))
        parts.append(
            pairs.select(
                *[F.col(f"l.{rule.column(c)}").alias(f"{c}_l") for c in keep],
                *[F.col(f"r.{rule.column(c)}").alias(f"{c}_r") for c in keep],
                F.lit(i).alias("match_key"),
            )
        )
    return reduce(DataFrame.unionByName, parts)


def pairs_touching(
    records: DataFrame, arrivals: DataFrame, rules: Sequence[Rule], columns: Sequence[str], scratch: Scratch, *, cross_source: bool = False
) -> DataFrame:
    """Candidate pairs with at least one side in ``arrivals`` (a subset of ``records``), each once.

    Every record is expanded to one row per rule holding a 64-bit hash of that rule's key, first as
    slim (node, rule, hash) rows, semi-joined with the arrivals' distinct hashes: that finds the
    records sharing a block with an arrival, by node. Only those records are expanded again with
    their compared columns and joined on (rule, hash) with the arrivals expanded the same way.
    (Expanding the whole population with its columns and joining that with the arrivals shuffled
    every record four times over once the arrivals no longer fit a broadcast: at 10M persons, a
    2% delivery's predict took 298 s, against 413 s for the full run's.) A joined row is a pair under
    rule ``i`` when the real key columns agree on rule ``i`` (a hash collision is dropped here)
    and on no earlier rule, exactly as :func:`candidate_pairs` excludes them, so each pair
    appears once with the same ``match_key``; a pair of two arrivals is kept from the side of
    its smaller node id. Pairs come out ordered by node id (``_l`` the smaller) with ``c_l``/
    ``c_r`` columns (on block-salted tables, read from the pair's rule's own columns, as
    :func:`candidate_pairs` reads them). The cost follows the arrivals and their key groups, not
    the population. ``cross_source``: pairs of two datasets only, as :func:`candidate_pairs`.
    """
    wanted = list(dict.fromkeys([NODE, *columns]))
    keep = physical_columns(rules, [*wanted, *([C.DATASET] if cross_source else [])])  # block-salted rules read their own columns

    tagged = [
        F.struct(F.lit(i).alias("rule"), F.when(_all_present(rule), F.xxhash64(*rule.keys)).alias("key_hash"))
        for i, rule in enumerate(rules)
    ]

    def by_rule(df: DataFrame, side: str) -> DataFrame:
        row = F.struct(*[F.col(c) for c in keep])
        return (
            df.select(row.alias(side), F.explode(F.array(*tagged)).alias("_k"))
            .where(F.col("_k.key_hash").isNotNull())
            .select(side, F.col("_k.rule").alias("rule"), F.col("_k.key_hash").alias("key_hash"))
        )

    new = scratch.materialise(by_rule(arrivals, "a"), "arrival_keys")
    arrival_hashes = scratch.materialise(new.select("rule", "key_hash").distinct(), "arrival_hashes")
    slim = (
        records.select(F.col(NODE), F.explode(F.array(*tagged)).alias("_k"))
        .where(F.col("_k.key_hash").isNotNull())
        .select(NODE, F.col("_k.rule").alias("rule"), F.col("_k.key_hash").alias("key_hash"))
    )
    near = scratch.materialise(slim.join(arrival_hashes, on=["rule", "key_hash"], how="left_semi").select(NODE).distinct(), "near_nodes")
    # Picked from the population by a broadcast semi-join (no shuffle of the population) while the
    # nodes are few enough to broadcast as a hash set of longs; else Spark chooses.
    candidates = records.join(F.broadcast(near) if near.count() <= BROADCAST_NODES else near, on=NODE, how="left_semi")
    joined = new.join(by_rule(candidates, "b"), on=["rule", "key_hash"], how="inner").join(
        arrivals.select(F.col(NODE).alias("_arrival")), F.col(f"b.{NODE}") == F.col("_arrival"), how="left"
    )
    a_node, b_node = F.col(f"a.{NODE}"), F.col(f"b.{NODE}")
    same_side = (a_node == b_node) | (F.col("_arrival").isNotNull() & (b_node < a_node))
    first_rule = F.lit(None).cast("int")
    for i in reversed(range(len(rules))):
        first_rule = F.when(F.coalesce(agree(rules[i], "a", "b"), F.lit(False)), F.lit(i)).otherwise(first_rule)
    pairs = joined.where(~same_side & (first_rule == F.col("rule")))
    if cross_source:
        pairs = pairs.where(F.col(f"a.{C.DATASET}") != F.col(f"b.{C.DATASET}"))
    a_first = a_node < b_node
    left = F.when(a_first, F.col("a")).otherwise(F.col("b"))
    right = F.when(a_first, F.col("b")).otherwise(F.col("a"))
    ordered = pairs.select(left.alias("_l"), right.alias("_r"), F.col("rule").alias("match_key"))
    return ordered.select(
        *[_by_rule_column(rules, f"_{side}", c).alias(f"{c}_{side}") for side in "lr" for c in wanted],
        "match_key",
    )


def _by_rule_column(rules: Sequence[Rule], side: str, column: str) -> Column:
    """The model ``column`` of a pair's ``side`` as its rule (``match_key``) reads it."""
    names = [r.column(column) for r in rules]
    if len(set(names)) == 1:
        return F.col(f"{side}.{names[0]}")
    picked = F.when(F.col("match_key") == 0, F.col(f"{side}.{names[0]}"))
    for i, name in enumerate(names[1:], start=1):
        picked = picked.when(F.col("match_key") == i, F.col(f"{side}.{name}"))
    return picked


def _all_present(rule: Rule) -> Column:
    return reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in rule.keys])


def pairs_of(records: DataFrame, edges: DataFrame, columns: Sequence[str], *, key: str = NODE) -> DataFrame:
    """The given pairs (``{key}_l``, ``{key}_r``, ``match_key``) with their ``c_l``/``c_r`` columns.

    Used to rescore known pairs (an incremental run's kept edges, keyed by unique id) under the
    current term frequencies without generating candidate pairs again. Pairs whose records are
    not in ``records`` are dropped.
    """
    keep = list(dict.fromkeys([NODE, key, *columns]))
    base = records.select(*keep)
    left = base.select(*[F.col(c).alias(f"{c}_l") for c in keep])
    right = base.select(*[F.col(c).alias(f"{c}_r") for c in keep])
    pairs = edges.select(f"{key}_l", f"{key}_r", "match_key")
    return pairs.join(left, on=f"{key}_l", how="inner").join(right, on=f"{key}_r", how="inner")
