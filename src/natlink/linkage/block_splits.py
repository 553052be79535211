"""Large blocks of a prediction rule split into sub-blocks, counted (``link.split_large_blocks``).

A rule's comparisons per record stay flat only while its blocks stay small. Blocks of a date of
birth and a given name hold one person while the population is small, and more people as it grows
(the commonest names on a date: 0.7 records at 1M persons, about 7 at 10M, 43 at 60M), so the
rule's pairs grow with the square of the population. ``link.split_large_blocks`` names rules whose
blocks of more than ``above`` records are compared only within sub-blocks that also agree on
``by``; small blocks are compared whole, as before.

The split is a new block key per record, computed where the run links: the rule's key for a small
block, the rule's key and ``by`` for a large one (a record lacking ``by`` joins the block's
sub-block of such records). The large blocks are found by one aggregation over the population's
keys and joined back to the records by broadcast (up to :data:`BROADCAST_BLOCKS` of them), so the
records themselves are not shuffled: a window count over the population shuffled every record with
all its columns, once per split rule (at 10M persons, two shuffles of 13.6 and 10.1 GB). The rule then blocks on that key, and everything downstream (the budget, candidate pairs,
an earlier rule's pairs excluded from a later one, incremental pairs touching arrivals) reads it as
it reads any key. Nothing is dropped silently: :func:`counts` gives, per split rule, the blocks
split, the records in them, the largest, and the pairs those blocks held before and after, so the
pairs not compared are a number in every run's counts and report.

On block-salted tables ``by`` is read from the rule's own salted columns (equal only inside the
block), so splitting shows the linkage centre nothing it could not already count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.link import BlockSplit
from natlink.errors import ConfigError
from natlink.linkage.blocking import Rule, group_pairs
from natlink.spark.scratch import Scratch

__all__ = ["BROADCAST_BLOCKS", "Split", "applicable", "counts", "describe", "plan", "split_rules", "with_keys"]

# The large blocks of a split rule are joined to the records by broadcast up to this many (about
# 24 bytes each); above it, by a shuffle join.
BROADCAST_BLOCKS = 5_000_000


@dataclass(frozen=True)
class Split:
    """Rule ``index`` (``rule``, as the tables hold it) split above ``above`` records by ``by`` (table columns)."""

    index: int
    rule: Rule
    above: int
    by: tuple[str, ...]
    by_model: tuple[str, ...]

    @property
    def size_column(self) -> str:
        return C.block_size(self.index)

    @property
    def key_column(self) -> str:
        return C.block_split(self.index)

    @property
    def name(self) -> str:
        return "[" + ", ".join(self.rule.model_keys) + "]"


def plan(rules: Sequence[Rule], specs: Sequence[BlockSplit]) -> list[Split]:
    """The splits ``specs`` ask for on ``rules`` (the model's prediction rules), checked: each names a
    rule of the model, once."""
    out: list[Split] = []
    by_keys = {tuple(r.model_keys): i for i, r in enumerate(rules)}
    for spec in specs:
        i = by_keys.get(tuple(spec.rule))
        if i is None:
            known = [list(r.model_keys) for r in rules]
            raise ConfigError(f"link.split_large_blocks: the model has no prediction rule {spec.rule}; its rules: {known}")
        if any(s.index == i for s in out):
            raise ConfigError(f"link.split_large_blocks: rule {spec.rule} is named twice")
        rule = rules[i]
        out.append(Split(i, rule, spec.above, tuple(rule.column(c) for c in spec.by), tuple(spec.by)))
    return out


def applicable(rules: Sequence[Rule], specs: Sequence[BlockSplit]) -> tuple[list[BlockSplit], list[BlockSplit]]:
    """``specs`` that name a prediction rule of ``rules``, and those that do not (conf/link.yaml serves
    every model: a split of a rule another model lacks does not apply to this one)."""
    known = {tuple(r.model_keys) for r in rules}
    return [s for s in specs if tuple(s.rule) in known], [s for s in specs if tuple(s.rule) not in known]


def split_rules(rules: Sequence[Rule], splits: Sequence[Split]) -> list[Rule]:
    """``rules`` with each split rule blocking on its split key (reading the same columns)."""
    by_index = {s.index: s for s in splits}
    return [
        Rule((by_index[i].key_column,), r.columns, r.model_keys) if i in by_index else r
        for i, r in enumerate(rules)
    ]


def with_keys(df: DataFrame, splits: Sequence[Split], scratch: Scratch) -> DataFrame:
    """``df`` with, per split, the size of the record's block when it is over the limit (NULL for a
    block within it, and for a record lacking the rule's keys) and its split block key (NULL when
    the rule's keys are: such a record is in no block of the rule).

    The blocks over the limit are materialised in ``scratch`` (one small table per split rule)."""
    columns = list(df.columns)
    for s in splits:
        keys = [F.col(k) for k in s.rule.keys]
        present = reduce(lambda a, b: a & b, [k.isNotNull() for k in keys])
        sizes = df.where(present).groupBy(*keys).agg(F.count(F.lit(1)).cast("long").alias(s.size_column))
        large = scratch.materialise(sizes.where(F.col(s.size_column) > s.above), f"large_blocks_r{s.index}")
        if large.count() <= BROADCAST_BLOCKS:
            large = F.broadcast(large)
        df = df.join(large, on=list(s.rule.keys), how="left")
        # The literal tells a sub-block's key from the whole block's: a record lacking `by` hashes
        # as (keys, 1), never as the unsplit (keys).
        split_key = F.xxhash64(*keys, F.lit(1), *[F.col(b) for b in s.by])
        columns += [s.size_column, s.key_column]
        df = df.withColumn(
            s.key_column, F.when(present, F.when(F.col(s.size_column).isNotNull(), split_key).otherwise(F.xxhash64(*keys)))
        )
    return df.select(*columns)


def counts(records: DataFrame, splits: Sequence[Split]) -> list[dict[str, Any]]:
    """Per split (``records`` from :func:`with_keys`, in one Spark job): blocks over the limit, their
    records, the largest block, and the pairs those blocks held before and after the split."""
    if not splits:
        return []
    parts = []
    for s in splits:
        large = records.where(F.col(s.size_column) > s.above)
        whole = large.agg(
            F.sum(1.0 / F.col(s.size_column)).alias("blocks"),
            F.count(F.lit(1)).alias("records"),
            F.max(s.size_column).alias("largest_block"),
            F.sum((F.col(s.size_column) - 1) / 2.0).alias("pairs_before"),
        )
        after = group_pairs(large, [s.key_column]).agg(F.sum("pairs").alias("pairs_after"))
        parts.append(whole.crossJoin(after).select(F.lit(s.index).alias("rule"), "*"))
    got = {r["rule"]: r for r in reduce(DataFrame.unionByName, parts).collect()}
    out = []
    for s in splits:
        r = got[s.index]
        before, after = round(r["pairs_before"] or 0), int(r["pairs_after"] or 0)
        out.append({
            "rule": s.name, "above": s.above, "by": list(s.by_model), "blocks_split": round(r["blocks"] or 0),
            "records_in_them": int(r["records"] or 0), "largest_block": int(r["largest_block"] or 0),
            "pairs_before": before, "pairs_after": after, "pairs_not_compared": before - after,
        })
    return out


def describe(split_counts: Sequence[dict[str, Any]]) -> str:
    """One line per split rule, for a log or a report note."""
    return "; ".join(
        f"{c['rule']}: {c['blocks_split']:,} blocks of more than {c['above']} records split by {c['by']} "
        f"({c['records_in_them']:,} records, largest {c['largest_block']:,}): {c['pairs_before']:,} pairs -> {c['pairs_after']:,}"
        for c in split_counts
    )
