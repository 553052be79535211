"""The files behind a Delta table version: a content id, an integrity check, named read failures.

* :func:`content_id`: a hash of the data files a version is made of (Delta names every data file
  uniquely, so two versions with the same files hold the same rows). A run binds its inputs with
  it (:mod:`natlink.linkage.run`), so a replaced table cannot pass for the one a run id used.
* :func:`check_files`: before any Spark job reads rows, every file of the version exists, is a
  Parquet file from its first to its last byte (``PAR1`` at both ends; a truncated or partly
  copied file fails) and is readable; else :class:`~natlink.errors.CorruptInputFileError` naming
  the file, what was expected and what to do.
* :func:`named_read_failure`: a Spark failure while reading a file (removed, truncated, corrupt
  during a job) as the same named error, naming the file, never a row value; None for anything else.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Mapping

from natlink.errors import CorruptInputFileError
from natlink.store import delta

__all__ = ["check_files", "content_id", "data_files", "named_read_failure"]

_PARQUET_MAGIC = b"PAR1"
_READ_CONDITIONS = ("FAILED_READ_FILE", "CANNOT_READ_FILE_FOOTER", "FILE_NOT_EXIST", "PATH_NOT_FOUND", "CHECKSUM_MISMATCH")
_JAVA_READ_FAILURES = {  # Java exceptions (Hadoop's file system, the JDK) that mean "this file cannot be read"
    "java.io.FileNotFoundException": "FILE_NOT_EXIST",
    "org.apache.hadoop.fs.ChecksumException": "CHECKSUM_MISMATCH",
}
_PATH_IN_TEXT = re.compile(r"((?:file|hdfs|s3a?|abfss?|gs|dbfs):/[^\s,'\"]+|/[^\s,'\"]+)")


def data_files(spark, path: str | os.PathLike, version: int | None = None) -> list[str]:
    """The data files (full URIs, sorted) of the table at ``path`` as of ``version`` (else the latest)."""
    return sorted(str(f) for f in delta.read(spark, path, version=version).inputFiles())


def content_id(spark, path: str | os.PathLike, version: int | None = None) -> str:
    """``sha256:<hex>`` of the table's data-file names at ``version``: equal ids, equal content.

    Delta gives every data file a unique name (a UUID), so the names identify the rows; base names
    only, so a table moved to another folder keeps its id.
    """
    digest = hashlib.sha256()
    for name in sorted(f.rsplit("/", 1)[-1] for f in data_files(spark, path, version)):
        digest.update(name.encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def check_files(spark, path: str | os.PathLike, version: int | None = None, *, what: str, remedy: str) -> int:
    """Every data file of the version exists and is whole Parquet; returns how many were checked.

    ``what`` names the table for the message (e.g. "token table of dataset 'gp'"), ``remedy`` says
    what to do (e.g. "re-tokenise the dataset").
    """
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    files = data_files(spark, path, version)
    for uri in files:
        hpath = jvm.org.apache.hadoop.fs.Path(uri)
        fs = _raw(hpath.getFileSystem(conf))
        if not fs.exists(hpath):
            raise CorruptInputFileError(f"{what}: data file {uri} is missing (the table's log lists it); {remedy}")
        size = int(fs.getFileStatus(hpath).getLen())
        try:
            whole = size >= 12 and _read_bytes(fs, hpath, 0, 4) == _PARQUET_MAGIC == _read_bytes(fs, hpath, size - 4, 4)
        except Exception:  # noqa: BLE001 - an unreadable file is not whole either
            whole = False
        if not whole:
            raise CorruptInputFileError(
                f"{what}: data file {uri} ({size} bytes) is not a whole Parquet file (expected 'PAR1' at its start and end: "
                f"truncated or overwritten); {remedy}"
            )
    return len(files)


def _raw(fs):
    """The file system without Hadoop's client-side checksums (a local file system checks them
    against a .crc file, and would fail on the damage this check is there to name)."""
    try:
        return fs.getRawFileSystem()
    except Exception:  # noqa: BLE001 - not a checksummed file system
        return fs


def _read_bytes(fs, hpath, offset: int, n: int) -> bytes:
    stream = fs.open(hpath)
    try:
        stream.seek(offset)
        return bytes(bytearray(stream.read() & 0xFF for _ in range(n)))
    finally:
        stream.close()


def named_read_failure(
    exc: BaseException, *, remedy: str = "check the file, restore or regenerate it, and rerun", owners: Mapping[str, str] | None = None,
) -> CorruptInputFileError | None:
    """The named error for a Spark job that failed reading a file (missing, truncated, corrupt), else None.

    ``owners`` maps a table's folder to what it is (e.g. "token table of dataset 'hes'"): a file
    under one is named with it."""
    conditions: list[str] = []
    path = None
    throwable, depth = getattr(exc, "java_exception", None), 0
    while throwable is not None and depth < 16:
        for getter in ("getCondition", "getErrorClass"):
            try:
                name = getattr(throwable, getter)()
            except Exception:  # noqa: BLE001 - not a SparkThrowable
                continue
            if name:
                conditions.append(str(name))
                try:
                    params = dict(throwable.getMessageParameters())
                    path = path or params.get("path")
                except Exception:  # noqa: BLE001
                    pass
            break
        try:
            java_class = str(throwable.getClass().getName())
            if java_class in _JAVA_READ_FAILURES:
                conditions.append(_JAVA_READ_FAILURES[java_class])
                path = path or _path_in(str(throwable.getMessage()))
            throwable, depth = throwable.getCause(), depth + 1
        except Exception:  # noqa: BLE001
            break
    if not any(c.split(".")[0] in _READ_CONDITIONS for c in conditions):
        return None
    where = path or "(a file Spark did not name)"
    owner = _owner(path, owners or {})
    if owner:
        where = f"{where} ({owner})"
    if any("NOT_EXIST" in c or "NOT_FOUND" in c for c in conditions):
        kind = "missing (removed or moved while the job ran?)"
    elif "CHECKSUM_MISMATCH" in conditions:
        kind = "changed after its checksum file (.crc beside it) was written"
    else:
        kind = "unreadable or truncated"
    return CorruptInputFileError(f"input file {where} is {kind} ({' <- '.join(dict.fromkeys(conditions))}); {remedy}")


def _owner(path: str | None, owners: Mapping[str, str]) -> str | None:
    """What the folder holding ``path`` is, from ``owners`` (folders compared as local absolute paths)."""
    if not path:
        return None
    local = _local(path)
    for folder, what in owners.items():
        if local.startswith(_local(str(folder)).rstrip("/") + "/"):
            return what
    return None


def _local(path: str) -> str:
    """``file:///a/b``, ``file:/a/b`` and ``/a/b`` as ``/a/b``; other URIs as they are."""
    if path.startswith("file:"):
        return "/" + path[len("file:"):].lstrip("/")
    return path if "://" in path else os.path.abspath(path)


def _path_in(message: str) -> str | None:
    found = _PATH_IN_TEXT.search(message or "")
    return found.group(1).rstrip(".") if found else None
