"""natlink.store.delta on real Delta tables (delta-rs backend: this machine has no delta-spark jars).

Every expected value is written out by hand from the tiny inline inputs; the independent
check of "is this a real Delta table" is deltalake's own reader, never natlink.store.delta.read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from natlink.store import delta
from natlink.errors import DeltaTableError

SCHEMA = T.StructType(
    [
        T.StructField("record_id", T.StringType()),
        T.StructField("n", T.LongType()),
        T.StructField("region", T.StringType()),
    ]
)

BASE = [("r1", 1, "LONDON"), ("r2", 2, "LONDON"), ("r3", 3, "NORTH_WEST"), ("r4", 4, "WALES")]


@pytest.fixture(autouse=True)
def _auto_backend(monkeypatch):
    monkeypatch.delenv(delta.BACKEND_ENV, raising=False)


def frame(spark, rows, schema=SCHEMA):
    """A small DataFrame; built from Arrow, which skips the Python job a list of tuples needs."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)
    table = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=arrow_schema)
    return spark.createDataFrame(table)


@pytest.fixture(scope="module")
def base_table(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("delta-base") / "base"
    # 3 regions -> 3 files, in one commit (version 0)
    assert delta.write(frame(spark, BASE), path, partition_by=["region"]) == delta.WriteResult(
        "delta-rs", 0, 3, 4, False
    )
    return path


@pytest.fixture
def base(base_table, tmp_path):
    """A private copy of the BASE table, partitioned by region, at version 0.

    Copying the folder is a valid way to clone a Delta table (the log holds relative paths)
    and saves a Spark job per test.
    """
    path = tmp_path / "table"
    shutil.copytree(base_table, path)
    return path


def versions(path) -> int:
    return len(DeltaTable(str(path)).history())


def independent_rows(path) -> list[tuple]:
    """The table's rows as deltalake (not natlink) reads them, sorted."""
    table = DeltaTable(str(path)).to_pyarrow_table()
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


def natlink_rows(spark, path, **kw) -> list[tuple]:
    return sorted((tuple(r) for r in delta.read(spark, path, **kw).collect()), key=repr)


def parquet_on_disk(path) -> set[str]:
    root = Path(path)
    return {p.relative_to(root).as_posix() for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


def parquet_in_log(path) -> set[str]:
    return set(pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).column("path").to_pylist())


# --------------------------------------------------------------------------- backend choice


def test_backend_auto_detects_delta_rs_and_logs_once(spark, caplog):
    delta._logged.clear()
    with caplog.at_level(logging.INFO, logger="natlink.store.delta"):
        assert delta.backend(spark) == "delta-rs"
        assert delta.backend(spark) == "delta-rs"
    lines = [r.getMessage() for r in caplog.records if "backend" in r.getMessage()]
    assert lines == ["natlink.store.delta backend: delta-rs (Spark tasks write files, driver commits)"]


def test_forcing_delta_spark_without_jars_is_a_clear_error(spark, monkeypatch):
    monkeypatch.setenv(delta.BACKEND_ENV, "delta-spark")
    with pytest.raises(DeltaTableError, match="delta-spark classes .* not on the classpath"):
        delta.backend(spark)


def test_backend_override_values(spark, monkeypatch):
    monkeypatch.setenv(delta.BACKEND_ENV, "delta-rs")
    assert delta.backend(spark) == "delta-rs"
    monkeypatch.setenv(delta.BACKEND_ENV, "duckdb")
    with pytest.raises(DeltaTableError, match="NATLINK_DELTA_BACKEND='duckdb' is not a backend"):
        delta.backend(spark)


def test_delta_spark_detected_when_class_loads(monkeypatch):
    """Detection asks the JVM for io.delta.tables.DeltaTable; a loadable class means delta-spark."""

    class Utils:
        @staticmethod
        def classForName(name, initialize, no_spark_loader):
            assert name == "io.delta.tables.DeltaTable"
            return object

    class FakeJvm:
        class org:  # noqa: N801 - mirrors the JVM package path
            class apache:  # noqa: N801
                class spark:  # noqa: N801
                    class util:  # noqa: N801
                        pass

    FakeJvm.org.apache.spark.util.Utils = Utils

    class FakeSession:
        _jvm = FakeJvm

        class sparkContext:  # noqa: N801
            applicationId = f"fake-{uuid.uuid4()}"

    assert delta.backend(FakeSession) == "delta-spark"


# --------------------------------------------------------------------------- round trips


ALL_TYPES = T.StructType(
    [
        T.StructField("s", T.StringType()),
        T.StructField("i", T.IntegerType()),
        T.StructField("l", T.LongType()),
        T.StructField("d", T.DoubleType()),
        T.StructField("b", T.BooleanType()),
        T.StructField("day", T.DateType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("bin", T.BinaryType()),
        T.StructField("tags", T.ArrayType(T.StringType())),
        T.StructField("nums", T.ArrayType(T.IntegerType())),
        T.StructField("region", T.StringType()),
    ]
)
ALL_ROWS = [
    ("a", 1, 2**40, 1.5, True, dt.date(2020, 1, 31), dt.datetime(2020, 1, 1, 1, 2, 3, 456789),
     b"\x00\xff", ["x", None], [1, None], "LONDON"),
    (None, None, None, None, None, None, None, None, None, None, "LONDON"),
    ("é" * 40, -7, -(2**62), -0.25, False, dt.date(1969, 12, 31), dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
     b"", [], [], "01"),
]


def test_every_supported_type_round_trips_and_matches_deltalake(spark, tmp_path):
    path = tmp_path / "types"
    df = spark.createDataFrame(ALL_ROWS, ALL_TYPES)  # the list path: naive datetimes mean local time both ways
    result = delta.write(df, path, partition_by=["region"])
    assert result == delta.WriteResult("delta-rs", 0, 2, 3, False)  # 2 partition values -> 2 files

    back = delta.read(spark, path)
    assert back.schema == ALL_TYPES  # same types, same column order, region still a string
    assert sorted(map(tuple, back.collect()), key=repr) == sorted(ALL_ROWS, key=repr)
    # An independent reader sees the same values ("01" stays a string, not the number 1).
    spark_side = sorted((tuple(r.values()) for r in back.toArrow().to_pylist()), key=repr)
    assert independent_rows(path) == spark_side
    assert delta.row_count(path) == 3


def test_table_is_a_real_delta_table_on_disk(spark, tmp_path):
    path = tmp_path / "layout"
    delta.write(frame(spark, BASE), path, partition_by=["region"], commit_info={"run_id": "run-1"})
    assert (path / "_delta_log" / "00000000000000000000.json").is_file()
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == [
        "_delta_log", "region=LONDON", "region=NORTH_WEST", "region=WALES"
    ]
    on_disk = parquet_on_disk(path)
    assert on_disk == parquet_in_log(path)
    for rel in on_disk:  # the Delta protocol keeps partition columns out of the data files
        assert pq.read_schema(path / rel).names == ["record_id", "n"]
    table = DeltaTable(str(path))
    assert table.metadata().partition_columns == ["region"]
    assert table.history()[0]["run_id"] == "run-1"
    assert independent_rows(path) == sorted(BASE) == natlink_rows(spark, path)


def test_log_stats_are_correct_for_pruning(spark, base):
    path = base
    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).to_pylist()
    by_region = {a["partition.region"]: a for a in actions}
    # LONDON holds r1 (n=1) and r2 (n=2); WALES holds r4 (n=4)
    assert (by_region["LONDON"]["num_records"], by_region["LONDON"]["min.n"], by_region["LONDON"]["max.n"]) == (2, 1, 2)
    assert (by_region["LONDON"]["min.record_id"], by_region["LONDON"]["max.record_id"]) == ("r1", "r2")
    assert by_region["WALES"]["null_count.n"] == 0
    # deltalake prunes files on those stats: only WALES can hold n >= 4
    files = DeltaTable(str(path)).file_uris(file_pruning_predicate="n >= 4")
    assert [Path(f).parent.name for f in files] == ["region=WALES"]


def test_append_twice_then_time_travel(spark, base):
    path = base
    more = [("r5", 5, "LONDON"), ("r6", 6, "SCOTLAND")]
    second = delta.write(frame(spark, more), path)  # partitioning inherited from the table
    assert second.version == 1
    assert (second.rows, second.files) == (2, 2)
    assert versions(path) == 2
    assert natlink_rows(spark, path) == sorted(BASE + more) == independent_rows(path)
    assert delta.row_count(path) == 6
    assert natlink_rows(spark, path, version=0) == sorted(BASE)


def test_overwrite_replaces_rows_and_may_change_schema(spark, base):
    path = base
    delta.write(frame(spark, [("r9", 9, "WALES")]), path, mode="overwrite")
    assert natlink_rows(spark, path) == [("r9", 9, "WALES")]
    assert DeltaTable(str(path)).metadata().partition_columns == ["region"]

    new_schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("score", T.DoubleType())])
    result = delta.write(frame(spark, [("a", 0.5)], new_schema), path, mode="overwrite")
    assert result.version == 2 and versions(path) == 3
    back = delta.read(spark, path)
    assert back.schema == new_schema
    assert [tuple(r) for r in back.collect()] == [("a", 0.5)] == independent_rows(path)
    assert DeltaTable(str(path)).metadata().partition_columns == []
    assert natlink_rows(spark, path, version=0) == sorted(BASE)  # history survives the replace


def test_replace_partitions_touches_only_named_partitions(spark, base):
    path = base
    new = [("r7", 70, "LONDON"), ("r8", 80, "LONDON")]
    # NORTH_WEST is named but has no new rows: its old row r3 goes; WALES is untouched.
    result = delta.write(frame(spark, new), path, replace_partitions={"region": ["LONDON", "NORTH_WEST"]})
    assert (result.version, result.rows, result.skipped) == (1, 2, False)
    assert versions(path) == 2
    expected = sorted(new + [("r4", 4, "WALES")])
    assert natlink_rows(spark, path) == expected == independent_rows(path)
    assert parquet_in_log(path) <= parquet_on_disk(path)
    assert not any(p.startswith("region=NORTH_WEST/") for p in parquet_in_log(path))


def test_replace_partitions_creates_missing_table(spark, tmp_path):
    path = tmp_path / "replace-new"
    result = delta.write(frame(spark, BASE[:2]), path, replace_partitions={"region": ["LONDON"]})
    assert result.version == 0
    assert DeltaTable(str(path)).metadata().partition_columns == ["region"]
    assert natlink_rows(spark, path) == sorted(BASE[:2])


def test_replace_partitions_refuses_rows_outside_and_leaves_no_files(spark, base):
    path = base
    before = parquet_on_disk(path)
    # r3 (NORTH_WEST) and r4 (WALES) are outside {"LONDON"}: 2 offending rows
    with pytest.raises(DeltaTableError, match=r"column 'region': 2 row\(s\) outside replace_partitions"):
        delta.write(frame(spark, BASE), path, replace_partitions={"region": ["LONDON"]})
    assert versions(path) == 1
    assert parquet_on_disk(path) == before  # the rejected write's files were removed
    assert natlink_rows(spark, path) == sorted(BASE)


def test_txn_makes_a_rerun_change_nothing(spark, tmp_path):
    path = tmp_path / "txn"
    first = delta.write(frame(spark, BASE), path, partition_by=["region"], txn=("link-run", 7))
    assert delta.txn_version(path, "link-run") == 7
    again = delta.write(frame(spark, BASE), path, txn=("link-run", 7))
    older = delta.write(frame(spark, BASE), path, txn=("link-run", 3))
    assert again == older == delta.WriteResult("delta-rs", first.version, 0, 0, True)
    assert versions(path) == 1 and delta.row_count(path) == 4
    nxt = delta.write(frame(spark, [("r5", 5, "WALES")]), path, txn=("link-run", 8))
    assert (nxt.skipped, nxt.version) == (False, 1)
    assert delta.txn_version(path, "link-run") == 8
    assert delta.txn_version(path, "other-app") is None
    assert delta.txn_version(tmp_path / "absent", "link-run") is None
    assert delta.row_count(path) == 5


@pytest.mark.parametrize(
    ("schema", "rows", "message"),
    [
        (T.StructType(SCHEMA.fields[:1] + SCHEMA.fields[2:]), [("r9", "WALES")], r"missing column\(s\) \['n'\]"),
        (T.StructType(SCHEMA.fields + [T.StructField("extra", T.StringType())]), [("r9", 9, "WALES", "x")],
         r"extra column\(s\) \['extra'\]"),
        (T.StructType([SCHEMA.fields[0], T.StructField("n", T.StringType()), SCHEMA.fields[2]]), [("r9", "9", "WALES")],
         r"n \(table long, DataFrame string\)"),
    ],
    ids=["missing", "extra", "type"],
)
def test_append_schema_mismatch_names_columns(spark, base, schema, rows, message):
    path = base
    with pytest.raises(DeltaTableError, match=message):
        delta.write(frame(spark, rows, schema), path)
    assert versions(path) == 1


def test_null_and_unsafe_partition_values_are_refused_without_showing_values(spark, tmp_path):
    path = tmp_path / "unsafe"
    rows = [("r1", 1, None), ("r2", 2, "A/B"), ("r3", 3, "X=Y"), ("r4", 4, "100%"), ("r5", 5, ""),
            ("r6", 6, "EAST\n"), ("r7", 7, "OK")]
    with pytest.raises(DeltaTableError) as err:
        delta.write(frame(spark, rows), path, partition_by=["region"])
    text = str(err.value)
    # 1 NULL (r1); 5 unsafe: 'A/B', 'X=Y', '100%', '' (Delta reads it back as NULL), 'EAST\n'
    assert "column 'region': 1 NULL value(s)" in text
    assert "column 'region': 5 value(s) with characters unsafe" in text
    assert not any(v in text for v in ("A/B", "X=Y", "100%"))
    assert not delta.exists(path)
    assert parquet_on_disk(path) == set()


def test_empty_writes_keep_a_valid_table(spark, tmp_path, base):
    path = tmp_path / "empty"
    created = delta.write(frame(spark, []), path, partition_by=["region"])
    assert created == delta.WriteResult("delta-rs", 0, 0, 0, False)
    assert delta.exists(path) and delta.row_count(path) == 0
    back = delta.read(spark, path)
    assert back.schema == SCHEMA and back.count() == 0
    assert DeltaTable(str(path)).metadata().partition_columns == ["region"]

    appended_empty = delta.write(frame(spark, []), base, txn=("app", 1))
    assert appended_empty.version == 1 and delta.txn_version(base, "app") == 1  # still one commit
    assert delta.row_count(base) == 4
    emptied = delta.write(frame(spark, []), base, mode="overwrite")
    assert (emptied.version, emptied.rows) == (2, 0)
    assert delta.row_count(base) == 0 and delta.read(spark, base).count() == 0
    assert DeltaTable(str(base)).to_pyarrow_table().num_rows == 0
    assert natlink_rows(spark, base, version=1) == sorted(BASE)


def test_killed_write_leaves_previous_state_and_next_write_is_exact(spark, base, monkeypatch):
    path = base

    # 1. A task wrote files but the job died before any commit: orphan Parquet in the folder.
    orphan = pa.table({"record_id": ["ghost"], "n": pa.array([99], pa.int64())})
    pq.write_table(orphan, path / "region=LONDON" / f"part-00000-{uuid.uuid4()}.c000.zstd.parquet")
    (path / "region=GHOST").mkdir()
    pq.write_table(orphan, path / "region=GHOST" / "part-00000-orphan.parquet")

    # 2. The files were written but the driver's commit raised.
    def failing_commit(self, *args, **kwargs):
        raise OSError("simulated: driver died before the commit")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", failing_commit)
    with pytest.raises(DeltaTableError, match=r"commit to .* failed, the table is unchanged \(1 uncommitted file"):
        delta.write(frame(spark, [("r5", 5, "LONDON")]), path)
    monkeypatch.undo()
    monkeypatch.delenv(delta.BACKEND_ENV, raising=False)

    assert len(parquet_on_disk(path)) > len(parquet_in_log(path))  # the orphans are really there
    assert natlink_rows(spark, path) == sorted(BASE) == independent_rows(path)
    assert delta.row_count(path) == 4 and versions(path) == 1

    new = [("r6", 6, "LONDON"), ("r7", 7, "WALES")]
    delta.write(frame(spark, new), path)
    assert natlink_rows(spark, path) == sorted(BASE + new)
    assert delta.row_count(path) == 6 and versions(path) == 2


def test_commit_that_lands_then_errors_counts_as_written(spark, base, monkeypatch):
    real_commit = DeltaTable.create_write_transaction

    def commit_then_fail(self, *args, **kwargs):
        real_commit(self, *args, **kwargs)
        raise RuntimeError("simulated: post-commit checkpoint failed")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_fail)
    result = delta.write(frame(spark, [("r5", 5, "WALES")]), base)
    assert (result.version, result.files, result.rows, result.skipped) == (1, 1, 1, False)
    assert delta.row_count(base) == 5 and versions(base) == 2


def test_unpartitioned_table_in_a_new_nested_folder(spark, tmp_path):
    path = tmp_path / "a" / "b" / "unpartitioned"
    result = delta.write(spark.range(5).selectExpr("id", "cast(id * 2 as string) as doubled"), path)
    assert (result.version, result.rows) == (0, 5)
    assert DeltaTable(str(path)).metadata().partition_columns == []
    assert independent_rows(path) == [(i, str(2 * i)) for i in range(5)]


def test_large_writes_roll_files_without_losing_rows(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(delta, "_MAX_ROWS_PER_FILE", 10)
    monkeypatch.setattr(delta, "_ROW_GROUP_ROWS", 4)
    path = tmp_path / "roll"
    df = spark.range(100).selectExpr("cast(id as string) as record_id", "id as n", "'LONDON' as region")
    result = delta.write(df, path, partition_by=["region"])
    assert result.rows == 100 and result.files >= 10
    assert delta.row_count(path) == 100
    assert sorted(r.n for r in delta.read(spark, path).collect()) == list(range(100))


def test_argument_errors_before_any_spark_job(spark, tmp_path):
    df = frame(spark, BASE)
    cases = [
        ({"mode": "upsert"}, "mode must be 'append' or 'overwrite'"),
        ({"partition_by": ["n"]}, r"partition column\(s\) \['n'\] must be of type string"),
        ({"partition_by": ["nope"]}, r"partition column\(s\) \['nope'\] not in the DataFrame"),
        ({"replace_partitions": {"n": ["1"]}, "partition_by": ["region"]}, "non-partition column"),
        ({"replace_partitions": {"region": ["../etc", "OK\n", "OK"]}}, "2 value\\(s\\) that are not"),
        ({"txn": ("app", -1)}, "txn must be"),
        ({"commit_info": {"operation": "x"}}, "reserved"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DeltaTableError, match=message):
            delta.write(df, tmp_path / "args", **kwargs)
    null_typed = spark.range(1).selectExpr("cast(id as string) as record_id", "NULL as note")
    with pytest.raises(DeltaTableError, match=r"note \(void\)"):
        delta.write(null_typed, tmp_path / "args")
    assert not delta.exists(tmp_path / "args")


def test_missing_table_and_version_errors(spark, tmp_path, base):
    assert not delta.exists(tmp_path / "nothing")
    with pytest.raises(DeltaTableError, match="no Delta table"):
        delta.read(spark, tmp_path / "nothing")
    with pytest.raises(DeltaTableError, match="no Delta table"):
        delta.row_count(tmp_path / "nothing")
    with pytest.raises(DeltaTableError, match="at version 5"):
        delta.read(spark, base, version=5)


def _hand_made_table(root: Path, protocol: dict, configuration=None, field_meta=None, nullable=True) -> None:
    """A one-column, zero-file Delta table whose protocol and metadata we choose."""
    log_dir = root / "_delta_log"
    log_dir.mkdir(parents=True)
    schema = json.dumps({"type": "struct", "fields": [
        {"name": "n", "type": "long", "nullable": nullable, "metadata": field_meta or {}}]})
    actions = [
        {"protocol": protocol},
        {"metaData": {"id": str(uuid.uuid4()), "format": {"provider": "parquet", "options": {}},
                      "schemaString": schema, "partitionColumns": [], "configuration": configuration or {},
                      "createdTime": 0}},
    ]
    (log_dir / "00000000000000000000.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def test_refuses_tables_needing_unsupported_features(spark, tmp_path):
    dv = tmp_path / "dv"
    _hand_made_table(dv, {"minReaderVersion": 3, "minWriterVersion": 7,
                          "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]})
    for call in (lambda: delta.read(spark, dv), lambda: delta.row_count(dv)):
        with pytest.raises(DeltaTableError, match="deletionVectors"):
            call()

    cm = tmp_path / "column-mapping"
    _hand_made_table(
        cm, {"minReaderVersion": 2, "minWriterVersion": 5},
        {"delta.columnMapping.mode": "name", "delta.columnMapping.maxColumnId": "1"},
        {"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "col-5f1c"},
    )
    with pytest.raises(DeltaTableError, match="column mapping"):
        delta.read(spark, cm)

    checked = tmp_path / "constraints"
    _hand_made_table(checked, {"minReaderVersion": 1, "minWriterVersion": 3}, {"delta.constraints.pos": "n > 0"})
    assert delta.read(spark, checked).count() == 0  # reading is fine
    with pytest.raises(DeltaTableError, match="checkConstraints"):
        delta.write(spark.range(1).selectExpr("id as n"), checked)


def test_two_partition_columns_group_and_replace_correctly(spark, tmp_path):
    path = str(tmp_path / "two-level")  # a str path works as well as a Path
    schema = T.StructType([T.StructField("record_id", T.StringType()), T.StructField("dataset", T.StringType()),
                           T.StructField("region", T.StringType())])
    rows = [("a1", "GP", "LONDON"), ("a2", "GP", "WALES"), ("a3", "HES", "LONDON"), ("a4", "HES", "LONDON")]
    result = delta.write(frame(spark, rows, schema), path, partition_by=["dataset", "region"])
    assert (result.files, result.rows) == (3, 4)  # GP/LONDON, GP/WALES, HES/LONDON
    assert {str(Path(p).parent) for p in parquet_on_disk(path)} == {
        "dataset=GP/region=LONDON", "dataset=GP/region=WALES", "dataset=HES/region=LONDON"
    }
    assert independent_rows(path) == sorted(rows) == natlink_rows(spark, path)
    # replacing LONDON replaces it in every dataset (the mapping is an AND over named columns only)
    delta.write(frame(spark, [("b1", "HES", "LONDON")], schema), path, replace_partitions={"region": ["LONDON"]})
    assert natlink_rows(spark, path) == [("a2", "GP", "WALES"), ("b1", "HES", "LONDON")]
    assert delta.exists(Path(path)) and delta.row_count(Path(path)) == 2


def test_not_null_columns_of_an_existing_table_are_enforced(spark, tmp_path):
    path = tmp_path / "not-null"
    _hand_made_table(path, {"minReaderVersion": 1, "minWriterVersion": 2}, nullable=False)
    with pytest.raises(DeltaTableError, match=r"column 'n': 1 NULL value\(s\) in a NOT NULL column"):
        delta.write(frame(spark, [(1,), (None,)], T.StructType([T.StructField("n", T.LongType())])), path)
    assert DeltaTable(str(path)).version() == 0  # nothing committed


# --------------------------------------------------------------------------- delta-spark (faked JVM side)


class _RecordingWriter:
    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, *args))
            return self

        return record


class _FakeFrame:
    """Enough of a DataFrame for the delta-spark path: the schema, and a writer that records calls."""

    def __init__(self, spark, schema, problem_counts):
        self.sparkSession, self.schema, self.columns = spark, schema, schema.names
        self.calls: list[tuple] = []
        self._counts = problem_counts

    def agg(self, *columns):
        counts = self._counts

        class _Agg:
            @staticmethod
            def first():
                return {f"c{i}": counts.get(i, 0) for i in range(len(columns))}

        return _Agg()

    def select(self, *columns):
        self.calls.append(("select", *[str(c) for c in columns]))
        return self

    @property
    def write(self):
        return _RecordingWriter(self.calls)


def _fake_delta_spark(monkeypatch, version=0, metrics=None):
    import importlib

    tables = importlib.import_module("delta.tables")  # delta-spark's Python API (no jars needed to import)
    history_row = {"version": version, "operationMetrics": metrics or {"numFiles": "3", "numOutputRows": "4"}}

    class _History:
        def select(self, *cols):
            return self

        def first(self):
            return history_row

    class _Table:
        def history(self, limit):
            assert limit == 1
            return _History()

    monkeypatch.setattr(tables.DeltaTable, "forPath", classmethod(lambda cls, spark, path: _Table()))
    monkeypatch.setattr(delta, "backend", lambda spark: "delta-spark")


def test_delta_spark_replace_partitions_uses_replace_where_and_txn(spark, base, monkeypatch):
    _fake_delta_spark(monkeypatch, version=1)
    fake = _FakeFrame(spark, SCHEMA, {})
    result = delta.write(fake, base, replace_partitions={"region": ["LONDON", "WALES"]},
                         txn=("run", 2), commit_info={"run_id": "run-2"})
    assert result == delta.WriteResult("delta-spark", 1, 3, 4, False)
    calls = fake.calls
    assert ("format", "delta") in calls and ("mode", "overwrite") in calls
    assert ("option", "replaceWhere", "`region` IN ('LONDON', 'WALES')") in calls
    assert ("partitionBy", "region") in calls
    assert ("option", "txnAppId", "run") in calls and ("option", "txnVersion", "2") in calls
    assert ("option", "userMetadata", '{"run_id": "run-2"}') in calls
    assert calls[-1] == ("save", str(base))


def test_delta_spark_refuses_bad_partition_values_before_writing(spark, base, monkeypatch):
    _fake_delta_spark(monkeypatch)
    # checks are (region null, region unsafe, region outside): pretend 2 rows are outside
    fake = _FakeFrame(spark, SCHEMA, {2: 2})
    with pytest.raises(DeltaTableError, match=r"column 'region': 2 row\(s\) outside replace_partitions"):
        delta.write(fake, base, replace_partitions={"region": ["LONDON"]})
    assert not any(c[0] == "save" for c in fake.calls)


def test_delta_spark_reports_its_own_txn_skip(spark, base, monkeypatch):
    _fake_delta_spark(monkeypatch, version=0)  # the table stays at version 0 after save()
    fake = _FakeFrame(spark, SCHEMA, {})
    assert delta.write(fake, base, mode="append") == delta.WriteResult("delta-spark", 0, 0, 0, True)
    assert ("mode", "append") in fake.calls and ("partitionBy", "region") in fake.calls
