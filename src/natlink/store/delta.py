"""The only module in natlink that reads or writes tables (Delta Lake).

Two backends, chosen once per Spark application (override: ``NATLINK_DELTA_BACKEND``):

* ``delta-spark`` when ``io.delta.tables.DeltaTable`` loads on the JVM (clusters launched
  with the delta-spark package): plain ``df.write.format("delta")`` / ``spark.read.format("delta")``.
* ``delta-rs`` otherwise (laptops, CI, anywhere without the Delta jars): Spark tasks write the
  Parquet data files in parallel with ``mapInArrow`` straight into the table folder (Hive-style
  ``col=value/`` directories, partition columns not stored in the files) and return one small
  row of metadata per file; the driver then makes ONE atomic commit with ``deltalake``. Data
  never travels to the driver. Files from a write that never commits are invisible: readers
  list files from the Delta log, never from the folder.

Partition values must be non-null strings made of ``[A-Za-z0-9_.-]`` (at most 128 characters):
they become directory names, and errors only ever report column names and counts, because
values may be identifiers.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Mapping, Sequence

from natlink.errors import DeltaTableError

__all__ = ["WriteResult", "backend", "write", "read", "exists", "row_count", "txn_version"]

log = logging.getLogger(__name__)

DELTA_SPARK = "delta-spark"
DELTA_RS = "delta-rs"
BACKEND_ENV = "NATLINK_DELTA_BACKEND"
_DELTA_SPARK_CLASS = "io.delta.tables.DeltaTable"
_BACKEND_LOG_LINE = {
    DELTA_RS: "natlink.store.delta backend: delta-rs (Spark tasks write files, driver commits)",
    DELTA_SPARK: "natlink.store.delta backend: delta-spark",
}

# Directory names must survive every filesystem and URI encoding unchanged; '=' '/' '%' would
# change the Hive path, '' means NULL to Delta, and Spark reads this marker back as NULL.
_SAFE_PARTITION_VALUE = r"[A-Za-z0-9_.\-]{1,128}"  # whole value: Python fullmatch, Java ^...\z
_SAFE_PARTITION_VALUE_JAVA = "^" + _SAFE_PARTITION_VALUE + r"\z"  # '$' would let a trailing newline in
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SAFE_HINT = "non-null strings of letters, digits, '_', '-' or '.' (1-128 characters)"

# File layout of the delta-rs writer. Read on the driver and shipped to tasks in _TaskConfig
# (so tests can shrink them); measured on 2 cores with 1M rows, see benchmarks.
_ROW_GROUP_ROWS = 131_072
_MAX_ROWS_PER_FILE = 4_000_000
_TASK_BUFFER_ROWS = 524_288  # rows a task buffers across all its open files before flushing one
_MAX_OPEN_FILES = 64  # per task: bounds file handles when a task meets many partition values
_COMPRESSION = "zstd"
_STATS_COLUMNS = 32  # Delta's default delta.dataSkippingNumIndexedCols
_STATS_STRING_PREFIX = 32  # as delta-spark: longer strings get a prefix min and no max

# commitInfo keys deltalake generates or reserves; callers may not set them.
_RESERVED_COMMIT_KEYS = frozenset(
    {
        "timestamp", "operation", "operationParameters", "engineInfo", "clientVersion",
        "readVersion", "isolationLevel", "isBlindAppend", "userId", "userName",
        "userMetadata", "operationMetrics",
    }
)
_WRITE_ID_KEY = "natlinkWriteId"
_MAX_COMMIT_INFO_BYTES = 8192

# Protocol features this module honours. Anything else is refused rather than silently
# returning wrong rows (deletion vectors, column mapping) or breaking an invariant on write.
_READER_FEATURES_OK = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})
_WRITER_FEATURES_OK = frozenset(
    {"appendOnly", "invariants", "changeDataFeed", "timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"}
)
# Writer features implied by legacy (pre-table-features) writer versions.
_LEGACY_WRITER_FEATURES = {
    1: set(),
    2: {"appendOnly", "invariants"},
    3: {"appendOnly", "invariants", "checkConstraints"},
    4: {"appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns"},
    5: {"appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns",
        "columnMapping"},
    6: {"appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns",
        "columnMapping", "identityColumns"},
}


@dataclass(frozen=True)
class WriteResult:
    backend: str
    version: int | None
    files: int
    rows: int
    skipped: bool


# ---------------------------------------------------------------------------------------------
# Backend selection


_detected: dict[str, bool] = {}
_logged: set[tuple[str, str]] = set()


def _app_key(spark) -> str:
    try:
        return str(spark.sparkContext.applicationId)
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return f"session-{id(spark)}"


def _delta_spark_on_classpath(spark) -> bool:
    """True when the JVM can load delta-spark's DeltaTable class (never raises)."""
    key = _app_key(spark)
    if key not in _detected:
        found = False
        try:
            jvm = spark._jvm
            if jvm is not None:
                # Utils.classForName uses Spark's context class loader, which sees --packages/--jars.
                jvm.org.apache.spark.util.Utils.classForName(_DELTA_SPARK_CLASS, False, False)
                found = True
        except Exception:  # noqa: BLE001 - ClassNotFoundException arrives as Py4JJavaError
            found = False
        _detected[key] = found
    return _detected[key]


def backend(spark) -> str:
    """The table backend for this Spark application: ``"delta-spark"`` or ``"delta-rs"``."""
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced not in ("", "auto", DELTA_SPARK, DELTA_RS):
        raise DeltaTableError(
            f"{BACKEND_ENV}={forced!r} is not a backend; expected {DELTA_SPARK!r}, {DELTA_RS!r} or unset"
        )
    if forced == DELTA_RS:
        chosen = DELTA_RS
    elif forced == DELTA_SPARK:
        if not _delta_spark_on_classpath(spark):
            raise DeltaTableError(
                f"{BACKEND_ENV}=delta-spark but the delta-spark classes ({_DELTA_SPARK_CLASS}) are not "
                "on the classpath; add io.delta:delta-spark_2.13 to spark.jars.packages or unset "
                f"{BACKEND_ENV} to use delta-rs"
            )
        chosen = DELTA_SPARK
    else:
        chosen = DELTA_SPARK if _delta_spark_on_classpath(spark) else DELTA_RS
    marker = (_app_key(spark), chosen)
    if marker not in _logged:
        _logged.add(marker)
        log.info(_BACKEND_LOG_LINE[chosen])
    return chosen


# ---------------------------------------------------------------------------------------------
# Paths, log access, protocol checks (driver only, no Spark)


def _uri(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    if "://" in text:
        return text.rstrip("/")
    return os.path.abspath(text)


def _deltalake_error_types() -> tuple[type[BaseException], ...]:
    import deltalake.exceptions as dx

    return tuple(
        t
        for t in (getattr(dx, n, None) for n in ("DeltaError", "TableNotFoundError", "DeltaProtocolError",
                                                 "CommitFailedError", "SchemaMismatchError"))
        if isinstance(t, type)
    ) + (OSError,)


def exists(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a Delta table (a ``_delta_log`` with at least one commit)."""
    from deltalake import DeltaTable

    try:
        return bool(DeltaTable.is_deltatable(_uri(path)))
    except Exception:  # noqa: BLE001 - unreadable or absent location: not a table
        return False


def _load(path: str | os.PathLike, version: int | None = None, *, required: bool = True):
    """The table's snapshot from its log, or None when absent and not ``required``."""
    from deltalake import DeltaTable

    uri = _uri(path)
    if not exists(uri):
        if required:
            raise DeltaTableError(f"no Delta table at {uri} (no _delta_log with a commit)")
        return None
    try:
        return DeltaTable(uri, version=version)
    except _deltalake_error_types() as exc:
        at = "" if version is None else f" at version {version}"
        raise DeltaTableError(f"cannot load the Delta table at {uri}{at}: {exc}") from exc


def _schema_json(table) -> dict:
    return json.loads(table.schema().to_json())


def _field_metadata_keys(type_json: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(type_json, dict):
        for f in type_json.get("fields", []):
            keys.update(f.get("metadata", {}) or {})
            keys |= _field_metadata_keys(f.get("type"))
        for k in ("elementType", "keyType", "valueType"):
            keys |= _field_metadata_keys(type_json.get(k))
    return keys


def _check_protocol(table, uri: str, *, for_write: bool) -> None:
    """Refuse tables whose protocol needs features this module cannot honour."""
    proto = table.protocol()
    config = table.metadata().configuration or {}
    if proto.min_reader_version == 2 or config.get("delta.columnMapping.mode", "none") != "none":
        raise DeltaTableError(f"{uri}: Delta column mapping is not supported by natlink.store.delta")
    if proto.min_reader_version > 3:
        raise DeltaTableError(f"{uri}: Delta reader version {proto.min_reader_version} is not supported")
    unknown_read = sorted(set(proto.reader_features or ()) - _READER_FEATURES_OK)
    if unknown_read:
        raise DeltaTableError(f"{uri}: Delta reader feature(s) not supported: {', '.join(unknown_read)}")
    if not for_write:
        return
    if proto.min_writer_version >= 7:
        writer = set(proto.writer_features or ())
    elif proto.min_writer_version in _LEGACY_WRITER_FEATURES:
        writer = set(_LEGACY_WRITER_FEATURES[proto.min_writer_version])
    else:
        raise DeltaTableError(f"{uri}: Delta writer version {proto.min_writer_version} is not supported")
    # Legacy versions imply features a table may not actually use; refuse only the ones in use.
    meta_keys = _field_metadata_keys(_schema_json(table))
    in_use = {
        "checkConstraints": any(k.startswith("delta.constraints.") for k in config),
        "generatedColumns": "delta.generationExpression" in meta_keys,
        "identityColumns": any(k.startswith("delta.identity.") for k in meta_keys),
        "invariants": "delta.invariants" in meta_keys,
        "columnMapping": False,  # refused above when active
    }
    blocked = sorted(
        f for f in writer
        if (f not in _WRITER_FEATURES_OK and (proto.min_writer_version >= 7 or in_use.get(f, True)))
        or (f == "invariants" and in_use["invariants"])
    )
    if blocked:
        raise DeltaTableError(f"{uri}: cannot write; Delta writer feature(s) not supported: {', '.join(blocked)}")


def txn_version(path: str | os.PathLike, app_id: str) -> int | None:
    """The last version recorded for ``app_id`` by an idempotent write, or None."""
    table = _load(path, required=False)
    if table is None:
        return None
    return table.transaction_version(app_id)


def row_count(path: str | os.PathLike) -> int:
    """Rows in the current version, from the log's per-file stats (no Spark job).

    Files committed without stats fall back to their Parquet footer.
    """
    import pyarrow as pa

    uri = _uri(path)
    table = _load(uri)
    _check_protocol(table, uri, for_write=False)
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0
    if "num_records" in actions.column_names:
        counts = actions.column("num_records").to_pylist()
    else:
        counts = [None] * actions.num_rows
    total = sum(c for c in counts if c is not None)
    missing = [p for p, c in zip(actions.column("path").to_pylist(), counts) if c is None]
    if missing:
        import pyarrow.parquet as pq
        from urllib.parse import unquote

        fs, root = _filesystem(uri)
        for rel in missing:
            with fs.open_input_file(f"{root}/{unquote(rel)}") as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    return int(total)


def _filesystem(uri: str):
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri)


# ---------------------------------------------------------------------------------------------
# Schemas: Spark <-> Delta (Delta's schema JSON is Spark's StructType JSON)

_ATOMIC_DELTA_NAMES = {
    "StringType": "string", "CharType": "string", "VarcharType": "string",
    "ByteType": "byte", "ShortType": "short", "IntegerType": "integer", "LongType": "long",
    "FloatType": "float", "DoubleType": "double", "BooleanType": "boolean",
    "DateType": "date", "TimestampType": "timestamp", "BinaryType": "binary",
}


class _UnsupportedType(Exception):
    pass


def _delta_type(dtype) -> Any:
    """Delta schema JSON for a Spark type, every level nullable (files never promise NOT NULL)."""
    from pyspark.sql import types as T

    if isinstance(dtype, T.StructType):
        return {
            "type": "struct",
            "fields": [
                {"name": f.name, "type": _delta_type(f.dataType), "nullable": True, "metadata": {}}
                for f in dtype.fields
            ],
        }
    if isinstance(dtype, T.ArrayType):
        return {"type": "array", "elementType": _delta_type(dtype.elementType), "containsNull": True}
    if isinstance(dtype, T.MapType):
        return {
            "type": "map",
            "keyType": _delta_type(dtype.keyType),
            "valueType": _delta_type(dtype.valueType),
            "valueContainsNull": True,
        }
    if isinstance(dtype, T.DecimalType):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, T.StringType) and getattr(dtype, "collation", "UTF8_BINARY") != "UTF8_BINARY":
        raise _UnsupportedType(dtype.simpleString())
    name = _ATOMIC_DELTA_NAMES.get(type(dtype).__name__)
    if name is None:
        raise _UnsupportedType(dtype.simpleString())
    return name


def _strip_nullability(type_json: Any) -> Any:
    if isinstance(type_json, dict):
        out = {}
        for k, v in type_json.items():
            if k in ("nullable", "containsNull", "valueContainsNull", "metadata"):
                continue
            if k == "fields":
                out[k] = [_strip_nullability(f) for f in v]
            else:
                out[k] = _strip_nullability(v)
        return out
    return type_json


def _type_text(type_json: Any) -> str:
    if isinstance(type_json, str):
        return type_json
    kind = type_json.get("type")
    if kind == "array":
        return f"array<{_type_text(type_json['elementType'])}>"
    if kind == "map":
        return f"map<{_type_text(type_json['keyType'])},{_type_text(type_json['valueType'])}>"
    if kind == "struct":
        inner = ",".join(f"{f['name']}:{_type_text(f['type'])}" for f in type_json["fields"])
        return f"struct<{inner}>"
    return str(type_json)


def _spark_schema(table):
    """The Spark StructType of a Delta table, all fields nullable (as file sources read them)."""
    from pyspark.sql import types as T

    schema = T.StructType.fromJson(_schema_json(table))
    return T.StructType([T.StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])


# ---------------------------------------------------------------------------------------------
# Write planning (driver, no Spark job)


@dataclass(frozen=True)
class _Plan:
    uri: str
    mode: str
    partition_by: tuple[str, ...]
    replace: tuple[tuple[str, tuple[str, ...]], ...] | None
    txn: tuple[str, int] | None
    commit_info: dict
    columns: tuple[str, ...]  # write order: the table's order on append/replace
    schema_json: dict  # Delta schema of what is written
    table: Any  # deltalake.DeltaTable snapshot, or None when the table does not exist
    replace_table: bool  # overwrite that changes schema or partitioning: CREATE OR REPLACE
    not_null: tuple[str, ...]  # table columns declared NOT NULL (checked by the tasks)


def _check_partition_literal(column: str, values: Sequence[str], uri: str) -> None:
    import re

    bad = sum(
        1 for v in values if not isinstance(v, str) or v == _HIVE_NULL or not re.fullmatch(_SAFE_PARTITION_VALUE, v)
    )
    if bad:
        raise DeltaTableError(
            f"cannot write {uri}: replace_partitions[{column!r}] has {bad} value(s) that are not "
            f"{_SAFE_HINT} (values not shown)"
        )


def _plan_write(df, path, mode, partition_by, replace_partitions, txn, commit_info) -> _Plan:
    uri = _uri(path)
    if mode not in ("append", "overwrite"):
        raise DeltaTableError(f"cannot write {uri}: mode must be 'append' or 'overwrite', not {mode!r}")
    if isinstance(partition_by, str):
        partition_by = (partition_by,)
    partition_by = tuple(partition_by or ())

    # -- the DataFrame's own schema
    columns = tuple(df.columns)
    lowered = [c.lower() for c in columns]
    dupes = sorted({c for c in columns if lowered.count(c.lower()) > 1})
    if dupes:
        raise DeltaTableError(f"cannot write {uri}: duplicate column names (case-insensitive): {dupes}")
    df_types: dict[str, Any] = {}
    unsupported = []
    for f in df.schema.fields:
        try:
            df_types[f.name] = _delta_type(f.dataType)
        except _UnsupportedType as exc:
            unsupported.append(f"{f.name} ({exc})")
    if unsupported:
        raise DeltaTableError(
            f"cannot write {uri}: column type(s) not supported in Delta tables: {', '.join(unsupported)} "
            "(cast NULL literals to a concrete type)"
        )

    # -- txn / commit info
    if txn is not None:
        if (
            not isinstance(txn, (tuple, list)) or len(txn) != 2 or not isinstance(txn[0], str) or not txn[0]
            or not isinstance(txn[1], int) or isinstance(txn[1], bool) or txn[1] < 0
        ):
            raise DeltaTableError(f"cannot write {uri}: txn must be (app_id: non-empty str, version: int >= 0)")
        txn = (txn[0], int(txn[1]))
    commit_info = dict(commit_info or {})
    reserved = sorted(set(commit_info) & (_RESERVED_COMMIT_KEYS | {_WRITE_ID_KEY}))
    if reserved or not all(isinstance(k, str) for k in commit_info):
        raise DeltaTableError(f"cannot write {uri}: commit_info keys must be strings and not reserved: {reserved}")
    try:
        encoded = json.dumps(commit_info, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise DeltaTableError(f"cannot write {uri}: commit_info is not plain JSON: {exc}") from exc
    if len(encoded.encode()) > _MAX_COMMIT_INFO_BYTES:
        raise DeltaTableError(f"cannot write {uri}: commit_info is over {_MAX_COMMIT_INFO_BYTES} bytes")

    # -- the table as it is now
    table = _load(uri, required=False)
    replace_table = False
    not_null: tuple[str, ...] = ()
    if table is not None:
        _check_protocol(table, uri, for_write=True)
        table_parts = tuple(table.metadata().partition_columns)
        table_json = _schema_json(table)
        whole_overwrite = mode == "overwrite" and replace_partitions is None
        if not partition_by and (not whole_overwrite or all(c in df_types for c in table_parts)):
            # Inherit the table's partitioning; a whole overwrite without those columns unpartitions.
            partition_by = table_parts
        if whole_overwrite:
            same = partition_by == table_parts and [
                (f["name"], _strip_nullability(f["type"])) for f in table_json["fields"]
            ] == [(c, _strip_nullability(df_types[c])) for c in columns]
            replace_table = not same
        else:
            if partition_by != table_parts:
                raise DeltaTableError(
                    f"cannot write {uri}: the table is partitioned by {list(table_parts)}, "
                    f"the write asked for {list(partition_by)}"
                )
            _check_same_schema(uri, table_json, df_types)
            columns = tuple(f["name"] for f in table_json["fields"])
        if not replace_table:  # the commit keeps the table's schema, so its NOT NULLs hold
            not_null = tuple(f["name"] for f in table_json["fields"] if not f.get("nullable", True))

    if replace_partitions is not None and not partition_by:
        partition_by = tuple(replace_partitions)
    missing = [c for c in partition_by if c not in df_types]
    if missing:
        raise DeltaTableError(
            f"cannot write {uri}: partition column(s) {missing} not in the DataFrame (columns: {list(columns)})"
        )
    not_string = [c for c in partition_by if df_types[c] != "string"]
    if not_string:
        raise DeltaTableError(f"cannot write {uri}: partition column(s) {not_string} must be of type string")
    if len(partition_by) == len(columns) and columns:
        raise DeltaTableError(f"cannot write {uri}: every column is a partition column; Delta needs a data column")

    replace = None
    if replace_partitions is not None:
        if not isinstance(replace_partitions, Mapping) or not replace_partitions:
            raise DeltaTableError(f"cannot write {uri}: replace_partitions must be a non-empty mapping")
        extra = [c for c in replace_partitions if c not in partition_by]
        if extra:
            raise DeltaTableError(
                f"cannot write {uri}: replace_partitions names non-partition column(s) {extra}; "
                f"partition columns are {list(partition_by)}"
            )
        items = []
        for col, values in replace_partitions.items():
            values = (values,) if isinstance(values, str) else tuple(values)
            if not values:
                raise DeltaTableError(f"cannot write {uri}: replace_partitions[{col!r}] is empty")
            _check_partition_literal(col, values, uri)
            items.append((col, tuple(dict.fromkeys(values))))
        replace = tuple(items)

    # Used only when this write creates or replaces the table; otherwise the table's schema stays.
    schema_json = {
        "type": "struct",
        "fields": [{"name": c, "type": df_types[c], "nullable": True, "metadata": {}} for c in columns],
    }
    return _Plan(
        uri=uri, mode=mode, partition_by=partition_by, replace=replace, txn=txn, commit_info=commit_info,
        columns=columns, schema_json=schema_json, table=table, replace_table=replace_table, not_null=not_null,
    )


def _check_same_schema(uri: str, table_json: dict, df_types: Mapping[str, Any]) -> None:
    table_types = {f["name"]: _strip_nullability(f["type"]) for f in table_json["fields"]}
    missing = [c for c in table_types if c not in df_types]
    extra = [c for c in df_types if c not in table_types]
    differ = [
        f"{c} (table {_type_text(table_types[c])}, DataFrame {_type_text(df_types[c])})"
        for c in table_types
        if c in df_types and _strip_nullability(df_types[c]) != table_types[c]
    ]
    if missing or extra or differ:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"extra column(s) {extra}")
        if differ:
            parts.append(f"different type(s): {', '.join(differ)}")
        raise DeltaTableError(f"cannot append to {uri}: schema mismatch: {'; '.join(parts)}")


def _skipped(plan: _Plan, chosen: str) -> WriteResult | None:
    if plan.txn is None or plan.table is None:
        return None
    done = plan.table.transaction_version(plan.txn[0])
    if done is not None and done >= plan.txn[1]:
        log.info("delta write %s skipped: txn %s already at version %s", plan.uri, plan.txn[0], done)
        return WriteResult(backend=chosen, version=plan.table.version(), files=0, rows=0, skipped=True)
    return None


# ---------------------------------------------------------------------------------------------
# Public write / read


def write(
    df,
    path: str | os.PathLike,
    *,
    mode: str = "append",
    partition_by: Sequence[str] = (),
    replace_partitions: Mapping[str, Sequence[str]] | None = None,
    txn: tuple[str, int] | None = None,
    commit_info: Mapping[str, Any] | None = None,
) -> WriteResult:
    """Write ``df`` to the Delta table at ``path`` in exactly one commit.

    mode: "append", or "overwrite" (whole table; schema and partitioning may change).
    replace_partitions: {"region": ["LONDON", ...]} atomically replaces exactly those partitions
        (AND across columns) with df's rows; df may hold no other partitions. Creates the table
        when absent. Overrides ``mode``.
    txn: (app_id, version). Skipped when the table already records app_id at >= version;
        otherwise recorded in the same commit (a rerun with the same run id changes nothing).
    commit_info: small JSON dict stored in the commit (delta-spark: as userMetadata).
    partition_by: defaults to the existing table's partition columns.
    """
    plan = _plan_write(df, path, mode, partition_by, replace_partitions, txn, commit_info)
    chosen = backend(df.sparkSession)
    skipped = _skipped(plan, chosen)
    if skipped is not None:
        return skipped
    if chosen == DELTA_SPARK:
        return _write_delta_spark(df, plan)
    return _write_delta_rs(df, plan)


def read(spark, path: str | os.PathLike, *, version: int | None = None):
    """The table at ``path`` (optionally as of ``version``) as a DataFrame in table column order."""
    uri = _uri(path)
    if backend(spark) == DELTA_SPARK:
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        return reader.load(uri)
    from pyspark.sql import functions as F

    table = _load(uri, version)
    _check_protocol(table, uri, for_write=False)
    schema = _spark_schema(table)
    files = table.file_uris()
    if not files:
        # JVM-only empty frame: createDataFrame([]) would start a Python job just to count nothing.
        return spark.range(0).select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields])
    # Only the files the log names: orphans of writes that never committed are never seen.
    # basePath + the table schema turn region=X directories back into string columns.
    frame = spark.read.schema(schema).option("basePath", uri).parquet(*files)
    return frame.select(*[F.col(f"`{f.name}`") for f in schema.fields])


# ---------------------------------------------------------------------------------------------
# delta-spark backend (clusters). Not executable without the Delta jars; kept small.


def _partition_problems_spark(df, plan: _Plan) -> dict[tuple[str, str], int]:
    """Counts of rows with NULL / unsafe / out-of-scope partition values, in one Spark job."""
    from pyspark.sql import functions as F

    checks = {}
    for col in plan.partition_by:
        c = F.col(f"`{col}`")
        checks[(col, "null")] = c.isNull()
        checks[(col, "unsafe")] = c.isNotNull() & ((~c.rlike(_SAFE_PARTITION_VALUE_JAVA)) | (c == F.lit(_HIVE_NULL)))
    for col, values in plan.replace or ():
        c = F.col(f"`{col}`")
        checks[(col, "outside")] = c.isNotNull() & ~c.isin(list(values))
    for col in plan.not_null:
        checks[(col, "not_null")] = F.col(f"`{col}`").isNull()
    if not checks:
        return {}
    aggs = [F.sum(F.when(cond, 1).otherwise(0)).alias(f"c{i}") for i, cond in enumerate(checks.values())]
    row = df.agg(*aggs).first()
    return {key: int(row[f"c{i}"] or 0) for i, key in enumerate(checks)}


def _write_delta_spark(df, plan: _Plan) -> WriteResult:
    from delta.tables import DeltaTable as SparkDeltaTable
    from pyspark.sql import functions as F

    spark = df.sparkSession
    _raise_rejects(plan, _partition_problems_spark(df, plan))
    before = plan.table.version() if plan.table is not None else None
    writer = df.select(*[F.col(f"`{c}`") for c in plan.columns]).write.format("delta")
    if plan.replace is not None:
        where = " AND ".join(
            f"`{col}` IN ({', '.join(repr(v) for v in values)})" for col, values in plan.replace
        )  # values passed _SAFE_PARTITION_VALUE: no quotes or escapes possible
        writer = writer.mode("overwrite").option("replaceWhere", where)
    elif plan.mode == "overwrite":
        writer = writer.mode("overwrite").option("overwriteSchema", "true")
    else:
        writer = writer.mode("append")
    if plan.partition_by:
        writer = writer.partitionBy(*plan.partition_by)
    if plan.txn is not None:
        writer = writer.option("txnAppId", plan.txn[0]).option("txnVersion", str(plan.txn[1]))
    if plan.commit_info:
        writer = writer.option("userMetadata", json.dumps(plan.commit_info, sort_keys=True))
    writer.save(plan.uri)
    last = SparkDeltaTable.forPath(spark, plan.uri).history(1).select("version", "operationMetrics").first()
    version = int(last["version"])
    if before is not None and version == before:  # delta-spark itself skipped a repeated txn
        return WriteResult(DELTA_SPARK, version, 0, 0, True)
    metrics = last["operationMetrics"] or {}
    result = WriteResult(
        DELTA_SPARK, version, int(metrics.get("numFiles", 0) or 0), int(metrics.get("numOutputRows", 0) or 0), False
    )
    log.info("delta write %s: version=%s files=%d rows=%d", plan.uri, version, result.files, result.rows)
    return result


# ---------------------------------------------------------------------------------------------
# delta-rs backend: tasks write files, the driver commits once


@dataclass(frozen=True)
class _TaskConfig:
    uri: str
    columns: tuple[str, ...]
    partition_by: tuple[str, ...]
    replace: tuple[tuple[str, tuple[str, ...]], ...] | None
    not_null: tuple[str, ...]
    row_group_rows: int
    max_rows_per_file: int
    task_buffer_rows: int
    max_open_files: int
    compression: str
    stats_columns: int


def _meta_schema():
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("kind", T.StringType()),  # "file" | "reject"
            T.StructField("path", T.StringType()),
            T.StructField("size", T.LongType()),
            T.StructField("mtime", T.LongType()),
            T.StructField("rows", T.LongType()),
            T.StructField("partition", T.StringType()),  # JSON {column: value}
            T.StructField("stats", T.StringType()),  # Delta stats JSON
            T.StructField("column", T.StringType()),
            T.StructField("reason", T.StringType()),  # null | unsafe | outside | not_null
            T.StructField("count", T.LongType()),
        ]
    )


_META_FIELDS = ("kind", "path", "size", "mtime", "rows", "partition", "stats", "column", "reason", "count")


def _write_delta_rs(df, plan: _Plan) -> WriteResult:
    from pyspark.sql import functions as F

    spark = df.sparkSession
    write_id = uuid.uuid4().hex
    cfg = _TaskConfig(
        uri=plan.uri, columns=plan.columns, partition_by=plan.partition_by, replace=plan.replace,
        not_null=plan.not_null, row_group_rows=_ROW_GROUP_ROWS, max_rows_per_file=_MAX_ROWS_PER_FILE,
        task_buffer_rows=_TASK_BUFFER_ROWS, max_open_files=_MAX_OPEN_FILES,
        compression=_COMPRESSION, stats_columns=_STATS_COLUMNS,
    )
    frame = df.select(*[F.col(f"`{c}`") for c in plan.columns])
    if plan.partition_by:
        # One shuffle so each partition value lands in few tasks, hence few files per directory.
        frame = frame.repartition(*[F.col(f"`{c}`") for c in plan.partition_by])
    sc = spark.sparkContext
    sc.setJobDescription(f"natlink.store.delta write {plan.uri}")
    try:
        meta = frame.mapInArrow(functools.partial(_write_task, cfg), _meta_schema()).collect()
    finally:
        sc.setJobDescription(None)

    files = [m for m in meta if m["kind"] == "file"]
    rejects: dict[tuple[str, str], int] = {}
    for m in meta:
        if m["kind"] == "reject":
            key = (m["column"], m["reason"])
            rejects[key] = rejects.get(key, 0) + int(m["count"])
    if any(rejects.values()):
        _delete_files(plan.uri, [m["path"] for m in files])
        _raise_rejects(plan, rejects)
    return _commit(plan, files, write_id)


def _raise_rejects(plan: _Plan, rejects: Mapping[tuple[str, str], int]) -> None:
    words = {
        "null": "NULL value(s)",
        "unsafe": f"value(s) with characters unsafe in a path (allowed: {_SAFE_HINT})",
        "outside": "row(s) outside replace_partitions",
        "not_null": "NULL value(s) in a NOT NULL column",
    }
    problems = [f"column {col!r}: {n} {words[reason]}" for (col, reason), n in sorted(rejects.items()) if n]
    if problems:
        raise DeltaTableError(
            f"cannot write {plan.uri}: {'; '.join(problems)}; nothing was committed (values not shown)"
        )


def _delete_files(uri: str, rel_paths: Iterable[str]) -> None:
    fs, root = _filesystem(uri)
    for rel in rel_paths:
        try:
            fs.delete_file(f"{root}/{rel}")
        except OSError:  # an orphan left behind is harmless: readers follow the log
            log.warning("could not delete uncommitted file under %s", uri)


def _commit(plan: _Plan, files: Sequence[Any], write_id: str) -> WriteResult:
    from deltalake import DeltaTable, Schema
    from deltalake.transaction import (
        AddAction,
        CommitProperties,
        Transaction,
        create_table_with_add_actions,
    )

    adds = [
        AddAction(
            path=m["path"], size=int(m["size"]), partition_values=json.loads(m["partition"]),
            modification_time=int(m["mtime"]), data_change=True, stats=m["stats"],
        )
        for m in files
    ]
    props = CommitProperties(
        custom_metadata={**plan.commit_info, _WRITE_ID_KEY: write_id},
        app_transactions=[Transaction(plan.txn[0], plan.txn[1])] if plan.txn else None,
    )
    rows = sum(int(m["rows"]) for m in files)
    table = plan.table
    try:
        if table is None or plan.replace_table:
            meta = table.metadata() if table is not None else None
            create_table_with_add_actions(
                plan.uri, Schema.from_json(json.dumps(plan.schema_json)), adds,
                mode="error" if table is None else "overwrite",
                partition_by=list(plan.partition_by) or None,
                name=meta.name if meta else None, description=meta.description if meta else None,
                configuration=meta.configuration if meta else None,
                commit_properties=props,
            )
        else:
            # Always the table's own schema object: deltalake writes a metaData action (and can
            # corrupt the table) when handed a different schema here.
            kwargs: dict[str, Any] = {}
            if plan.replace is not None:
                commit_mode = "overwrite"
                kwargs["partition_filters"] = [(col, "in", list(values)) for col, values in plan.replace]
            else:
                commit_mode = plan.mode
            table.create_write_transaction(
                adds, commit_mode, table.schema(), partition_by=list(plan.partition_by) or None,
                commit_properties=props, **kwargs,
            )
    except Exception as exc:  # noqa: BLE001 - deltalake raises several types, some from Rust panics
        # A post-commit step (checkpoint, log cleanup) can fail after the commit itself landed.
        version = _committed_version(plan.uri, write_id, fallback=False)
        if version is None:
            # The files stay as orphans: invisible to readers (they follow the log), removed by VACUUM.
            raise DeltaTableError(
                f"commit to {plan.uri} failed, the table is unchanged ({len(adds)} uncommitted file(s) "
                f"left for VACUUM): {type(exc).__name__}: {exc}"
            ) from exc
        log.warning("delta write %s: commit landed at version %s but then failed: %s", plan.uri, version, exc)
    else:
        version = _committed_version(plan.uri, write_id)
    log.info("delta write %s: version=%s files=%d rows=%d", plan.uri, version, len(adds), rows)
    return WriteResult(backend=DELTA_RS, version=version, files=len(adds), rows=rows, skipped=False)


def _committed_version(uri: str, write_id: str, *, fallback: bool = True) -> int | None:
    """The version of the commit carrying ``write_id`` (others may have committed since)."""
    from deltalake import DeltaTable

    try:
        table = DeltaTable(uri)
        history = table.history(limit=50)
    except Exception:  # noqa: BLE001 - no readable log: nothing of ours landed
        return None
    for entry in history:
        if entry.get(_WRITE_ID_KEY) == write_id:
            return int(entry["version"])
    return table.version() if fallback else None


# --- executor side ---------------------------------------------------------------------------


@dataclass
class _ColumnStats:
    kind: str  # int | float | string | date | timestamp | count
    nulls: int = 0
    lo: Any = None
    hi: Any = None
    lo_open: bool = False  # True: no valid bound can be stated for this file
    hi_open: bool = False

    def update(self, column) -> None:
        import pyarrow.compute as pc

        self.nulls += column.null_count
        if self.kind == "count" or column.null_count == len(column):
            return
        if self.kind == "float" and pc.any(pc.is_nan(column)).as_py():
            self.lo_open = self.hi_open = True
            return
        mm = pc.min_max(column)
        lo, hi = mm["min"], mm["max"]
        if self.kind == "timestamp":
            scale = {"s": 1_000_000, "ms": 1_000, "us": 1}.get(column.type.unit)
            if scale is None:  # nanoseconds: no exact microsecond bound without more work
                self.lo_open = self.hi_open = True
                return
            lo, hi = lo.value * scale, hi.value * scale  # epoch-based, whatever the zone
        else:
            lo, hi = lo.as_py(), hi.as_py()
        if self.kind == "float":
            if not math.isfinite(lo):
                self.lo_open = True
            if not math.isfinite(hi):
                self.hi_open = True
        if self.kind == "string":
            lo = lo[:_STATS_STRING_PREFIX]  # a prefix is still a lower bound
            if len(hi) > _STATS_STRING_PREFIX:  # a truncated max is not an upper bound
                self.hi_open = True
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def bounds(self) -> tuple[Any, Any]:
        if self.kind == "count" or self.lo is None:
            return None, None
        lo = None if self.lo_open else self.lo
        hi = None if self.hi_open else self.hi
        if self.kind == "timestamp":
            # Delta stats are milliseconds: floor the min and ceil the max so both stay bounds.
            lo = None if lo is None else _ts_text(lo - lo % 1000)
            hi = None if hi is None else _ts_text(-((-hi) // 1000) * 1000)
        elif self.kind == "date":
            lo = None if lo is None else lo.isoformat()
            hi = None if hi is None else hi.isoformat()
        return lo, hi


def _ts_text(micros: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _stats_kind(arrow_type) -> str | None:
    import pyarrow as pa

    t = pa.types
    if t.is_integer(arrow_type):
        return "int"
    if t.is_floating(arrow_type):
        return "float"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "string"
    if t.is_date32(arrow_type):
        return "date"
    if t.is_timestamp(arrow_type):
        return "timestamp"
    if t.is_boolean(arrow_type) or t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or t.is_decimal(arrow_type):
        return "count"
    return None  # nested types: no stats


class _OpenFile:
    """One Parquet file being written by a task, with its buffered rows and running stats."""

    def __init__(self, cfg: _TaskConfig, fs, root: str, partition: tuple[str, ...], schema, task: int):
        import pyarrow.parquet as pq

        self.partition = partition
        directory = "/".join(f"{c}={v}" for c, v in zip(cfg.partition_by, partition))
        name = f"part-{task:05d}-{uuid.uuid4()}.c000.{cfg.compression}.parquet"
        self.rel = f"{directory}/{name}" if directory else name
        fs.create_dir(f"{root}/{directory}" if directory else root, recursive=True)  # new tables too
        self.full = f"{root}/{self.rel}"
        self.schema = schema
        self.writer = pq.ParquetWriter(self.full, schema, filesystem=fs, compression=cfg.compression)
        self.buffer: list = []
        self.buffered = 0
        self.rows = 0
        self.stats = {}
        for f in schema:
            kind = _stats_kind(f.type)
            if kind is not None and len(self.stats) < cfg.stats_columns:
                self.stats[f.name] = _ColumnStats(kind)
        self.row_group_rows = cfg.row_group_rows

    def add(self, batch) -> None:
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        self.rows += batch.num_rows
        if self.buffered >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.buffered:
            return
        table = pa.Table.from_batches(self.buffer, schema=self.schema)
        for name, st in self.stats.items():
            st.update(table.column(name))
        self.writer.write_table(table, row_group_size=self.row_group_rows)
        self.buffer, self.buffered = [], 0

    def close(self, fs, cfg: _TaskConfig) -> dict:
        self.flush()
        self.writer.close()
        size = fs.get_file_info(self.full).size
        mins, maxs = {}, {}
        for name, st in self.stats.items():
            lo, hi = st.bounds()
            if lo is not None:
                mins[name] = lo
            if hi is not None:
                maxs[name] = hi
        stats = {
            "numRecords": self.rows,
            "minValues": mins,
            "maxValues": maxs,
            "nullCount": {name: st.nulls for name, st in self.stats.items()},
        }
        return {
            "kind": "file", "path": self.rel, "size": int(size), "mtime": int(time.time() * 1000),
            "rows": self.rows, "partition": json.dumps(dict(zip(cfg.partition_by, self.partition))),
            "stats": json.dumps(stats, allow_nan=False),
        }


def _partition_groups(batch, cfg: _TaskConfig, rejects: dict) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Split a batch by partition values; rows failing the checks are counted in ``rejects``."""
    import re

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    good = np.ones(n, dtype=bool)
    codes = []  # per partition column: (dictionary values, indices with -1 for bad rows)
    allowed = dict(cfg.replace or ())
    pattern = re.compile(_SAFE_PARTITION_VALUE)
    for col in cfg.partition_by:
        enc = pc.dictionary_encode(batch.column(col))
        values = enc.dictionary.to_pylist()
        idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        is_null = idx < 0
        # Checks run on the distinct values, then map to rows through the dictionary indices.
        unsafe_v = np.array([v == _HIVE_NULL or not pattern.fullmatch(v) for v in values] + [False])
        unsafe = unsafe_v[idx] & ~is_null
        _count(rejects, col, "null", int(is_null.sum()))
        _count(rejects, col, "unsafe", int(unsafe.sum()))
        good &= ~is_null & ~unsafe
        if col in allowed:
            inside_v = np.array([v in allowed[col] for v in values] + [True])
            outside = ~inside_v[idx] & ~is_null & ~unsafe
            _count(rejects, col, "outside", int(outside.sum()))
            good &= ~outside
        codes.append((values, idx))
    for col in cfg.not_null:
        nulls = batch.column(col).is_null().to_numpy(zero_copy_only=False)
        _count(rejects, col, "not_null", int(nulls.sum()))
        good &= ~nulls
    if not good.any():
        return
    data_cols = [c for c in cfg.columns if c not in cfg.partition_by]
    data = batch.select(data_cols)
    if not cfg.partition_by:
        yield (), (data if good.all() else data.filter(pa.array(good)))
        return
    # One combined code per row, then a stable sort so each partition is one contiguous slice.
    combined = np.zeros(n, dtype=np.int64)
    for values, idx in codes:
        combined = combined * (len(values) + 1) + np.where(idx < 0, 0, idx)
    keep = np.flatnonzero(good)
    combined = combined[keep]
    order = keep[np.argsort(combined, kind="stable")]
    sorted_codes = np.sort(combined, kind="stable")
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(sorted_codes)]
    taken = data.take(pa.array(order))
    for s, e in zip(starts, ends):
        row = order[s]
        key = tuple(values[idx[row]] for values, idx in codes)
        yield key, taken.slice(int(s), int(e - s))


def _count(rejects: dict, column: str, reason: str, n: int) -> None:
    if n:
        rejects[(column, reason)] = rejects.get((column, reason), 0) + n


def _write_task(cfg: _TaskConfig, batches: Iterator) -> Iterator:
    """mapInArrow body: write this task's rows as Parquet files, yield one metadata row per file."""
    import pyarrow as pa
    from pyspark import TaskContext

    ctx = TaskContext.get()
    task = ctx.partitionId() if ctx is not None else 0
    fs, root = _filesystem(cfg.uri)
    open_files: dict[tuple[str, ...], _OpenFile] = {}
    done: list[dict] = []
    rejects: dict[tuple[str, str], int] = {}
    for batch in batches:
        if batch.num_rows == 0:
            continue
        for key, part in _partition_groups(batch, cfg, rejects):
            while part.num_rows:
                handle = open_files.get(key)
                if handle is None:
                    if len(open_files) >= cfg.max_open_files:  # finish the oldest: more files, bounded handles
                        done.append(open_files.pop(next(iter(open_files))).close(fs, cfg))
                    handle = open_files[key] = _OpenFile(cfg, fs, root, key, part.schema, task)
                room = cfg.max_rows_per_file - handle.rows
                handle.add(part.slice(0, room))
                part = part.slice(room)
                if handle.rows >= cfg.max_rows_per_file:
                    done.append(open_files.pop(key).close(fs, cfg))
            if sum(h.buffered for h in open_files.values()) > cfg.task_buffer_rows:
                max(open_files.values(), key=lambda h: h.buffered).flush()  # bound task memory
    done.extend(h.close(fs, cfg) for h in open_files.values())
    for (column, reason), n in rejects.items():
        done.append({"kind": "reject", "column": column, "reason": reason, "count": n})
    if done:
        yield pa.RecordBatch.from_pylist(
            [{k: d.get(k) for k in _META_FIELDS} for d in done], schema=_meta_arrow_schema()
        )


def _meta_arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("kind", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("mtime", pa.int64()),
            ("rows", pa.int64()), ("partition", pa.string()), ("stats", pa.string()),
            ("column", pa.string()), ("reason", pa.string()), ("count", pa.int64()),
        ]
    )
