"""Large blocks split into sub-blocks (link.split_large_blocks): the pairs made, and their counts.

Synthetic long-valued key columns (no identifiers). A constructed block of known size and known
sub-blocks checks the counts exactly; a random population checks the pairs against brute force,
and that an incremental delivery's pairs are the full split candidate set restricted to it.
"""

from __future__ import annotations

import itertools
import random

import pytest
from pydantic import ValidationError
from pyspark.sql import functions as F

from natlink.config.link import BlockSplit
from natlink.errors import ConfigError
from natlink.linkage import block_splits, blocking
from natlink.spark.scratch import Scratch

RULES = [blocking.parse_rule(r) for r in ("l.a = r.a", "l.b = r.b AND l.c = r.c", "l.a = r.a AND l.d = r.d")]
COLUMNS = ["unique_id", "a", "b", "c", "d"]


@pytest.fixture
def scratch(spark):
    with Scratch(spark) as made:
        yield made


@pytest.fixture(params=["broadcast", "shuffle"])
def join(request, monkeypatch, spark):
    """Large blocks joined to the records by broadcast (the default) and, over the limit, by a shuffle
    join (Spark's own size-based broadcast off too, or it would broadcast these small tables anyway)."""
    if request.param == "broadcast":
        yield request.param
        return
    monkeypatch.setattr(block_splits, "BROADCAST_BLOCKS", 0)
    before = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        yield request.param
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", before)


def _joins(df) -> str:
    plan = df._jdf.queryExecution().executedPlan().toString()
    return "broadcast" if "BroadcastHashJoin" in plan and "SortMergeJoin" not in plan else "shuffle" if "SortMergeJoin" in plan else "none"


def _split(rules, above, by, rule=("b", "c")):
    plan = block_splits.plan(rules, [BlockSplit(rule=list(rule), above=above, by=by)])
    return plan, block_splits.split_rules(rules, plan)


def test_a_block_over_the_limit_is_compared_only_within_its_sub_blocks_and_counted(spark, scratch, join):
    # Block (b=1, c=1): 6 records, districts d = 7, 7, 8, 8, 8, null -> sub-blocks of 2, 3, 1.
    # Block (b=2, c=1): 3 records (at the limit: compared whole). Record 9 lacks b: in no block.
    rows = [(0, 1, 1, 7), (1, 1, 1, 7), (2, 1, 1, 8), (3, 1, 1, 8), (4, 1, 1, 8), (5, 1, 1, None),
            (6, 2, 1, 7), (7, 2, 1, 8), (8, 2, 1, 9), (9, None, 1, 7)]
    df = spark.createDataFrame(
        [(i, f"u{i}", None, b, c, d) for i, b, c, d in rows], "node_id long, unique_id string, a long, b long, c long, d long"
    )
    rules = [RULES[1]]
    plan, split = _split(rules, 3, ["d"])
    made = block_splits.with_keys(df, plan, scratch)
    assert _joins(made) == join
    keyed = made.cache()
    pairs = {(r["node_id_l"], r["node_id_r"]) for r in blocking.candidate_pairs(keyed, split, COLUMNS).collect()}
    assert pairs == {(0, 1), (2, 3), (2, 4), (3, 4), (6, 7), (6, 8), (7, 8)}
    assert blocking.count_comparisons(keyed, split) == [7] == [len(pairs)]
    assert blocking.count_comparisons(df, rules) == [15 + 3]
    [counts] = block_splits.counts(keyed, plan)
    assert counts == {
        "rule": "[b, c]", "above": 3, "by": ["d"], "blocks_split": 1, "records_in_them": 6, "largest_block": 6,
        "pairs_before": 15, "pairs_after": 4, "pairs_not_compared": 11,
    }
    assert "1 blocks of more than 3 records split by ['d']" in block_splits.describe([counts])
    sizes = {r["node_id"]: r[split[0].keys[0].replace("split", "size")] for r in keyed.collect()}
    # A block over the limit has its size; one within it (here at the limit) and a record in no block have none.
    assert sizes == {0: 6, 1: 6, 2: 6, 3: 6, 4: 6, 5: 6, 6: None, 7: None, 8: None, 9: None}


@pytest.fixture(scope="module")
def population(spark):
    rng = random.Random(11)

    def value(n: int, null_share: float):
        return None if rng.random() < null_share else rng.randrange(n)

    rows = [(i, f"r{i:04d}", value(150, 0.3), value(4, 0.1), value(3, 0.1), value(6, 0.2)) for i in range(500)]
    return spark.createDataFrame(rows, "node_id long, unique_id string, a long, b long, c long, d long").cache()


def _brute_force(rows, rules, above, by="d"):
    """Pairs and their first rule, rule 1 (b, c) split above ``above`` by ``by``, by hand."""
    size: dict = {}
    for r in rows:
        if r["b"] is not None and r["c"] is not None:
            size[(r["b"], r["c"])] = size.get((r["b"], r["c"]), 0) + 1

    def meets(i, x, y):
        keys = rules[i].keys
        if any(x[k] is None or y[k] is None or x[k] != y[k] for k in keys):
            return False
        if i == 1 and size[(x["b"], x["c"])] > above:
            return x[by] == y[by]  # a null `by` is its own sub-block
        return True

    out = {}
    for x, y in itertools.combinations(sorted(rows, key=lambda r: r["node_id"]), 2):
        first = next((i for i in range(len(rules)) if meets(i, x, y)), None)
        if first is not None:
            out[(x["node_id"], y["node_id"])] = first
    return out


def test_split_pairs_equal_brute_force_and_arrivals_see_the_same_pairs(spark, population, scratch, join):
    plan, split = _split(RULES, 20, ["d"])
    made = block_splits.with_keys(population, plan, scratch)
    assert _joins(made) == join
    keyed = made.cache()
    got = {(r["node_id_l"], r["node_id_r"]): r["match_key"] for r in blocking.candidate_pairs(keyed, split, COLUMNS).collect()}
    expected = _brute_force(population.collect(), RULES, 20)
    assert got == expected
    unsplit = {(r["node_id_l"], r["node_id_r"]) for r in blocking.candidate_pairs(population, RULES, COLUMNS).collect()}
    assert set(got) < unsplit, "a split only removes pairs"
    [counts] = block_splits.counts(keyed, plan)
    assert counts["blocks_split"] == 12 and counts["pairs_not_compared"] > 1000  # 4 x 3 blocks of ~37 records
    assert counts["pairs_not_compared"] == blocking.count_comparisons(population, RULES)[1] - blocking.count_comparisons(keyed, split)[1]
    # An incremental delivery (pairs touching arrivals) sees the full split set restricted to it.
    arrivals = keyed.where(F.col("node_id") % 9 == 0)
    nodes = {r["node_id"] for r in arrivals.select("node_id").collect()}
    touching = {(r["node_id_l"], r["node_id_r"]): r["match_key"] for r in blocking.pairs_touching(keyed, arrivals, split, COLUMNS, scratch).collect()}
    assert touching == {p: k for p, k in expected.items() if p[0] in nodes or p[1] in nodes}


def test_a_split_must_name_a_rule_of_the_model_once_and_a_column_outside_it():
    with pytest.raises(ConfigError, match=r"no prediction rule \['b'\]; its rules: \[\['a'\], \['b', 'c'\], \['a', 'd'\]\]"):
        block_splits.plan(RULES, [BlockSplit(rule=["b"], above=5, by=["d"])])
    assert block_splits.applicable(RULES, [BlockSplit(rule=["b"], above=5, by=["d"]), BlockSplit(rule=["c", "b"], above=5, by=["d"]),
                                           BlockSplit(rule=["b", "c"], above=5, by=["d"])]) == (
        [BlockSplit(rule=["b", "c"], above=5, by=["d"])], [BlockSplit(rule=["b"], above=5, by=["d"]), BlockSplit(rule=["c", "b"], above=5, by=["d"])])
    twice = [BlockSplit(rule=["b", "c"], above=5, by=["d"]), BlockSplit(rule=["b", "c"], above=9, by=["a"])]
    with pytest.raises(ConfigError, match="named twice"):
        block_splits.plan(RULES, twice)
    with pytest.raises(ValidationError, match=r"by \['c'\] is already a column of the rule"):
        BlockSplit(rule=["b", "c"], above=5, by=["c"])
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        BlockSplit(rule=["b", "c"], above=1, by=["d"])
