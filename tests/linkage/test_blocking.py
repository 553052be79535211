"""Candidate pairs for an incremental delivery equal the full candidate set restricted to it.

Synthetic long-valued key columns (no identifiers): small value ranges so key groups overlap
across rules, nulls so rules skip records, and arrivals that share keys with each other.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink.linkage import blocking
from natlink.errors import BlockingBudgetError
from natlink.spark.scratch import Scratch

RULES = [blocking.parse_rule(r) for r in ("l.a = r.a", "l.b = r.b AND l.c = r.c", "l.c = r.c AND l.d = r.d")]
COLUMNS = ["unique_id", "a", "b", "c", "d", "x"]


@pytest.fixture(scope="module")
def population(spark):
    rng = random.Random(7)

    def value(n: int, null_share: float):
        return None if rng.random() < null_share else rng.randrange(n)

    rows = [(i, f"r{i:04d}", value(120, 0.3), value(6, 0.1), value(5, 0.1), value(40, 0.2), rng.random()) for i in range(600)]
    df = spark.createDataFrame(rows, "node_id long, unique_id string, a long, b long, c long, d long, x double")
    yield df.cache()


def _pairs(df):
    return {(r["node_id_l"], r["node_id_r"], r["match_key"]) for r in df.select("node_id_l", "node_id_r", "match_key").collect()}


@pytest.mark.parametrize("share,broadcast_nodes", [(0.02, blocking.BROADCAST_NODES), (0.2, blocking.BROADCAST_NODES), (0.2, 0)])
def test_pairs_touching_equals_full_candidates_restricted_to_arrivals(spark, population, share, broadcast_nodes, monkeypatch):
    # broadcast_nodes 0: the records near arrivals are picked by a shuffled semi-join (many arrivals)
    monkeypatch.setattr(blocking, "BROADCAST_NODES", broadcast_nodes)
    arrivals = population.where(F.xxhash64("unique_id") % round(1 / share) == 0)
    arrival_nodes = {r["node_id"] for r in arrivals.select("node_id").collect()}
    assert len(arrival_nodes) > 5
    full = _pairs(blocking.candidate_pairs(population, RULES, COLUMNS))
    expected = {p for p in full if p[0] in arrival_nodes or p[1] in arrival_nodes}
    scratch = Scratch(spark)
    got_df = blocking.pairs_touching(population, arrivals, RULES, COLUMNS, scratch)
    got_rows = got_df.select("node_id_l", "node_id_r", "match_key").collect()
    written = [Path(p.removeprefix("file:")) for p in scratch.paths]
    assert written and all(p.is_dir() for p in written), "the arrivals' keys are materialised in the job's scratch"
    got = {(r[0], r[1], r[2]) for r in got_rows}
    assert len(got_rows) == len(got), "a pair came out twice"
    assert got == expected
    assert len(expected) > 50
    # Every rule contributes, including pairs of two arrivals.
    assert {k for _, _, k in got} == {0, 1, 2}
    assert any(l in arrival_nodes and r in arrival_nodes for l, r, _ in got)
    # Columns travel with their own side.
    sample = got_df.select("node_id_l", "unique_id_l", "x_l", "node_id_r", "unique_id_r").limit(20).collect()
    for r in sample:
        assert r["node_id_l"] < r["node_id_r"]
        assert r["unique_id_l"] == f"r{r['node_id_l']:04d}" and r["unique_id_r"] == f"r{r['node_id_r']:04d}"
    scratch.release()
    assert scratch.paths == [] and not any(p.exists() for p in written), "released scratch is deleted"


def test_pairs_of_attaches_columns_by_unique_id(spark, population):
    edges = spark.createDataFrame([("r0003", "r0100", 1), ("r0010", "r0599", 0), ("r0001", "gone", 2)], "unique_id_l string, unique_id_r string, match_key int")
    out = blocking.pairs_of(population, edges, COLUMNS, key="unique_id").collect()
    assert sorted((r["node_id_l"], r["node_id_r"], r["match_key"]) for r in out) == [(3, 100, 1), (10, 599, 0)]


def test_budget_counts_pairs_per_rule_and_refuses_an_exploding_rule(spark, population):
    counts = blocking.count_comparisons(population, RULES)
    rows = population.collect()
    for rule, count in zip(RULES, counts):
        groups: dict = {}
        for r in rows:
            key = tuple(r[k] for k in rule.keys)
            if None not in key:
                groups[key] = groups.get(key, 0) + 1
        assert count == sum(n * (n - 1) // 2 for n in groups.values())
    assert counts[0] < counts[1], counts  # so the second rule is the first one over the budget below
    with pytest.raises(BlockingBudgetError, match="l.b = r.b AND l.c = r.c"):
        blocking.check_budget(population, RULES, budget=counts[1] - 1)
