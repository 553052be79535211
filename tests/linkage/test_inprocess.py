"""The in-process engine's pieces: engine choice, comparison counts, spill clean-up, node order.

Its scoring and clustering are checked end to end against the Spark engine in
tests/linkage/test_run.py (same edges, weights, pairs per rule and persons).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from natlink.linkage import blocking
from natlink.linkage import clustering
from natlink.linkage import inprocess
from natlink.linkage.engine import choose
from natlink.config import LinkConfig
from natlink.errors import ConfigError

RULES = [blocking.parse_rule(r) for r in ("l.a = r.a", "l.b = r.b AND l.c = r.c")]


def test_choose_picks_by_size_and_refuses_unknown_engines(tmp_path):
    def cfg(name: str) -> LinkConfig:
        return LinkConfig(engine=name, in_process_max_records=1000)

    assert choose(cfg("auto"), 1000) == "in_process"
    assert choose(cfg("auto"), 1001) == "spark"
    assert choose(cfg("spark"), 10) == "spark"
    assert choose(cfg("in_process"), 10**9) == "in_process"
    with pytest.raises(ConfigError, match="link engine must be one of"):
        choose(cfg("auto").model_copy(update={"engine": "duckdb"}), 10)
    with pytest.raises(ConfigError, match="engine"):
        from natlink.config import load

        bad = Path(tmp_path) / "link.yaml"
        bad.write_text("engine: duckdb\n", encoding="utf-8")
        load(bad, LinkConfig)


def _slim(rows: int, seed: int) -> pa.Table:
    rng = random.Random(seed)

    def value(n: int, null_share: float):
        return None if rng.random() < null_share else rng.randrange(n)

    # Unique ids in shuffled order: the engine must number them in unique-id order.
    ids = [f"d:{i:05d}" for i in range(rows)]
    rng.shuffle(ids)
    return pa.table({
        "unique_id": ids,
        "a": pa.array([value(50, 0.3) for _ in ids], pa.int64()),
        "b": pa.array([value(6, 0.1) for _ in ids], pa.int64()),
        "c": pa.array([value(5, 0.2) for _ in ids], pa.int64()),
    })


def test_counts_equal_the_spark_count_and_nodes_follow_unique_id_order(spark, tmp_path):
    slim = _slim(700, 3)
    with inprocess.Engine(spill_parent=str(tmp_path)) as engine:
        spill = list(tmp_path.glob("natlink-duckdb-*"))
        assert len(spill) == 1 and spill[0].is_dir()
        records = engine.load(slim)
        counts = engine.count_comparisons(RULES)
    assert not list(tmp_path.glob("natlink-duckdb-*")), "spill directory left behind"
    assert records.column("node_id").to_pylist() == list(range(700))
    assert records.column("unique_id").to_pylist() == sorted(slim.column("unique_id").to_pylist())
    frame = spark.createDataFrame(records)
    assert counts == blocking.count_comparisons(frame, RULES)
    # And by hand: sum over complete key groups of n choose 2.
    rows = records.to_pylist()
    for rule, count in zip(RULES, counts):
        groups: dict[tuple, int] = {}
        for r in rows:
            key = tuple(r[k] for k in rule.keys)
            if None not in key:
                groups[key] = groups.get(key, 0) + 1
        assert count == sum(n * (n - 1) // 2 for n in groups.values()) > 0


def test_label_components_gives_each_node_its_components_smallest_id():
    src = np.array([5, 7, 2, 9, 11], dtype=np.int64)
    dst = np.array([7, 2, 40, 11, 12], dtype=np.int64)
    nodes, component = clustering.label_components(src, dst)
    assert dict(zip(nodes.tolist(), component.tolist())) == {2: 2, 5: 2, 7: 2, 40: 2, 9: 9, 11: 9, 12: 9}
    empty = clustering.label_components(np.array([], np.int64), np.array([], np.int64))
    assert [len(a) for a in empty] == [0, 0]


def test_spill_directory_is_removed_even_when_the_work_fails(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with inprocess.Engine(spill_parent=str(tmp_path)):
            raise RuntimeError("boom")
    assert not list(tmp_path.glob("natlink-duckdb-*"))
