"""Candidate pairs from blocking rules, in one Spark plan, with a comparison budget.

A rule is a set of columns that must agree exactly (``l.a = r.a AND l.b = r.b``; the form
natlink's model config writes). Each rule excludes the pairs an earlier rule already produced,
as Splink does, so every candidate pair is generated once. Before any pair is generated,
:func:`count_comparisons` bounds the pairs per rule from key-group sizes (sum of n choose 2),
so a rule that would explode is refused with :class:`BlockingBudgetError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink.errors import BlockingBudgetError, ConfigError

NODE = "node_id"
_EQ = re.compile(r"^\s*l\.`?([A-Za-z_][A-Za-z0-9_]*)`?\s*=\s*r\.`?([A-Za-z_][A-Za-z0-9_]*)`?\s*$")


@dataclass(frozen=True)
class Rule:
    keys: tuple[str, ...]

    @property
    def sql(self) -> str:
        return " AND ".join(f"l.{k} = r.{k}" for k in self.keys)


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


def rules_from_settings(settings: dict[str, Any]) -> list[Rule]:
    return [parse_rule(r) for r in settings.get("blocking_rules_to_generate_predictions", [])]


def _agree(rule: Rule, left: str = "l", right: str = "r") -> Column:
    return reduce(lambda a, b: a & b, [F.col(f"{left}.{k}") == F.col(f"{right}.{k}") for k in rule.keys])


def count_comparisons(records: DataFrame, rules: Sequence[Rule]) -> list[int]:
    """Upper bound of pairs per rule (sum over key groups of n choose 2), all rules in one job."""
    if not rules:
        return []
    parts = []
    for i, rule in enumerate(rules):
        keyed = records.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in rule.keys]))
        sizes = keyed.groupBy(*rule.keys).agg(F.count(F.lit(1)).cast("long").alias("n"))
        parts.append(sizes.agg(F.sum(F.col("n") * (F.col("n") - 1) / 2).cast("long").alias("pairs")).select(F.lit(i).alias("rule"), "pairs"))
    totals = {r["rule"]: r["pairs"] for r in reduce(DataFrame.unionByName, parts).collect()}
    return [int(totals.get(i) or 0) for i in range(len(rules))]


def check_budget(records: DataFrame, rules: Sequence[Rule], budget: float) -> list[int]:
    counts = count_comparisons(records, rules)
    for rule, count in zip(rules, counts):
        if count > budget:
            raise BlockingBudgetError(
                f"blocking rule {rule.sql!r} would generate {count:,} comparisons, over the budget of "
                f"{int(budget):,} (link.max_comparisons_per_rule); make it stricter or raise the budget"
            )
    return counts


def candidate_pairs(records: DataFrame, rules: Sequence[Rule], columns: Sequence[str]) -> DataFrame:
    """Pairs (``node_id_l < node_id_r``) from all rules, each pair once, with ``c_l``/``c_r`` columns.

    ``records`` must hold ``node_id`` (unique, ordered like the unique id) and ``columns``.
    """
    keep = [NODE, *dict.fromkeys(columns)]
    base = records.select(*keep)
    parts = []
    for i, rule in enumerate(rules):
        left, right = base.alias("l"), base.alias("r")
        pairs = left.join(right, on=_agree(rule) & (F.col(f"l.{NODE}") < F.col(f"r.{NODE}")), how="inner")
        for earlier in rules[:i]:
            pairs = pairs.where(~F.coalesce(_agree(earlier), F.lit(False)))
        parts.append(
            pairs.select(
                *[F.col(f"l.{c}").alias(f"{c}_l") for c in keep],
                *[F.col(f"r.{c}").alias(f"{c}_r") for c in keep],
                F.lit(i).alias("match_key"),
            )
        )
    return reduce(DataFrame.unionByName, parts)


def pairs_touching(records: DataFrame, arrivals: DataFrame, rules: Sequence[Rule], columns: Sequence[str]) -> DataFrame:
    """Candidate pairs with at least one side in ``arrivals`` (a subset of ``records``), each once.

    Each rule first narrows the population to records sharing a key with an arrival (a semi-join
    on the arrivals' distinct keys, broadcast when small), so the cost follows the arrivals rather
    than the population. Pairs are (arrival, any record) plus (non-arrival, arrival), both ordered
    by node id, with earlier rules' pairs excluded exactly as in :func:`candidate_pairs`.
    """
    keep = [NODE, *dict.fromkeys(columns)]
    population = records.select(*keep)
    new = arrivals.select(*keep)
    old = population.join(new.select(NODE), on=NODE, how="left_anti")
    parts = []
    for i, rule in enumerate(rules):
        keys = list(rule.keys)
        arrival_keys = new.select(*keys).where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys])).distinct()
        nearby_all = population.join(arrival_keys, on=keys, how="left_semi")
        nearby_old = old.join(arrival_keys, on=keys, how="left_semi")
        for left_df, right_df in ((new, nearby_all), (nearby_old, new)):
            left, right = left_df.alias("l"), right_df.alias("r")
            pairs = left.join(right, on=_agree(rule) & (F.col(f"l.{NODE}") < F.col(f"r.{NODE}")), how="inner")
            for earlier in rules[:i]:
                pairs = pairs.where(~F.coalesce(_agree(earlier), F.lit(False)))
            parts.append(
                pairs.select(
                    *[F.col(f"l.{c}").alias(f"{c}_l") for c in keep],
                    *[F.col(f"r.{c}").alias(f"{c}_r") for c in keep],
                    F.lit(i).alias("match_key"),
                )
            )
    return reduce(DataFrame.unionByName, parts)


def pairs_of(records: DataFrame, edges: DataFrame, columns: Sequence[str]) -> DataFrame:
    """The given pairs (``node_id_l``, ``node_id_r``, ``match_key``) with their ``c_l``/``c_r`` columns.

    Used to rescore known pairs (an incremental run's kept edges) under the current term
    frequencies without generating candidate pairs again.
    """
    keep = [NODE, *dict.fromkeys(columns)]
    base = records.select(*keep)
    left = base.select(*[F.col(c).alias(f"{c}_l") for c in keep])
    right = base.select(*[F.col(c).alias(f"{c}_r") for c in keep])
    pairs = edges.select(f"{NODE}_l", f"{NODE}_r", "match_key")
    return pairs.join(left, on=f"{NODE}_l", how="inner").join(right, on=f"{NODE}_r", how="inner")
