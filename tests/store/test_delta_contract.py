"""The Delta contract of natlink.store.delta, on its one backend (delta-spark, jars from `make setup`).

Append, overwrite, atomic partition replace, merge, reads at a version, idempotent reruns,
partition-value safety, concurrent writers to one region (one loses cleanly, the table stays
whole), a writer killed with SIGKILL mid-write then rerun (nothing lost, nothing doubled), and
table maintenance. Expected rows are written out by hand from the tiny inline inputs; the
independent check that a table is real Delta is deltalake (delta-rs), never natlink's own reader.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F, types as T

from natlink.errors import DeltaConflictError, DeltaTableError
from natlink.store import delta

HERE = Path(__file__).resolve().parent
SCHEMA = T.StructType(
    [T.StructField("record_id", T.StringType()), T.StructField("n", T.LongType()), T.StructField("region", T.StringType())]
)
BASE = [("r1", 1, "LONDON"), ("r2", 2, "LONDON"), ("r3", 3, "NORTH_WEST"), ("r4", 4, "WALES")]


def frame(spark, rows, schema=SCHEMA):
    """A small DataFrame built from Arrow (no Python job, unlike a list of tuples)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    table = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=to_arrow_schema(schema))
    return spark.createDataFrame(table)


@pytest.fixture(scope="module")
def base_table(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("delta-base") / "base"
    result = delta.write(frame(spark, BASE), path, partition_by=["region"])
    # 3 regions, optimized write: one file per region, 4 rows, version 0
    assert result == delta.WriteResult("delta-spark", 0, 3, 4, False)
    return path


@pytest.fixture
def base(base_table, tmp_path):
    """A private copy of the BASE table at version 0 (a folder copy clones a Delta table: its log holds relative paths)."""
    path = tmp_path / "table"
    shutil.copytree(base_table, path)
    return path


def independent_rows(path) -> list[tuple]:
    """The table's rows as deltalake (not natlink) reads them, sorted."""
    return sorted((tuple(r.values()) for r in DeltaTable(str(path)).to_pyarrow_table().to_pylist()), key=repr)


def natlink_rows(spark, path, **kw) -> list[tuple]:
    return sorted((tuple(r) for r in delta.read(spark, path, **kw).collect()), key=repr)


def commits(path) -> int:
    return len(DeltaTable(str(path)).history())


def parquet_on_disk(path) -> set[str]:
    root = Path(path)
    return {p.relative_to(root).as_posix() for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


# --------------------------------------------------------------------------- backend


def test_backend_is_delta_spark_and_says_so_once(spark, caplog, tmp_path):
    spark.conf.unset(delta.LOGGED_CONF)
    with caplog.at_level(logging.INFO, logger="natlink.store.delta"):
        assert delta.backend(spark) == delta.BACKEND == "delta-spark"
        delta.exists(tmp_path)
    lines = [r.getMessage() for r in caplog.records if "backend" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("natlink.store.delta backend: delta-spark 4.")
    assert lines[0] == f"natlink.store.delta backend: {delta.describe(spark)}" and f"on Spark {spark.version}" in lines[0]


def test_local_sessions_find_the_fetched_jars_or_say_how_to_get_them(tmp_path, monkeypatch):
    from natlink.spark.session import DELTA_JARS_ENV, delta_jars

    assert any(Path(j).name.startswith("delta-spark_4.1_2.13-4.4.0") for j in delta_jars())  # make setup's jars/delta
    monkeypatch.setenv(DELTA_JARS_ENV, str(tmp_path))
    with pytest.raises(DeltaTableError, match="make setup"):
        delta_jars()


# --------------------------------------------------------------------------- append, overwrite, read at a version


ALL_TYPES = T.StructType(
    [
        T.StructField("s", T.StringType()), T.StructField("i", T.IntegerType()), T.StructField("l", T.LongType()),
        T.StructField("d", T.DoubleType()), T.StructField("b", T.BooleanType()), T.StructField("day", T.DateType()),
        T.StructField("ts", T.TimestampType()), T.StructField("bin", T.BinaryType()),
        T.StructField("tags", T.ArrayType(T.StringType())), T.StructField("region", T.StringType()),
    ]
)


def test_types_round_trip_and_an_independent_reader_agrees(spark, tmp_path):
    import datetime as dt

    rows = [
        ("a", 1, 2**40, 1.5, True, dt.date(2020, 1, 31), dt.datetime(2020, 1, 1, 1, 2, 3, 456789), b"\x00\xff", ["x", None], "LONDON"),
        (None, None, None, None, None, None, None, None, None, "LONDON"),
        ("é" * 40, -7, -(2**62), -0.25, False, dt.date(1969, 12, 31), dt.datetime(1969, 12, 31, 23, 59, 59), b"", [], "01"),
    ]
    path = tmp_path / "types"
    result = delta.write(spark.createDataFrame(rows, ALL_TYPES), path, partition_by=["region"], commit_info={"run_id": "run-1"})
    assert (result.version, result.files, result.rows) == (0, 2, 3)  # 2 partition values -> 2 files
    back = delta.read(spark, path)
    assert back.schema == ALL_TYPES  # same types and order; region ("01") stays a string
    assert sorted(map(tuple, back.collect()), key=repr) == sorted(rows, key=repr)
    assert independent_rows(path) == sorted((tuple(r.values()) for r in back.toArrow().to_pylist()), key=repr)
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == ["_delta_log", "region=01", "region=LONDON"]
    assert DeltaTable(str(path)).metadata().partition_columns == ["region"]
    assert delta.history(path)[0]["commit_info"] == {"run_id": "run-1"}
    assert delta.row_count(path) == 3


def test_append_then_read_at_each_version(spark, base):
    more = [("r5", 5, "LONDON"), ("r6", 6, "SCOTLAND")]
    second = delta.write(frame(spark, more), base)  # partitioning inherited from the table
    assert (second.version, second.rows, second.files) == (1, 2, 2)
    assert natlink_rows(spark, base) == sorted(BASE + more) == independent_rows(base)
    assert natlink_rows(spark, base, version=0) == sorted(BASE)
    assert delta.row_count(base) == 6
    assert [h["operation"] for h in delta.history(base)] == ["WRITE", "WRITE"]


def test_overwrite_replaces_rows_and_may_change_schema(spark, base):
    delta.write(frame(spark, [("r9", 9, "WALES")]), base, mode="overwrite")
    assert natlink_rows(spark, base) == [("r9", 9, "WALES")]
    assert DeltaTable(str(base)).metadata().partition_columns == ["region"]
    new_schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("score", T.DoubleType())])
    result = delta.write(frame(spark, [("a", 0.5)], new_schema), base, mode="overwrite")
    assert result.version == 2 and commits(base) == 3
    assert delta.read(spark, base).schema == new_schema
    assert natlink_rows(spark, base) == [("a", 0.5)] == independent_rows(base)
    assert natlink_rows(spark, base, version=0) == sorted(BASE)  # history survives the replace


def test_missing_table_and_version_errors(spark, tmp_path, base):
    assert not delta.exists(tmp_path / "nothing")
    for call in (lambda: delta.read(spark, tmp_path / "nothing"), lambda: delta.row_count(tmp_path / "nothing")):
        with pytest.raises(DeltaTableError, match="no Delta table"):
            call()
    with pytest.raises(DeltaTableError, match="at version 5"):
        delta.read(spark, base, version=5)
    assert delta.txn_version(tmp_path / "nothing", "app") is None


# --------------------------------------------------------------------------- atomic region replace


def test_replace_partitions_touches_only_the_named_partitions(spark, base):
    new = [("r7", 70, "LONDON"), ("r8", 80, "LONDON")]
    # NORTH_WEST is named but has no new rows: its old row r3 goes; WALES is untouched.
    result = delta.write(frame(spark, new), base, replace_partitions={"region": ["LONDON", "NORTH_WEST"]})
    assert (result.version, result.rows, result.skipped) == (1, 2, False)
    assert natlink_rows(spark, base) == sorted(new + [("r4", 4, "WALES")]) == independent_rows(base)


def test_replace_partitions_refuses_rows_outside_and_commits_nothing(spark, base):
    # r3 (NORTH_WEST) and r4 (WALES) are outside {"LONDON"}: 2 offending rows
    with pytest.raises(DeltaTableError, match=r"column 'region': 2 row\(s\) outside replace_partitions"):
        delta.write(frame(spark, BASE), base, replace_partitions={"region": ["LONDON"]})
    assert commits(base) == 1 and natlink_rows(spark, base) == sorted(BASE)


def test_replace_partitions_creates_a_missing_table_and_two_levels_work(spark, tmp_path):
    path = str(tmp_path / "two-level")  # a str path works as well as a Path
    schema = T.StructType([T.StructField("record_id", T.StringType()), T.StructField("dataset", T.StringType()),
                           T.StructField("region", T.StringType())])
    rows = [("a1", "GP", "LONDON"), ("a2", "GP", "WALES"), ("a3", "HES", "LONDON")]
    created = delta.write(frame(spark, rows, schema), path, partition_by=["dataset", "region"],
                          replace_partitions={"dataset": ["GP", "HES"]})
    assert created.version == 0 and DeltaTable(path).metadata().partition_columns == ["dataset", "region"]
    # replacing LONDON replaces it in every dataset (an AND over the named columns only)
    delta.write(frame(spark, [("b1", "HES", "LONDON")], schema), path, replace_partitions={"region": ["LONDON"]})
    assert natlink_rows(spark, path) == [("a2", "GP", "WALES"), ("b1", "HES", "LONDON")] == independent_rows(path)


def test_null_and_unsafe_partition_values_are_refused_without_showing_values(spark, tmp_path):
    path = tmp_path / "unsafe"
    rows = [("r1", 1, None), ("r2", 2, "A/B"), ("r3", 3, "X=Y"), ("r4", 4, "100%"), ("r5", 5, ""),
            ("r6", 6, "EAST\n"), ("r7", 7, "__HIVE_DEFAULT_PARTITION__"), ("r8", 8, "OK")]
    with pytest.raises(DeltaTableError) as err:
        delta.write(frame(spark, rows), path, partition_by=["region"])
    text = str(err.value)
    # 1 NULL (r1); 6 unsafe: 'A/B', 'X=Y', '100%', '' (Delta's NULL), 'EAST\n', Hive's NULL marker
    assert "column 'region': 1 NULL value(s)" in text and "column 'region': 6 value(s) with characters unsafe" in text
    assert not any(v in text for v in ("A/B", "X=Y", "100%", "EAST", "HIVE"))
    assert err.value.__cause__ is None  # Spark's own error (which could quote a row) is not chained
    assert not delta.exists(path)


# --------------------------------------------------------------------------- idempotent reruns and merge


def test_txn_makes_a_rerun_change_nothing(spark, tmp_path):
    path = tmp_path / "txn"
    first = delta.write(frame(spark, BASE), path, partition_by=["region"], txn=("link-run", 7))
    assert delta.txn_version(path, "link-run") == 7
    again = delta.write(frame(spark, BASE), path, txn=("link-run", 7))
    older = delta.write(frame(spark, BASE), path, txn=("link-run", 3))
    assert again == older == delta.WriteResult("delta-spark", first.version, 0, 0, True)
    assert commits(path) == 1 and delta.row_count(path) == 4
    nxt = delta.write(frame(spark, [("r5", 5, "WALES")]), path, txn=("link-run", 8))
    assert (nxt.skipped, nxt.version) == (False, 1) and delta.txn_version(path, "link-run") == 8
    assert delta.txn_version(path, "other-app") is None and delta.row_count(path) == 5


def test_merge_upserts_by_key_and_is_idempotent(spark, base):
    # r2 changes n (2 -> 20) and stays in LONDON; r5 is new in WALES; r1, r3, r4 are untouched.
    change = [("r2", 20, "LONDON"), ("r5", 5, "WALES")]
    merged = delta.merge(frame(spark, change), base, ["record_id"], txn=("upsert", 1), commit_info={"run_id": "m1"})
    assert (merged.version, merged.rows, merged.skipped) == (1, 2, False)  # 1 updated + 1 inserted
    expected = sorted([("r1", 1, "LONDON"), ("r2", 20, "LONDON"), ("r3", 3, "NORTH_WEST"), ("r4", 4, "WALES"), ("r5", 5, "WALES")])
    assert natlink_rows(spark, base) == expected == independent_rows(base)
    assert delta.history(base)[0]["operation"] == "MERGE" and delta.history(base)[0]["commit_info"] == {"run_id": "m1"}
    assert delta.merge(frame(spark, change), base, ["record_id"], txn=("upsert", 1)).skipped
    assert commits(base) == 2 and delta.txn_version(base, "upsert") == 1
    with pytest.raises(DeltaTableError, match=r"key column\(s\) \['nope'\]"):
        delta.merge(frame(spark, change), base, ["nope"])
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None  # session confs restored


# --------------------------------------------------------------------------- refusals before any Spark job


@pytest.mark.parametrize(
    ("schema", "rows", "message"),
    [
        (T.StructType(SCHEMA.fields[:1] + SCHEMA.fields[2:]), [("r9", "WALES")], r"missing column\(s\) \['n'\]"),
        (T.StructType(SCHEMA.fields + [T.StructField("extra", T.StringType())]), [("r9", 9, "WALES", "x")], r"extra column\(s\) \['extra'\]"),
        (T.StructType([SCHEMA.fields[0], T.StructField("n", T.StringType()), SCHEMA.fields[2]]), [("r9", "9", "WALES")],
         r"n \(table bigint, DataFrame string\)"),
    ],
    ids=["missing", "extra", "type"],
)
def test_append_schema_mismatch_names_columns(spark, base, schema, rows, message):
    with pytest.raises(DeltaTableError, match=message):
        delta.write(frame(spark, rows, schema), base)
    assert commits(base) == 1


def test_argument_errors(spark, tmp_path):
    df = frame(spark, BASE)
    cases = [
        ({"mode": "upsert"}, "mode must be 'append' or 'overwrite'"),
        ({"partition_by": ["n"]}, r"partition column\(s\) \['n'\] must be of type string"),
        ({"partition_by": ["nope"]}, r"partition column\(s\) \['nope'\] not in the DataFrame"),
        ({"replace_partitions": {"n": ["1"]}, "partition_by": ["region"]}, "non-partition column"),
        ({"replace_partitions": {"region": ["../etc", "OK\n", "OK"]}}, r"2 value\(s\) that are not"),
        ({"txn": ("app", -1)}, "txn must be"),
        ({"commit_info": {"natlink_write_id": "x"}}, "commit_info keys"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DeltaTableError, match=message):
            delta.write(df, tmp_path / "args", **kwargs)
    with pytest.raises(DeltaTableError, match=r"\['note'\] have no type"):
        delta.write(spark.range(1).selectExpr("cast(id as string) as record_id", "NULL as note"), tmp_path / "args")
    assert not delta.exists(tmp_path / "args")


def test_empty_writes_keep_a_valid_table(spark, tmp_path, base):
    path = tmp_path / "empty"
    assert delta.write(frame(spark, []), path, partition_by=["region"]) == delta.WriteResult("delta-spark", 0, 0, 0, False)
    assert delta.exists(path) and delta.row_count(path) == 0 and delta.read(spark, path).schema == SCHEMA
    emptied = delta.write(frame(spark, []), base, mode="overwrite")
    assert (emptied.version, emptied.rows) == (1, 0) and delta.row_count(base) == 0
    assert DeltaTable(str(base)).to_pyarrow_table().num_rows == 0
    assert natlink_rows(spark, base, version=0) == sorted(BASE)


def test_not_null_columns_are_enforced_without_values(spark, tmp_path):
    path = tmp_path / "not-null"
    spark.sql(f"CREATE TABLE delta.`{path}` (n BIGINT NOT NULL) USING delta")
    with pytest.raises(DeltaTableError, match="NOT_NULL") as err:
        delta.write(frame(spark, [(1,), (None,)], T.StructType([T.StructField("n", T.LongType())])), path)
    assert err.value.__cause__ is None and commits(path) == 1  # only the CREATE


# --------------------------------------------------------------------------- concurrency and crashes


def slow(spark, rows, seconds: float):
    """``rows`` as a frame whose one task takes ``seconds`` (a JVM sleep: no Python worker)."""
    wait = F.expr(f"java_method('java.lang.Thread', 'sleep', cast({int(seconds * 1000)} as bigint))")
    return frame(spark, rows).coalesce(1).withColumn("waited", wait).drop("waited")


def test_concurrent_writers_to_one_region_one_loses_cleanly(spark, base):
    # Both read version 0, both write LONDON for ~3 s, one commits version 1; the other must
    # fail with DeltaConflictError, commit nothing and leave the winner's rows.
    mine, theirs = [("a1", 10, "LONDON")], [("b1", 20, "LONDON"), ("b2", 21, "LONDON")]
    outcome: dict[str, object] = {}

    def run(name, rows):
        try:
            outcome[name] = delta.write(slow(spark, rows, 3), base, replace_partitions={"region": ["LONDON"]})
        except Exception as exc:  # noqa: BLE001 - recorded and checked below
            outcome[name] = exc

    threads = [threading.Thread(target=run, args=a) for a in (("mine", mine), ("theirs", theirs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    lost = [k for k, v in outcome.items() if isinstance(v, Exception)]
    won = [k for k, v in outcome.items() if isinstance(v, delta.WriteResult)]
    assert len(lost) == 1 and len(won) == 1, outcome
    error = outcome[lost[0]]
    assert isinstance(error, DeltaConflictError) and "lost a race" in str(error)
    assert outcome[won[0]].version == 1 and commits(base) == 2
    winner = mine if won[0] == "mine" else theirs
    rest = [r for r in BASE if r[2] != "LONDON"]
    assert natlink_rows(spark, base) == sorted(winner + rest) == independent_rows(base)


def test_killed_mid_write_then_rerun_loses_and_doubles_nothing(spark, tmp_path):
    base = tmp_path / "killed"  # unpartitioned, so the job's tasks write straight into the folder
    delta.write(frame(spark, BASE), base)
    job = [sys.executable, str(HERE / "killable_write.py"), str(base)]
    proc = subprocess.Popen(job, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = parquet_on_disk(base)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and parquet_on_disk(base) == started and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the write finished before it could be killed"
        assert parquet_on_disk(base) != started, "no data file appeared before the deadline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the job's Python and its Spark JVM, mid-write
        proc.wait(timeout=60)
    assert commits(base) == 1 and natlink_rows(spark, base) == sorted(BASE)  # files, but no commit
    assert len(parquet_on_disk(base)) > len(DeltaTable(str(base)).file_uris())

    # The rerun (same txn) writes the job's rows once; a second rerun changes nothing.
    from killable_write import APP_ID, job_rows

    rerun = delta.write(frame(spark, job_rows()), base, txn=(APP_ID, 1))
    assert (rerun.version, rerun.rows, rerun.skipped) == (1, len(job_rows()), False)
    assert delta.write(frame(spark, job_rows()), base, txn=(APP_ID, 1)).skipped
    assert natlink_rows(spark, base) == sorted(BASE + job_rows()) == independent_rows(base)


# --------------------------------------------------------------------------- maintenance


def test_optimize_compacts_and_retention_keeps_time_travel_through_vacuum(spark, tmp_path):
    path = tmp_path / "small-files"
    for i in range(3):  # three appends of one row each: three small files
        delta.write(frame(spark, [(f"r{i}", i, "LONDON")]), path, partition_by=["region"])
    metrics = delta.optimize(path)
    assert (metrics["numFilesRemoved"], metrics["numFilesAdded"]) == (3, 1)
    assert len(DeltaTable(str(path)).file_uris()) == 1 and delta.row_count(path) == 3
    with pytest.raises(DeltaTableError, match=">= 7"):
        delta.set_retention(path, days=1)
    delta.set_retention(path, days=400)
    props = DeltaTable(str(path)).metadata().configuration
    assert props["delta.deletedFileRetentionDuration"] == props["delta.logRetentionDuration"] == "interval 400 days"
    delta.vacuum(path)  # the three pre-OPTIMIZE files are within 400 days: kept for time travel
    assert natlink_rows(spark, path, version=0) == [("r0", 0, "LONDON")]
    assert delta.optimize(path, zorder_by=["n"])["numFilesAdded"] in (0, 1)
