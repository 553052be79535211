"""The files of a provider's source and the up-front checks made on them, before any Spark job.

The files exist and are not empty (Hadoop FileSystem listing, works for local paths and cluster
URIs alike), every CSV file's header is read on the driver (so column drift between files of one
delivery is caught), and the columns and their types are compared with the dataset's mapping
(:mod:`natlink.config.datasets`). Errors name the file, the columns that are missing or
unexpected and what is present, never a data value.
"""

from __future__ import annotations

import bz2
import csv
import io
import re
import zlib
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.config.datasets import DatasetConfig, source_path
from natlink.store import delta
from natlink.errors import (
    ColumnTypeError,
    CorruptInputFileError,
    EmptyInputError,
    HeaderMismatchError,
    InvalidEncodingError,
    MissingColumnsError,
    SchemaError,
    SourceNotFoundError,
    UnexpectedColumnsError,
)

__all__ = [
    "CSV_DEFAULTS",
    "SOURCE_REMEDY",
    "decompressed_head",
    "SourceFile",
    "RawSource",
    "list_source_files",
    "read_csv_header",
    "first_record",
    "csv_options",
    "swallowed_records",
    "check_columns",
    "read_raw",
    "read_source",
]

CORRUPT_COLUMN = "_natlink_corrupt_record"  # Spark's PERMISSIVE mode puts a malformed CSV row here
FILE_COLUMN = "_natlink_file"  # the file each row came from

# RFC 4180: a quoted field may hold the delimiter, a line break and a quote written twice ("").
# multiLine makes a record, not a physical line, the unit Spark parses and counts. Its cost: a
# file is parsed by one task, never split. Files under spark.sql.files.maxPartitionBytes (128 MB)
# are one task either way (onboarding 302,500 rows from one 23 MB file on local[2]: 136 s with
# multiLine, 125 s without, at load 13-15: within the noise), and a delivery of many files still
# reads in parallel; but one multi-GB file is parsed by one core. Ask providers for files of at
# most a few hundred MB, or set multiLine "false" in source.options for a provider whose fields
# never hold a line break. A dataset can override any of these defaults in source.options.
CSV_DEFAULTS: dict[str, str] = {"multiLine": "true", "quote": '"', "escape": '"'}

# What to do about a source file that is missing, truncated or corrupt (named in every such error).
SOURCE_REMEDY = "ask the provider for a whole copy of the file (or remove it from the delivery) and rerun"


@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int
    modified: int = 0  # modification time, ms since the epoch (0: unknown)


def _hadoop_fs(spark, path: str):
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), hpath


def list_source_files(spark, path: str, *, dataset: str) -> list[SourceFile]:
    """Data files under ``path`` (hidden ``_``/``.`` entries skipped), or a named error."""
    fs, hpath = _hadoop_fs(spark, path)
    if not fs.exists(hpath):
        raise SourceNotFoundError(f"dataset {dataset!r}: source path {path} does not exist")
    found: list[SourceFile] = []
    stack = [fs.getFileStatus(hpath)]
    while stack:
        status = stack.pop()
        name = status.getPath().getName()
        if status.getPath() != hpath and (name.startswith("_") or name.startswith(".")):
            continue
        if status.isDirectory():
            stack.extend(fs.listStatus(status.getPath()))
        else:
            found.append(SourceFile(path=status.getPath().toString(), size=int(status.getLen()), modified=int(status.getModificationTime())))
    if not found:
        raise SourceNotFoundError(f"dataset {dataset!r}: source path {path} holds no data files")
    return sorted(found, key=lambda f: f.path)


_MAX_HEADER_BYTES = 1 << 18  # a header line longer than 256 KiB is not a header


def first_record(head: bytes, *, quote: str = '"', escape: str = '"') -> bytes:
    """The bytes of the first CSV record of ``head``: up to the first line break outside quotes
    (RFC 4180; a quote written twice, or after ``escape``, stays inside the field). Byte-level,
    so for encodings where the quote and line break are single ASCII bytes (UTF-8, Latin-1...)."""
    q = quote.encode("ascii") if quote and quote.isascii() else b""
    e = escape.encode("ascii") if escape and escape.isascii() else q
    if not q:
        return head.split(b"\n", 1)[0].rstrip(b"\r")
    quoted, i, n = False, 0, len(head)
    while i < n:
        b = head[i:i + 1]
        if quoted and e != q and b == e:
            i += 2  # an escaped character
            continue
        if b == q:
            if quoted and e == q and head[i + 1:i + 2] == q:
                i += 2  # "" inside a quoted field
                continue
            quoted = not quoted
        elif b == b"\n" and not quoted:
            return head[:i].rstrip(b"\r")
        i += 1
    return head.rstrip(b"\r\n")


def read_csv_header(
    spark, file: SourceFile, *, encoding: str, sep: str, quote: str, dataset: str, escape: str = '"'
) -> list[str]:
    """The header record of one CSV file, read on the driver (.gz/.bz2 handled; a quoted header
    cell may hold the delimiter or a line break)."""
    head = _head_bytes(spark, file.path, _MAX_HEADER_BYTES)
    if file.path.endswith((".gz", ".bz2")):
        head = decompressed_head(file, head, whole=len(head) >= file.size, dataset=dataset)
    line = first_record(head, quote=quote, escape=escape)
    try:
        text = line.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise InvalidEncodingError(
            f"dataset {dataset!r}: the header of {file.path} is not valid {encoding} "
            "(set source.encoding to the file's encoding)"
        ) from None
    text = text.lstrip("\ufeff")
    if escape and escape != quote:
        reader = csv.reader(
            io.StringIO(text), delimiter=sep, quotechar=quote or '"', escapechar=escape, doublequote=False
        )
    else:
        reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar=quote or '"')
    return next(reader, [])


def _head_bytes(spark, path: str, limit: int) -> bytes:
    """Up to ``limit`` leading bytes of a file through Hadoop's FileSystem (one call to the JVM)."""
    fs, hpath = _hadoop_fs(spark, path)
    stream = fs.open(hpath)
    try:
        return bytes(stream.readNBytes(int(limit)))
    finally:
        stream.close()


def decompressed_head(file: SourceFile, head: bytes, *, whole: bool, dataset: str) -> bytes:
    """The leading bytes of a ``.gz`` / ``.bz2`` file, decompressed (at most 1 MiB of them).

    ``head``: the file's first bytes; ``whole``: they are the whole file, so a compressed stream
    that has not ended is a truncated file. A file that is not in its compressed format, or is
    truncated, is a :class:`~natlink.errors.CorruptInputFileError` naming it, before any Spark job
    (a truncation past ``head`` is named by the job that meets it: ``natlink.store.files``)."""
    gz = file.path.endswith(".gz")
    stream: Any = zlib.decompressobj(wbits=31) if gz else bz2.BZ2Decompressor()  # wbits=31: a gzip member
    limit = 4 * _MAX_HEADER_BYTES
    kind = "gzip" if gz else "bzip2"
    try:
        out = stream.decompress(head, limit)
    except (zlib.error, OSError, EOFError, ValueError):
        raise CorruptInputFileError(
            f"dataset {dataset!r}: {file.path} ({file.size} bytes) is not {kind} data, as its name says "
            f"(corrupt, or not compressed); {SOURCE_REMEDY}"
        ) from None
    if whole and len(out) < limit and not stream.eof:
        raise CorruptInputFileError(
            f"dataset {dataset!r}: {file.path} ({file.size} bytes) ends before its {kind} stream does "
            f"(truncated, or copied while it was being written); {SOURCE_REMEDY}"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Column checks (pure: from column names and types only)

_STRINGY = {"string", "varchar", "char"}
_INTEGRAL = {"tinyint", "smallint", "int", "bigint", "byte", "short", "integer", "long"}
_ALLOWED_TYPES: dict[str, set[str]] = {
    C.NHS_NUMBER: _STRINGY | _INTEGRAL | {"decimal"},
    C.GIVEN_NAME: _STRINGY,
    C.FAMILY_NAME: _STRINGY,
    C.DATE_OF_BIRTH: _STRINGY | {"date", "timestamp", "timestamp_ntz"},
    C.SEX: _STRINGY | _INTEGRAL,
    C.POSTCODE: _STRINGY,
}
_RECORD_ID_TYPES = _STRINGY | _INTEGRAL | {"decimal"}
# Declared identifiers (natlink.config.identifiers), by kind.
_KIND_TYPES: dict[str, set[str]] = {
    "person_id": _STRINGY | _INTEGRAL | {"decimal"},
    "date": _STRINGY | {"date", "timestamp", "timestamp_ntz"},
    "postcode": _STRINGY | _INTEGRAL,
    "address": _STRINGY | _INTEGRAL,
    "category": _STRINGY | _INTEGRAL,
}


def _base_type(type_name: str) -> str:
    return type_name.split("(", 1)[0].lower()


def check_columns(cfg: DatasetConfig, columns: list[tuple[str, str]], *, where: str) -> list[str]:
    """Check source (name, simpleString type) pairs against the mapping; return unexpected names.

    Raises a named SchemaError listing what is missing / unexpected / mistyped and what is present.
    """
    names = [n for n, _t in columns]
    lowered = [n.lower() for n in names]
    dupes = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if dupes:
        raise SchemaError(f"dataset {cfg.name!r} ({where}): duplicate column names {dupes}")
    present = set(names)
    wanted = cfg.source_columns()
    missing = [c for c in dict.fromkeys(wanted) if c not in present]
    if missing:
        raise MissingColumnsError(
            f"dataset {cfg.name!r} ({where}): missing columns {missing}; present: {sorted(present)}"
        )
    known = set(wanted) | set(cfg.schema_checks.ignore_columns)
    unexpected = [n for n in names if n not in known]
    if unexpected and cfg.schema_checks.unexpected_columns == "error":
        raise UnexpectedColumnsError(
            f"dataset {cfg.name!r} ({where}): unexpected columns {unexpected}; expected only {sorted(known)} "
            "(add them to schema_checks.ignore_columns or map them)"
        )
    types = dict(columns)
    wrong = []
    kinds = cfg.identifier_kinds
    for canonical, source in cfg.columns.items():
        allowed = _ALLOWED_TYPES.get(canonical) or _KIND_TYPES[str(kinds[canonical].kind)]
        if _base_type(types[source]) not in allowed:
            wrong.append(f"{source} ({types[source]}, mapped to {canonical}; expected one of {sorted(allowed)})")
    if _base_type(types[cfg.record_id]) not in _RECORD_ID_TYPES:
        wrong.append(f"{cfg.record_id} ({types[cfg.record_id]}, the record id; expected string or integer)")
    if wrong:
        raise ColumnTypeError(f"dataset {cfg.name!r} ({where}): wrong column types: {'; '.join(wrong)}")
    return unexpected




@dataclass
class RawSource:
    """A source as read, after the up-front checks."""

    frame: DataFrame  # source columns, plus _natlink_* bookkeeping columns
    path: str
    files: list[SourceFile]
    source_columns: list[str]
    unexpected_columns: list[str]
    is_csv: bool


def csv_options(cfg: DatasetConfig) -> dict[str, str]:
    """Spark CSV reader options: the RFC 4180 defaults, then the dataset's own (case-insensitive)."""
    own = {k.lower() for k in cfg.source.options}
    return {**{k: v for k, v in CSV_DEFAULTS.items() if k.lower() not in own}, **cfg.source.options}


def swallowed_records(cfg: DatasetConfig, columns: list[str]) -> Column:
    """True when a field holds a line break followed by a line with as many delimiters as a
    whole record: the mark of a quote left open, which under multiLine swallows the records after
    it into one field. The row is malformed (its field boundaries cannot be trusted). Linear:
    the line pattern has no ambiguous split, and only fields holding a line break are searched."""
    if len(columns) < 2:
        return F.lit(False)
    opts = {k.lower(): v for k, v in csv_options(cfg).items()}
    sep = re.escape(opts.get("sep", opts.get("delimiter", ",")))
    line = rf"\n[^\n{sep}]*(?:{sep}[^\n{sep}]*){{{len(columns) - 1}}}"
    checks = [F.coalesce(F.col(f"`{c}`").contains("\n") & F.col(f"`{c}`").rlike(line), F.lit(False)) for c in columns]
    return reduce(lambda a, b: a | b, checks)


def _csv_header(spark: SparkSession, cfg: DatasetConfig, files: list[SourceFile]) -> list[str]:
    opts = {k.lower(): v for k, v in csv_options(cfg).items()}
    sep = opts.get("sep", opts.get("delimiter", ","))
    quote, escape = opts.get("quote", '"'), opts.get("escape", '"')
    headers: dict[tuple[str, ...], list[str]] = {}
    for f in files:
        header = read_csv_header(
            spark, f, encoding=cfg.source.encoding, sep=sep, quote=quote, escape=escape, dataset=cfg.name
        )
        headers.setdefault(tuple(header), []).append(f.path)
    if len(headers) > 1:
        variants = "; ".join(
            f"{len(paths)} file(s) such as {paths[0]} with columns {list(h)}"
            for h, paths in sorted(headers.items(), key=lambda kv: -len(kv[1]))
        )
        raise HeaderMismatchError(f"dataset {cfg.name!r}: the files do not share one header: {variants}")
    header = list(next(iter(headers)))
    # Spark names blank header cells _c<i>; do the same so the schema is well formed.
    return [h.strip() or f"_c{i}" for i, h in enumerate(header)]


def read_raw(spark: SparkSession, cfg: DatasetConfig, *, data_dir: str | None = None) -> RawSource:
    """Read a dataset's source with every check that can be made before reading data rows."""
    path = source_path(cfg, data_dir)
    fmt = cfg.source.format
    if fmt == "delta":
        if not delta.exists(path):
            raise SourceNotFoundError(f"dataset {cfg.name!r}: no Delta table at {path}")
        df = delta.read(spark, path)
        files: list[SourceFile] = []
        frame_file = F.lit(path)
    else:
        files = list_source_files(spark, path, dataset=cfg.name)
        nonempty = [f for f in files if f.size > 0]
        if not nonempty:
            raise EmptyInputError(
                f"dataset {cfg.name!r}: {len(files)} file(s) under {path}, all empty (0 bytes); expected a header and rows"
            )
        if fmt == "csv":
            header = _csv_header(spark, cfg, nonempty)
            if not any(header):
                raise EmptyInputError(f"dataset {cfg.name!r}: {path}: the first line is empty; expected a header")
            schema = T.StructType(
                [T.StructField(h, T.StringType()) for h in header] + [T.StructField(CORRUPT_COLUMN, T.StringType())]
            )
            check_columns(cfg, [(h, "string") for h in header], where=path)
            reader = (
                spark.read.schema(schema)
                .option("header", True)
                .option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
                .option("enforceSchema", False)  # every file's header is compared with the schema
                .option("encoding", cfg.source.encoding)
            )
            for key, value in csv_options(cfg).items():
                reader = reader.option(key, value)
            df = reader.csv([f.path for f in nonempty])
        else:
            df = spark.read.parquet(*[f.path for f in nonempty])
        frame_file = F.col("_metadata.file_path")
    source_cols = [c for c in df.columns if c != CORRUPT_COLUMN]
    unexpected = check_columns(
        cfg, [(f.name, f.dataType.simpleString()) for f in df.schema.fields if f.name != CORRUPT_COLUMN], where=path
    )
    is_csv = fmt == "csv"
    frame = df.select(*[F.col(f"`{c}`") for c in df.columns], frame_file.alias(FILE_COLUMN))
    return RawSource(frame, path, files, source_cols, unexpected, is_csv)


def read_source(spark: SparkSession, cfg: DatasetConfig, *, data_dir: str | None = None) -> DataFrame:
    """The raw source as a DataFrame, after the up-front checks (see :mod:`natlink.provider.onboard`)."""
    raw = read_raw(spark, cfg, data_dir=data_dir)
    return raw.frame.select(*[F.col(f"`{c}`") for c in raw.source_columns])
