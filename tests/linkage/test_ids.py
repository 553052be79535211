"""Stable person ids: unchanged, merge, split, new and retired ids, independent of row order."""

from __future__ import annotations

from natlink.linkage import ids
from natlink.linkage.ids import mint_person_id

CUR = "unique_id string, cluster_node long"
PREV = "unique_id string, person_id string"


def _assign(spark, current, previous, run_id="r2"):
    cur = spark.createDataFrame(current, CUR)
    prev = spark.createDataFrame(previous, PREV) if previous is not None else None
    result = ids.assign(cur, prev, run_id)
    got = {r["unique_id"]: r["person_id"] for r in result.assigned.collect()}
    events = sorted((r["event"], tuple(r["old_ids"]), r["new_id"], r["records"]) for r in result.events.collect())
    return got, events


def _minted(spark, run_id, member):
    from pyspark.sql import functions as F

    return spark.range(1).select(mint_person_id(F.lit(run_id), F.lit(member))).first()[0]


def test_first_run_mints_ids_per_cluster(spark):
    got, events = _assign(spark, [("a", 1), ("b", 1), ("c", 3)], None, run_id="r1")
    assert got["a"] == got["b"] == _minted(spark, "r1", "a")
    assert got["c"] == _minted(spark, "r1", "c") != got["a"]
    assert events == []


def test_unchanged_clusters_keep_ids_and_new_records_join_them(spark):
    previous = [("a", "P1"), ("b", "P1"), ("c", "P2")]
    got, events = _assign(spark, [("a", 1), ("b", 1), ("x", 1), ("c", 3)], previous)
    assert got == {"a": "P1", "b": "P1", "x": "P1", "c": "P2"}
    assert events == []


def test_merge_keeps_the_id_of_the_larger_side(spark):
    # P1 has 3 records, P2 has 2; the new cluster holds all five.
    previous = [("a", "P1"), ("b", "P1"), ("c", "P1"), ("d", "P2"), ("e", "P2")]
    got, events = _assign(spark, [(u, 1) for u in "abcde"], previous)
    assert set(got.values()) == {"P1"}
    assert events == [("merge", ("P1", "P2"), "P1", 5)]


def test_split_keeps_id_on_larger_part_and_mints_one_for_the_rest(spark):
    previous = [("a", "P1"), ("b", "P1"), ("c", "P1"), ("d", "P1"), ("e", "P1")]
    got, events = _assign(spark, [("a", 1), ("b", 1), ("c", 1), ("d", 4), ("e", 4)], previous)
    assert got["a"] == got["b"] == got["c"] == "P1"
    minted = _minted(spark, "r2", "d")
    assert got["d"] == got["e"] == minted
    assert events == [("split", ("P1",), minted, 2)]


def test_new_cluster_and_retired_person(spark):
    previous = [("a", "P1"), ("z", "P9")]
    got, events = _assign(spark, [("a", 1), ("n", 2), ("m", 2)], previous)
    new_id = _minted(spark, "r2", "m")
    assert got == {"a": "P1", "n": new_id, "m": new_id}
    assert events == sorted([("new", (), new_id, 2), ("retire", ("P9",), None, 0)])


def test_row_order_does_not_change_ids(spark):
    previous = [(u, "P1") for u in "abc"] + [(u, "P2") for u in "de"] + [("f", "P3")]
    current = [("a", 10), ("b", 10), ("d", 10), ("c", 20), ("e", 20), ("f", 20), ("g", 30)]
    got1, ev1 = _assign(spark, current, previous)
    got2, ev2 = _assign(spark, list(reversed(current)), list(reversed(previous)))
    assert got1 == got2 and ev1 == ev2
