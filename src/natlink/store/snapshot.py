"""What one version of a Delta table holds: its data files, and a digest that binds their bytes.

:func:`content_digest` describes the table's current snapshot: the Delta version, the number of
data files and their bytes, and a SHA-256 over every file's log entry (its path relative to the
table, size and deletion vector, from the Delta log's add actions) together with the SHA-256 of
the file's *bytes*, so a file rewritten in place, even to the same size and name, changes the
digest, and so does any commit that adds, removes or replaces a file. A signed token-table
manifest records it (:mod:`natlink.tokens.signing`) and the linkage centre's reader recomputes it
(:mod:`natlink.tokens.reader`): an edited table is refused.

The bytes are hashed by the executors, one task per group of files, each file streamed in 1 MiB
chunks (``hashlib``): memory stays flat whatever the file size. (Spark's ``binaryFile`` source and
``sha2`` would be native, but hold each whole file in the JVM heap several times over: a 512 MB
token-table file ran a 4 GB driver out of memory.) Files are read through their local path, as
natlink addresses tables (docs/cluster.md "Paths": a mount every node sees the same way).

Read beside :mod:`natlink.store.delta` (which reads and writes the rows); this module reads only
the log and the files' bytes. Deletion-vector files are bound by their descriptor in the log
(natlink's writes do not create them).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urlparse

from natlink.errors import DeltaTableError

__all__ = ["DIGEST_ALGORITHM", "TableDigest", "content_digest", "current_version"]

DIGEST_ALGORITHM = "sha256(path,size,deletion_vector,sha256(bytes))/v1"


@dataclass(frozen=True)
class TableDigest:
    """One Delta version's files: ``sha256`` binds every file's path, size and bytes."""

    version: int
    files: int
    bytes: int
    sha256: str
    algorithm: str = DIGEST_ALGORITHM

    def as_dict(self) -> dict:
        return asdict(self)


def _uri(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    return text.rstrip("/") if "://" in text else os.path.abspath(text)


def _sha256_file(path: str) -> tuple[str, int, str]:
    """(path, size, SHA-256 of the bytes), streamed: runs in the executors."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return path, size, digest.hexdigest()


def _snapshot(spark, uri: str, version: int | None = None):
    """(log, snapshot): the current snapshot, or the one at ``version`` (time travel)."""
    jvm = spark._jvm
    none = jvm.scala.Option.empty()
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, uri)
    if version is None:
        return log, log.update(False, none, none)
    try:
        return log, log.getSnapshotAt(int(version), none, none, False)
    except Exception as exc:  # noqa: BLE001 - a version past the log's retention, or never written
        raise DeltaTableError(f"Delta table {uri}: version {version} cannot be read ({type(exc).__name__})") from None


def current_version(path: str | os.PathLike, spark=None) -> int:
    """The table's current Delta version, from its log alone (no data file is read)."""
    from pyspark.sql import SparkSession

    spark = spark or SparkSession.getActiveSession()
    return int(_snapshot(spark, _uri(path))[1].version())


def content_digest(path: str | os.PathLike, spark=None, *, version: int | None = None) -> TableDigest:
    """The snapshot of the Delta table at ``path`` (at ``version``; None: the current one): version,
    files, bytes and digest. A version older than the table's log retention cannot be read."""
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F

    from natlink.store import delta

    spark = spark or SparkSession.getActiveSession()
    uri = _uri(path)
    if spark is None or not delta.exists(uri, spark):
        raise DeltaTableError(f"no Delta table at {uri} (no _delta_log with a commit)")
    log, snapshot = _snapshot(spark, uri, version)
    root = log.dataPath().toString().rstrip("/")
    adds = DataFrame(snapshot.allFiles().toDF(), spark).select(
        "path", "size", F.to_json("deletionVector").alias("dv")
    ).collect()
    entries = sorted((r["path"], int(r["size"]), r["dv"] or "") for r in adds)
    local = urlparse(root)
    if local.scheme not in ("", "file"):
        raise DeltaTableError(f"Delta table {uri}: its files are on {local.scheme}:, but a content digest reads local paths only")
    paths = [unquote(urlparse(p).path) if "://" in p or p.startswith("file:") else f"{local.path}/{unquote(p)}" for p, _, _ in entries]
    hashes: dict[str, tuple[int, str]] = {}
    if paths:
        slices = max(1, min(len(paths), 4 * spark.sparkContext.defaultParallelism))
        try:
            results = spark.sparkContext.parallelize(paths, slices).map(_sha256_file).collect()
        except Exception as exc:  # noqa: BLE001 - a file gone or unreadable: name the kind only
            kind = "a data file is missing" if "FileNotFoundError" in str(exc) else type(exc).__name__
            raise DeltaTableError(f"Delta table {uri}: the data files of version {snapshot.version()} cannot be read: {kind}") from None
        hashes = {path: (size, h) for path, size, h in results}
    digest = hashlib.sha256()
    for (rel, size, dv), path in zip(entries, paths):
        found = hashes.get(path)
        if found is None or found[0] != size:
            raise DeltaTableError(
                f"Delta table {uri}: data file {rel} of version {snapshot.version()} is "
                + ("missing" if found is None else f"{found[0]} bytes, but the log records {size}")
            )
        digest.update(f"{rel}\t{size}\t{dv}\t{found[1]}\n".encode("utf-8"))
    return TableDigest(int(snapshot.version()), len(entries), sum(s for _, s, _ in entries), digest.hexdigest())
