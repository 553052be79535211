"""The only module in natlink that reads or writes tables: Delta Lake through delta-spark.

Every read and write goes through Spark with delta-spark's jars on the classpath (locally
``make setup`` fetches them from Maven into ``jars/delta`` and :mod:`natlink.spark.session` puts
them on ``spark.jars``; on a cluster the submit command brings them, see docs/cluster.md):

* ``write``: one commit: append, overwrite, or atomic replacement of named partitions
  (``replaceWhere``); ``merge``: upsert by keys (``MERGE``); both idempotent with a ``txn``
  (``txnAppId``/``txnVersion``: a rerun with the same transaction changes nothing).
* ``read`` (at a version: time travel), ``history``, ``exists``, ``row_count``, ``txn_version``;
  maintenance (docs/delta.md): ``optimize``, ``vacuum``, ``set_retention``.

Writers that race on one table are resolved by Delta's optimistic concurrency: the loser raises
:class:`~natlink.errors.DeltaConflictError` and the table keeps the winner's commit, nothing else.

Partition values must be non-null strings made of ``[A-Za-z0-9_.-]`` (at most 128 characters):
they become directory names. Rows are checked inside the write job itself (no extra pass over
the data); when one fails, nothing is committed and a second job counts the failures, so errors
report column names and counts only, never values (values may be identifiers).
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from natlink.errors import DeltaConflictError, DeltaTableError

__all__ = [
    "WriteResult", "BACKEND", "backend", "describe", "write", "merge", "read", "history", "exists", "row_count",
    "txn_version", "optimize", "vacuum", "set_retention",
]

log = logging.getLogger(__name__)

BACKEND = "delta-spark"
# Directory names must survive every filesystem and URI encoding unchanged; '=' '/' '%' would
# change the Hive path, '' means NULL to Delta, and Spark reads this marker back as NULL.
SAFE_PARTITION_VALUE = r"[A-Za-z0-9_.\-]{1,128}"  # whole value: Python fullmatch, Java ^...\z
_SAFE_JAVA = "^" + SAFE_PARTITION_VALUE + r"\z"  # '$' would let a trailing newline in
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SAFE_HINT = "non-null strings of letters, digits, '_', '-' or '.' (1-128 characters)"
_CHECK_MARK = "natlink-partition-check"  # the raise_error text that marks our own row checks
_OWN_RAISE = re.compile(r"\[USER_RAISED_EXCEPTION\] (natlink[^\n]*?) SQLSTATE")
_WRITE_ID_KEY = "natlink_write_id"  # in userMetadata: finds this write's commit among racing ones
_MAX_COMMIT_INFO_BYTES = 8192
_TXN_CONFS = ("spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion")
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@dataclass(frozen=True)
class WriteResult:
    backend: str
    version: int | None
    files: int
    rows: int
    skipped: bool


# ---------------------------------------------------------------------------------------------
# Session, backend check, paths

LOGGED_CONF = "natlink.delta.backendLogged"  # set on the session once the backend line is logged


def describe(spark) -> str:
    """``"delta-spark <version> on Spark <version>"``; a clear error when delta-spark's classes do not load."""
    try:
        version = str(getattr(spark._jvm.io.delta, "package").VERSION())
    except Exception as exc:  # noqa: BLE001 - a missing class arrives as a Py4J error
        raise DeltaTableError(
            "delta-spark is not on this Spark application's classpath: run `make setup` (it fetches the "
            "Delta jars into jars/delta with mvn) or submit with the Delta jars (docs/cluster.md)"
        ) from exc
    return f"delta-spark {version} on Spark {spark.version}"


def backend(spark) -> str:
    """``"delta-spark"`` once its classes load in this Spark application (logged once per application)."""
    line = describe(spark)
    # The "said once" state lives in the Spark application's own conf, not in a module global.
    if spark.conf.get(LOGGED_CONF, "false") != "true":
        spark.conf.set(LOGGED_CONF, "true")
        log.info("natlink.store.delta backend: %s", line)
    return BACKEND


def _session(spark=None):
    from pyspark.sql import SparkSession

    from natlink.spark.session import get_spark

    return spark or SparkSession.getActiveSession() or get_spark()


def _uri(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    return text.rstrip("/") if "://" in text else os.path.abspath(text)


def _sql_path(uri: str) -> str:
    return "delta.`" + uri.replace("`", "``") + "`"


def _condition(exc: BaseException) -> str:
    """Spark's error conditions along the cause chain (class names, never row values), for messages."""
    found: list[str] = []
    throwable, depth = getattr(exc, "java_exception", None) or exc, 0
    while throwable is not None and depth < 12:
        for getter in ("getCondition", "getErrorClass"):
            try:
                name = getattr(throwable, getter)()
            except Exception:  # noqa: BLE001 - not a SparkThrowable (or not a Java object)
                continue
            if name and str(name) not in found:
                found.append(str(name))
            break
        try:
            throwable, depth = throwable.getCause(), depth + 1
        except Exception:  # noqa: BLE001 - a Python exception: no Java causes
            break
    return " <- ".join(found) or type(exc).__name__


def _conflict_types() -> tuple[type[BaseException], ...]:
    from delta import exceptions as dx  # importing it installs the JVM -> Python conversion

    return tuple(getattr(dx, name) for name in dx.__all__)  # the commit-conflict exceptions


# ---------------------------------------------------------------------------------------------
# Reading


def exists(path: str | os.PathLike, spark=None) -> bool:
    """True when ``path`` holds a Delta table (a ``_delta_log`` with at least one commit)."""
    from delta.tables import DeltaTable

    spark = _session(spark)
    backend(spark)
    try:
        return bool(DeltaTable.isDeltaTable(spark, _uri(path)))
    except Exception:  # noqa: BLE001 - unreadable or absent location: not a table
        return False


def _require(spark, uri: str) -> None:
    if not exists(uri, spark):
        raise DeltaTableError(f"no Delta table at {uri} (no _delta_log with a commit)")


def read(spark, path: str | os.PathLike, *, version: int | None = None):
    """The table at ``path`` (optionally as of ``version``) as a DataFrame in table column order."""
    uri = _uri(path)
    _require(spark, uri)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    try:
        return reader.load(uri)  # resolves the snapshot now, so a bad version fails here
    except Exception as exc:  # noqa: BLE001
        at = "" if version is None else f" at version {version}"
        raise DeltaTableError(f"cannot read the Delta table at {uri}{at}: {_condition(exc)}") from exc


def row_count(path: str | os.PathLike, spark=None) -> int:
    """Rows in the current version (delta-spark answers a plain count from the log's file stats)."""
    spark = _session(spark)
    return int(read(spark, path).count())


def txn_version(path: str | os.PathLike, app_id: str, spark=None) -> int | None:
    """The last version recorded for ``app_id`` by an idempotent write, or None (no table: None)."""
    spark = _session(spark)
    uri = _uri(path)
    if not exists(uri, spark):
        return None
    jvm = spark._jvm
    none = jvm.scala.Option.empty()
    snapshot = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, uri).update(False, none, none)
    found = snapshot.transactions().get(app_id)
    return int(found.get()) if found.isDefined() else None


def history(path: str | os.PathLike, *, limit: int | None = None, spark=None) -> list[dict]:
    """Commits, newest first: version, timestamp, operation, commit_info (what ``write`` was given), metrics."""
    from delta.tables import DeltaTable

    spark = _session(spark)
    uri = _uri(path)
    _require(spark, uri)
    table = DeltaTable.forPath(spark, uri)
    rows = (table.history(limit) if limit else table.history()).collect()
    return [
        {"version": int(r["version"]), "timestamp": r["timestamp"], "operation": r["operation"],
         "commit_info": {k: v for k, v in _user_metadata(r["userMetadata"]).items() if k != _WRITE_ID_KEY},
         "metrics": dict(r["operationMetrics"] or {})}
        for r in rows
    ]


def _user_metadata(text: str | None) -> dict:
    try:
        found = json.loads(text or "{}")
    except ValueError:
        found = {}
    return found if isinstance(found, dict) else {}


# ---------------------------------------------------------------------------------------------
# Write planning (driver only, no Spark job)


@dataclass(frozen=True)
class _Plan:
    uri: str
    mode: str
    partition_by: tuple[str, ...]
    replace: tuple[tuple[str, tuple[str, ...]], ...] | None
    txn: tuple[str, int] | None
    user_metadata: str
    write_id: str
    columns: tuple[str, ...]  # write order: the table's order on append/replace
    exists: bool


def _check_txn(uri: str, txn) -> tuple[str, int] | None:
    if txn is None:
        return None
    if not (isinstance(txn, (tuple, list)) and len(txn) == 2 and isinstance(txn[0], str) and txn[0]
            and isinstance(txn[1], int) and not isinstance(txn[1], bool) and txn[1] >= 0):
        raise DeltaTableError(f"cannot write {uri}: txn must be (app_id: non-empty str, version: int >= 0)")
    return txn[0], int(txn[1])


def _user_metadata_text(uri: str, commit_info, write_id: str) -> str:
    info = dict(commit_info or {})
    if not all(isinstance(k, str) for k in info) or _WRITE_ID_KEY in info:
        raise DeltaTableError(f"cannot write {uri}: commit_info keys must be strings other than {_WRITE_ID_KEY!r}")
    try:
        text = json.dumps({**info, _WRITE_ID_KEY: write_id}, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise DeltaTableError(f"cannot write {uri}: commit_info is not plain JSON: {exc}") from exc
    if len(text.encode()) > _MAX_COMMIT_INFO_BYTES:
        raise DeltaTableError(f"cannot write {uri}: commit_info is over {_MAX_COMMIT_INFO_BYTES} bytes")
    return text


_VOID = re.compile(r"(^|[<:,])void($|[>,])")  # NullType anywhere in a type's simpleString


def _types(schema) -> dict[str, str]:
    """Column -> type text, nullability ignored (Delta files never promise NOT NULL to readers)."""
    return {f.name: f.dataType.simpleString() for f in schema.fields}


def _check_same_schema(uri: str, table_schema, df_schema) -> None:
    table, frame = _types(table_schema), _types(df_schema)
    missing = [c for c in table if c not in frame]
    extra = [c for c in frame if c not in table]
    differ = [f"{c} (table {table[c]}, DataFrame {frame[c]})" for c in table if c in frame and frame[c] != table[c]]
    parts = [f"{label} {items}" for label, items in (("missing column(s)", missing), ("extra column(s)", extra)) if items]
    if differ:
        parts.append(f"different type(s): {', '.join(differ)}")
    if parts:
        raise DeltaTableError(f"cannot append to {uri}: schema mismatch: {'; '.join(parts)}")


def _replace_spec(uri: str, replace_partitions) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    if replace_partitions is None:
        return None
    if not isinstance(replace_partitions, Mapping) or not replace_partitions:
        raise DeltaTableError(f"cannot write {uri}: replace_partitions must be a non-empty mapping")
    items = []
    for col, values in replace_partitions.items():
        values = (values,) if isinstance(values, str) else tuple(values)
        if not values:
            raise DeltaTableError(f"cannot write {uri}: replace_partitions[{col!r}] is empty")
        bad = sum(1 for v in values if not isinstance(v, str) or v == _HIVE_NULL or not re.fullmatch(SAFE_PARTITION_VALUE, v))
        if bad:
            raise DeltaTableError(
                f"cannot write {uri}: replace_partitions[{col!r}] has {bad} value(s) that are not {_SAFE_HINT} (values not shown)"
            )
        items.append((col, tuple(dict.fromkeys(values))))
    return tuple(items)


def _table_layout(spark, uri: str):
    """(schema, partition columns) of the table at ``uri``, or None when there is none."""
    from delta.tables import DeltaTable

    if not exists(uri, spark):
        return None
    detail = DeltaTable.forPath(spark, uri).detail().select("partitionColumns").first()
    return spark.read.format("delta").load(uri).schema, tuple(detail["partitionColumns"] or ())


def _plan(df, path, mode, partition_by, replace_partitions, txn, commit_info) -> _Plan:
    uri = _uri(path)
    if mode not in ("append", "overwrite"):
        raise DeltaTableError(f"cannot write {uri}: mode must be 'append' or 'overwrite', not {mode!r}")
    partition_by = (partition_by,) if isinstance(partition_by, str) else tuple(partition_by or ())
    columns = tuple(df.columns)
    lowered = [c.lower() for c in columns]
    dupes = sorted({c for c in columns if lowered.count(c.lower()) > 1})
    if dupes:
        raise DeltaTableError(f"cannot write {uri}: duplicate column names (case-insensitive): {dupes}")
    void = [f.name for f in df.schema.fields if _VOID.search(f.dataType.simpleString())]
    if void:
        raise DeltaTableError(f"cannot write {uri}: column(s) {void} have no type (cast NULL literals to a concrete type)")
    txn = _check_txn(uri, txn)
    write_id = uuid.uuid4().hex
    user_metadata = _user_metadata_text(uri, commit_info, write_id)
    replace = _replace_spec(uri, replace_partitions)

    layout = _table_layout(df.sparkSession, uri)
    if layout is not None:
        table_schema, table_parts = layout
        keeps_layout = mode == "append" or replace is not None
        if not partition_by and (keeps_layout or all(c in columns for c in table_parts)):
            partition_by = table_parts
        if keeps_layout:
            if partition_by != table_parts:
                raise DeltaTableError(
                    f"cannot write {uri}: the table is partitioned by {list(table_parts)}, the write asked for {list(partition_by)}"
                )
            _check_same_schema(uri, table_schema, df.schema)
            columns = tuple(table_schema.names)
    if replace is not None and not partition_by:
        partition_by = tuple(c for c, _ in replace)
    types = dict(zip(df.schema.names, (f.dataType.simpleString() for f in df.schema.fields)))
    missing = [c for c in partition_by if c not in types]
    if missing:
        raise DeltaTableError(f"cannot write {uri}: partition column(s) {missing} not in the DataFrame (columns: {list(columns)})")
    not_string = [c for c in partition_by if types[c] != "string"]
    if not_string:
        raise DeltaTableError(f"cannot write {uri}: partition column(s) {not_string} must be of type string")
    if columns and len(partition_by) == len(columns):
        raise DeltaTableError(f"cannot write {uri}: every column is a partition column; Delta needs a data column")
    extra = [c for c, _ in replace or () if c not in partition_by]
    if extra:
        raise DeltaTableError(
            f"cannot write {uri}: replace_partitions names non-partition column(s) {extra}; partition columns are {list(partition_by)}"
        )
    return _Plan(uri, mode, partition_by, replace, txn, user_metadata, write_id, columns, layout is not None)


# ---------------------------------------------------------------------------------------------
# Partition value checks: inside the write job, counted only when one fails


def _partition_checks(plan: _Plan) -> dict[tuple[str, str], Any]:
    from pyspark.sql import functions as F

    allowed = dict(plan.replace or ())
    checks = {}
    for col in plan.partition_by:
        c = F.col(f"`{col}`")
        checks[(col, "null")] = c.isNull()
        checks[(col, "unsafe")] = c.isNotNull() & (~c.rlike(_SAFE_JAVA) | (c == F.lit(_HIVE_NULL)))
        if col in allowed:
            checks[(col, "outside")] = c.isNotNull() & ~c.isin(list(allowed[col]))
    return checks


def _guarded(df, plan: _Plan):
    """``df`` in write order, each partition column failing its task on a value that breaks the rules."""
    from pyspark.sql import functions as F

    checks = _partition_checks(plan)
    out = []
    for col in plan.columns:
        bad = [cond for (c, _), cond in checks.items() if c == col]
        expr = F.col(f"`{col}`")
        if bad:
            expr = F.when(functools.reduce(operator.or_, bad), F.raise_error(F.lit(_CHECK_MARK))).otherwise(expr)
        out.append(expr.alias(col))
    return df.select(*out)


def _raise_partition_counts(df, plan: _Plan) -> None:
    from pyspark.sql import functions as F

    checks = _partition_checks(plan)
    row = df.agg(*[F.sum(F.when(cond, 1).otherwise(0)).alias(f"c{i}") for i, cond in enumerate(checks.values())]).first()
    words = {
        "null": "NULL value(s)",
        "unsafe": f"value(s) with characters unsafe in a path (allowed: {_SAFE_HINT})",
        "outside": "row(s) outside replace_partitions",
    }
    problems = [f"column {col!r}: {int(row[f'c{i}'] or 0)} {words[why]}" for i, (col, why) in enumerate(checks) if row[f"c{i}"]]
    raise DeltaTableError(
        f"cannot write {plan.uri}: {'; '.join(problems) or 'partition values failed the checks'}; "
        "nothing was committed (values not shown)"
    )


def _raise_write_error(exc: BaseException, df, plan: _Plan, what: str) -> None:
    if isinstance(exc, _conflict_types()):
        raise DeltaConflictError(
            f"{what} {plan.uri} lost a race with a concurrent writer ({type(exc).__name__}); nothing of this "
            "write was committed and the table keeps the other commit: rerun the write"
        ) from None
    if _CHECK_MARK in str(exc):
        _raise_partition_counts(df, plan)
    # Spark's own message may quote row values (constraint checks do): only its condition travels,
    # and the text of a caller's own check (a raise_error constant starting with "natlink").
    own = _OWN_RAISE.search(str(exc))
    detail = f" ({own.group(1)})" if own else ""
    raise DeltaTableError(f"{what} {plan.uri} failed, nothing was committed: {_condition(exc)}{detail}") from None


# ---------------------------------------------------------------------------------------------
# Writing


def _skipped(spark, plan: _Plan) -> WriteResult | None:
    if plan.txn is None or not plan.exists:
        return None
    from delta.tables import DeltaTable

    done = txn_version(plan.uri, plan.txn[0], spark)
    if done is None or done < plan.txn[1]:
        return None
    log.info("delta write %s skipped: txn %s already at version %s", plan.uri, plan.txn[0], done)
    latest = DeltaTable.forPath(spark, plan.uri).history(1).select("version").first()["version"]
    return WriteResult(BACKEND, int(latest), 0, 0, True)


def _result(spark, plan: _Plan) -> WriteResult:
    """This write's commit, found by its write id even when other writers committed since."""
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, plan.uri).history(50).select("version", "userMetadata", "operationMetrics").collect()
    for r in rows:
        if _user_metadata(r["userMetadata"]).get(_WRITE_ID_KEY) == plan.write_id:
            m = {k: int(v or 0) for k, v in (r["operationMetrics"] or {}).items() if str(v or 0).isdigit()}
            if "numTargetRowsInserted" in m:  # MERGE
                files, rows_out = m.get("numTargetFilesAdded", 0), m["numTargetRowsInserted"] + m.get("numTargetRowsUpdated", 0)
            else:
                files, rows_out = m.get("numFiles", 0), m.get("numOutputRows", 0)
            result = WriteResult(BACKEND, int(r["version"]), files, rows_out, False)
            log.info("delta write %s: version=%s files=%d rows=%d", plan.uri, result.version, result.files, result.rows)
            return result
    # No commit carries our id: delta-spark skipped the write (another run recorded the txn first).
    return WriteResult(BACKEND, int(rows[0]["version"]) if rows else None, 0, 0, True)


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
        (AND across columns) with df's rows (``replaceWhere``); df may hold no other partitions.
        Creates the table when absent. Overrides ``mode``.
    txn: (app_id, version). Skipped when the table already records app_id at >= version;
        otherwise recorded in the same commit (a rerun with the same run id changes nothing).
    commit_info: small JSON dict stored in the commit (as userMetadata; see :func:`history`).
    partition_by: defaults to the existing table's partition columns.
    """
    spark = df.sparkSession
    backend(spark)
    plan = _plan(df, path, mode, partition_by, replace_partitions, txn, commit_info)
    skipped = _skipped(spark, plan)
    if skipped is not None:
        return skipped
    writer = _guarded(df, plan).write.format("delta").option("userMetadata", plan.user_metadata)
    if plan.replace is not None:
        # values passed SAFE_PARTITION_VALUE: no quotes or escapes possible
        where = " AND ".join(f"`{col}` IN ({', '.join(repr(v) for v in values)})" for col, values in plan.replace)
        writer = writer.mode("overwrite").option("replaceWhere", where)
    elif plan.mode == "overwrite":
        writer = writer.mode("overwrite").option("overwriteSchema", "true")
    else:
        writer = writer.mode("append")
    if plan.partition_by:
        # Delta's optimized write: one shuffle so each partition value lands in few files.
        writer = writer.partitionBy(*plan.partition_by).option("optimizeWrite", "true")
    if plan.txn is not None:
        writer = writer.option("txnAppId", plan.txn[0]).option("txnVersion", str(plan.txn[1]))
    try:
        writer.save(plan.uri)
    except Exception as exc:  # noqa: BLE001 - Spark and Delta raise many types
        _raise_write_error(exc, df, plan, "write to")
    return _result(spark, plan)


def merge(
    df,
    path: str | os.PathLike,
    keys: Sequence[str],
    *,
    txn: tuple[str, int] | None = None,
    commit_info: Mapping[str, Any] | None = None,
) -> WriteResult:
    """Upsert ``df`` into the table by ``keys`` (Delta ``MERGE``: matched rows updated, others inserted).

    Creates the table (partitioned like ``write`` would not: unpartitioned) when absent. ``df``
    must have the table's columns; keys match NULL to NULL. ``txn`` as in :func:`write`.
    """
    from delta.tables import DeltaTable

    spark = df.sparkSession
    backend(spark)
    plan = _plan(df, path, "append", (), None, txn, commit_info)
    keys = [keys] if isinstance(keys, str) else list(keys)
    missing = [k for k in keys if k not in plan.columns]
    if not keys or missing:
        raise DeltaTableError(f"cannot merge into {plan.uri}: key column(s) {missing or keys} not in the table's columns")
    if not plan.exists:
        return write(df, path, mode="append", txn=txn, commit_info=commit_info)
    skipped = _skipped(spark, plan)
    if skipped is not None:
        return skipped
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    confs = {_USER_METADATA_CONF: plan.user_metadata}
    if plan.txn is not None:  # MERGE takes the idempotent-write ids from session confs
        confs.update(zip(_TXN_CONFS, (plan.txn[0], str(plan.txn[1]))))
    for key, value in confs.items():
        spark.conf.set(key, value)
    try:
        table = DeltaTable.forPath(spark, plan.uri).alias("t")
        table.merge(_guarded(df, plan).alias("s"), condition).whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    except Exception as exc:  # noqa: BLE001
        _raise_write_error(exc, df, plan, "merge into")
    finally:
        for key in confs:
            spark.conf.unset(key)
    return _result(spark, plan)


# ---------------------------------------------------------------------------------------------
# Maintenance (docs/delta.md says what natlink runs and why)


def optimize(path: str | os.PathLike, *, zorder_by: Sequence[str] = (), spark=None) -> dict:
    """Compact small files (bin-packing; Z-order by ``zorder_by`` when given). Returns Delta's metrics."""
    from delta.tables import DeltaTable

    spark = _session(spark)
    uri = _uri(path)
    _require(spark, uri)
    builder = DeltaTable.forPath(spark, uri).optimize()
    try:
        out = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
    except Exception as exc:  # noqa: BLE001
        raise DeltaTableError(f"OPTIMIZE {uri} failed: {_condition(exc)}") from exc
    metrics = out.first()["metrics"]
    return metrics.asDict(recursive=True) if metrics is not None else {}


def set_retention(path: str | os.PathLike, *, days: int, spark=None) -> bool:
    """Keep ``days`` of history: removed files (the ``VACUUM`` horizon) and log (time travel).

    A metadata-only commit, made only when the table's retention differs; True when it did.
    """
    from delta.tables import DeltaTable

    if not isinstance(days, int) or isinstance(days, bool) or days < 7:
        raise DeltaTableError(f"retention must be a whole number of days >= 7 (Delta's safety floor), not {days!r}")
    spark = _session(spark)
    uri = _uri(path)
    _require(spark, uri)
    wanted = {k: f"interval {days} days" for k in ("delta.deletedFileRetentionDuration", "delta.logRetentionDuration")}
    current = DeltaTable.forPath(spark, uri).detail().select("properties").first()["properties"] or {}
    if all(current.get(k) == v for k, v in wanted.items()):
        return False
    spark.sql(f"ALTER TABLE {_sql_path(uri)} SET TBLPROPERTIES ({', '.join(f'{k!r} = {v!r}' for k, v in wanted.items())})")
    return True


def vacuum(path: str | os.PathLike, *, spark=None) -> None:
    """Delete files no version within the table's retention (``set_retention``; Delta default 7 days) needs."""
    from delta.tables import DeltaTable

    spark = _session(spark)
    uri = _uri(path)
    _require(spark, uri)
    DeltaTable.forPath(spark, uri).vacuum()
