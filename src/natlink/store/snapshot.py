"""What one version of a Delta table holds: its data files, and a digest that binds their bytes.

:func:`content_digest` describes the table's current snapshot: the Delta version, the number of
data files and their bytes, and a SHA-256 over every file's log entry (its path relative to the
table, size and deletion vector, from the Delta log's add actions) together with the SHA-256 of
the file's *bytes*. The byte hashes come from one native Spark job (the ``binaryFile`` source and
``sha2``), so a file rewritten in place, even to the same size and name, changes the digest, and
so does any commit that adds, removes or replaces a file. A signed token-table manifest records
it (:mod:`natlink.tokens.signing`) and the linkage centre's reader recomputes it
(:mod:`natlink.tokens.reader`): an edited table is refused.

Read beside :mod:`natlink.store.delta` (which reads and writes the rows); this module reads only
the log and the files' bytes. Deletion-vector files are bound by their descriptor in the log
(natlink's writes do not create them).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from urllib.parse import unquote

from natlink.errors import DeltaTableError

__all__ = ["TableDigest", "content_digest"]

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


def _basename(path: str) -> str:
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


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
    jvm = spark._jvm
    none = jvm.scala.Option.empty()
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, uri)
    if version is None:
        snapshot = log.update(False, none, none)
    else:
        try:
            snapshot = log.getSnapshotAt(int(version), none, none, False)
        except Exception as exc:  # noqa: BLE001 - a version past the log's retention, or never written
            raise DeltaTableError(f"Delta table {uri}: version {version} cannot be read ({type(exc).__name__})") from None
    root = log.dataPath().toString().rstrip("/")
    adds = DataFrame(snapshot.allFiles().toDF(), spark).select(
        "path", "size", F.to_json("deletionVector").alias("dv")
    ).collect()
    entries = sorted((r["path"], int(r["size"]), r["dv"] or "") for r in adds)
    hashes: dict[str, tuple[int, str]] = {}
    if entries:
        locations = [p if "://" in p or p.startswith("file:") else f"{root}/{unquote(p)}" for p, _, _ in entries]
        try:
            read = spark.read.format("binaryFile").load(locations)
            rows = read.select("path", "length", F.sha2(F.col("content"), 256).alias("h")).collect()
        except Exception as exc:  # noqa: BLE001 - a file gone, or failing its checksum: name the kind only
            kind = "a checksum error (a file was changed in place)" if "ChecksumException" in str(exc) else type(exc).__name__
            raise DeltaTableError(f"Delta table {uri}: the data files of version {snapshot.version()} cannot be read: {kind}") from None
        hashes = {_basename(r["path"]): (int(r["length"]), r["h"]) for r in rows}
    digest = hashlib.sha256()
    for rel, size, dv in entries:
        found = hashes.get(_basename(rel))
        if found is None or found[0] != size:
            raise DeltaTableError(
                f"Delta table {uri}: data file {rel} of version {snapshot.version()} is "
                + ("missing" if found is None else f"{found[0]} bytes, but the log records {size}")
            )
        digest.update(f"{rel}\t{size}\t{dv}\t{found[1]}\n".encode("utf-8"))
    return TableDigest(int(snapshot.version()), len(entries), sum(s for _, s, _ in entries), digest.hexdigest())
