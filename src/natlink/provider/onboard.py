"""Onboarding one delivery of a dataset: read, check, standardise, quarantine, count.

:func:`onboard` is what the pipeline calls per dataset. Every source row ends in exactly one of
three places, and the counts prove it (checked in code, :class:`~natlink.errors.ReconciliationError`
otherwise)::

    rows_in == rows_out + quarantined + duplicates_collapsed

* ``rows_out``: rows in ``Onboarded.clean`` (standardised, passed on to tokenise).
* ``quarantined``: rows in ``Onboarded.quarantine`` (the columns of :mod:`natlink.store.quarantine`,
  stage ``onboarding``), one per source row, with the first reason that applies, in this order:
  ``malformed_row``, ``invalid_encoding``, ``missing_record_id``, ``duplicate_record_id``,
  ``no_usable_identifier`` / ``too_few_identifiers``.
* ``duplicates_collapsed``: exact duplicates removed. Among the rows that pass the row-level
  checks, rows sharing a record id are *exact duplicates* when their standardised content (every
  output column and flag) is identical; one copy is kept and the other ``n - 1`` are counted here.
  When rows sharing a record id differ in any way, the provider has sent conflicting versions and
  no copy can be trusted: all ``n`` are quarantined as ``duplicate_record_id``. The kept copy of
  exact duplicates still has to pass the identifier check.

Field-level problems do not remove a row: the value becomes NULL and its flag says why
(:data:`natlink.provider.standardise.REASONS`, among them ``too_long``: a raw value over the
dataset's ``max_length``, nulled before any cleaning runs on it). For every identifier column the
counts reconcile too: ``rows_out == present + missing + sum(invalid)``.

CSV sources are read as RFC 4180 records (:data:`natlink.provider.sources.CSV_DEFAULTS`): a
quoted field may hold the delimiter or a line break, and ``rows_in`` counts records, not lines.
A row is ``malformed_row`` when it has too few or too many fields, or when a field holds a line
break followed by a whole record (a quote left open swallows the records after it: those cannot
be counted, the row that swallowed them is quarantined).

Dataset-level problems are named errors raised before anything is written: a missing or empty
source, header-only files, schema drift (missing / unexpected / mistyped columns, headers that
differ between files), an identifier column with no usable value (``UnusableColumnError``), or
more quarantine than ``quarantine.max_fraction`` allows. A source file that cannot be read whole
(a truncated or corrupt ``.gz`` / ``.bz2`` / Parquet file, a file removed during the run) is a
``CorruptInputFileError`` naming the dataset and the file and saying what to do
(:data:`natlink.provider.sources.SOURCE_REMEDY`), never a Py4J traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import files
from natlink.store import quarantine as Q
from natlink.provider import standardise as S
from natlink.config.datasets import DatasetConfig
from natlink.config.identifiers import LINKING_KINDS
from natlink.errors import (
    ConfigError,
    CorruptInputFileError,
    EmptyInputError,
    NatlinkError,
    QuarantineLimitError,
    ReconciliationError,
    UnusableColumnError,
)
from natlink.provider.sources import CORRUPT_COLUMN as _CORRUPT
from natlink.provider.sources import FILE_COLUMN as _FILE
from natlink.provider.sources import SOURCE_REMEDY, RawSource, read_raw, swallowed_records

__all__ = ["OnboardCounts", "Onboarded", "onboard"]

log = logging.getLogger(__name__)

_MALFORMED = "_natlink_malformed"
_BAD_BYTES = "_natlink_bad_bytes"  # undecodable bytes in a mapped column
_BAD_BYTES_ANY = "_natlink_bad_bytes_any"  # ... anywhere in the row
_REASON = "_natlink_reason"
_COLLAPSED = "_natlink_collapsed"
_REPLACEMENT = "\ufffd"  # what Spark's decoder puts where bytes are not valid in the encoding
_RUN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_LINKING = (C.NHS_NUMBER, C.GIVEN_NAME, C.FAMILY_NAME, C.DATE_OF_BIRTH, C.POSTCODE)


# ---------------------------------------------------------------------------------------------
# Counts


@dataclass(frozen=True)
class OnboardCounts:
    """Where every row of one delivery went, and the quality of what was passed on.

    ``fields[column]`` counts the ``rows_out`` rows: ``present`` (usable value), ``missing``
    (blank in the source or column not mapped) and one entry per reason the value was nulled.
    """

    dataset: str
    run_id: str
    rows_in: int
    rows_out: int
    quarantined: int
    duplicates_collapsed: int
    quarantine_reasons: dict[str, int]
    fields: dict[str, dict[str, int]]
    regions: dict[str, int]
    unexpected_columns: list[str] = field(default_factory=list)
    unmapped_bad_bytes: int = 0  # rows passed on whose unmapped columns held undecodable bytes
    files: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Raise ReconciliationError unless every row and every field value is accounted for."""
        if self.rows_in != self.rows_out + self.quarantined + self.duplicates_collapsed:
            raise ReconciliationError(
                f"dataset {self.dataset!r} run {self.run_id}: rows in {self.rows_in} != rows out {self.rows_out} "
                f"+ quarantined {self.quarantined} + duplicates collapsed {self.duplicates_collapsed}"
            )
        if self.quarantined != sum(self.quarantine_reasons.values()):
            raise ReconciliationError(
                f"dataset {self.dataset!r} run {self.run_id}: quarantined {self.quarantined} != "
                f"sum of reasons {sum(self.quarantine_reasons.values())}"
            )
        for column, parts in self.fields.items():
            if sum(parts.values()) != self.rows_out:
                raise ReconciliationError(
                    f"dataset {self.dataset!r} run {self.run_id}: column {column}: present + missing + invalid "
                    f"= {sum(parts.values())} != rows out {self.rows_out}"
                )
        if sum(self.regions.values()) != self.rows_out:
            raise ReconciliationError(
                f"dataset {self.dataset!r} run {self.run_id}: region counts sum to {sum(self.regions.values())} "
                f"!= rows out {self.rows_out}"
            )


@dataclass
class Onboarded:
    """The result of :func:`onboard`: clean rows, quarantine rows and the counts."""

    clean: DataFrame
    quarantine: DataFrame
    counts: OnboardCounts
    _cached: DataFrame | None = None

    def unpersist(self) -> None:
        if self._cached is not None:
            self._cached.unpersist()
            self._cached = None


def _known_regions(cfg: DatasetConfig) -> list[str]:
    known = set(S.regions().values()) | {S.UNKNOWN_REGION, "WALES", "SCOTLAND", "NORTHERN_IRELAND"}
    if cfg.region:
        known.add(cfg.region)
    return sorted(known)


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, F.lit(1)).otherwise(F.lit(0))).cast("long")


def _counts(classified: DataFrame, cfg: DatasetConfig, run_id: str, raw: RawSource) -> OnboardCounts:
    out = F.col(_REASON).isNull() & ~F.col(_COLLAPSED)
    aggs: list[Column] = [
        F.count(F.lit(1)).alias("rows_in"),
        _count_if(out).alias("rows_out"),
        _count_if(F.col(_COLLAPSED)).alias("collapsed"),
        _count_if(out & F.col(_BAD_BYTES_ANY)).alias("unmapped_bad_bytes"),
    ]
    aggs += [_count_if(F.col(_REASON) == r).alias(f"q:{r}") for r in Q.STAGE_REASONS[Q.ONBOARDING]]
    for column in S.identifier_columns(cfg):
        value, flag = F.col(column), F.col(C.flag(column))
        aggs.append(_count_if(out & value.isNotNull()).alias(f"f:{column}:present"))
        aggs.append(_count_if(out & value.isNull() & flag.isNull()).alias(f"f:{column}:missing"))
        aggs += [_count_if(out & (flag == r)).alias(f"f:{column}:{r}") for r in S.reasons_of(cfg, column)]
    regions = _known_regions(cfg)
    aggs += [_count_if(out & (F.col(C.REGION) == r)).alias(f"r:{r}") for r in regions]
    aggs.append(_count_if(out & ~F.col(C.REGION).isin(*regions)).alias("r:_other"))
    row = classified.agg(*aggs).collect()[0].asDict()
    row = {k: int(v or 0) for k, v in row.items()}
    if row.pop("r:_other"):
        raise ReconciliationError(f"dataset {cfg.name!r}: region values outside the known set")
    reasons = {r: row[f"q:{r}"] for r in Q.STAGE_REASONS[Q.ONBOARDING]}
    fields = {
        column: {
            "present": row[f"f:{column}:present"],
            "missing": row[f"f:{column}:missing"],
            **{r: row[f"f:{column}:{r}"] for r in S.reasons_of(cfg, column)},
        }
        for column in S.identifier_columns(cfg)
    }
    return OnboardCounts(
        dataset=cfg.name,
        run_id=run_id,
        rows_in=row["rows_in"],
        rows_out=row["rows_out"],
        quarantined=sum(reasons.values()),
        duplicates_collapsed=row["collapsed"],
        quarantine_reasons=reasons,
        fields=fields,
        regions={r: row[f"r:{r}"] for r in regions if row[f"r:{r}"]},
        unexpected_columns=list(raw.unexpected_columns),
        unmapped_bad_bytes=row["unmapped_bad_bytes"],
        files=len(raw.files),
    )


# ---------------------------------------------------------------------------------------------
# Classification


def _has_bad_bytes(columns: list[str]) -> Column:
    if not columns:
        return F.lit(False)
    joined = F.concat_ws("\u0001", *[F.col(f"`{c}`").cast("string") for c in columns])
    return F.coalesce(joined.contains(_REPLACEMENT), F.lit(False))


def _row_checks(raw: RawSource, cfg: DatasetConfig) -> DataFrame:
    mapped = list(dict.fromkeys(cfg.source_columns()))
    malformed = F.lit(False)
    if raw.is_csv:
        malformed = F.col(_CORRUPT).isNotNull() | swallowed_records(cfg, raw.source_columns)
    # Referencing every source column also stops Spark's CSV column pruning, which would
    # otherwise let a row with a missing or extra unmapped field through as well formed.
    return raw.frame.select(
        *[F.col(f"`{c}`") for c in mapped],
        malformed.alias(_MALFORMED),
        _has_bad_bytes(mapped).alias(_BAD_BYTES),
        (_has_bad_bytes(raw.source_columns) if raw.is_csv else F.lit(False)).alias(_BAD_BYTES_ANY),
        F.col(_FILE),
    )


def _classify(std: DataFrame, cfg: DatasetConfig) -> DataFrame:
    row_reason = (
        F.when(F.col(_MALFORMED), F.lit(Q.MALFORMED_ROW))
        .when(F.col(_BAD_BYTES), F.lit(Q.INVALID_ENCODING))
        .when(F.col(C.RECORD_ID).isNull(), F.lit(Q.MISSING_RECORD_ID))
    )
    eligible = row_reason.isNull()
    content = F.struct(*[F.col(c) for c in S.output_columns(cfg) if c not in (C.DATASET, C.RECORD_ID)])
    staged = std.select("*", row_reason.alias("_row_reason"), eligible.alias("_eligible"), content.alias("_content"))
    by_id = Window.partitionBy(C.RECORD_ID, "_eligible")
    whole = by_id.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    ordered = by_id.orderBy(F.col(_FILE)).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    n = F.count(F.lit(1)).over(whole)
    same = F.min("_content").over(whole).eqNullSafe(F.max("_content").over(whole))
    rank = F.row_number().over(ordered)
    dup = F.col("_eligible") & (n > 1)
    windowed = staged.select(
        "*",
        (dup & ~same).alias("_conflict"),
        (dup & same & (rank > 1)).alias(_COLLAPSED),
    )
    linking = [*_LINKING, *[n for n, k in cfg.declared_identifiers.items() if k.kind in LINKING_KINDS]]
    usable = sum(F.col(c).isNotNull().cast("int") for c in linking)
    reason = (
        F.when(F.col("_row_reason").isNotNull(), F.col("_row_reason"))
        .when(F.col("_conflict"), F.lit(Q.DUPLICATE_RECORD_ID))
        .when(F.col(_COLLAPSED), F.lit(None))
        .when(usable == 0, F.lit(Q.NO_USABLE_IDENTIFIER))
        .when(usable < cfg.quarantine.min_identifiers, F.lit(Q.TOO_FEW_IDENTIFIERS))
    )
    return windowed.select(
        *S.output_columns(cfg),
        F.col(_FILE),
        F.col(_BAD_BYTES_ANY),
        reason.alias(_REASON),
        F.col(_COLLAPSED),
    )


def _quarantine_rows(classified: DataFrame, run_id: str) -> DataFrame:
    rid = F.col(C.RECORD_ID)
    trusted = (F.col(_REASON) != Q.MALFORMED_ROW) & ~F.coalesce(rid.contains(_REPLACEMENT), F.lit(False))
    return classified.where(F.col(_REASON).isNotNull()).select(
        F.col(C.DATASET),
        F.when(trusted, rid).alias(C.RECORD_ID),
        F.col(_REASON).alias(C.REASON),
        F.lit(Q.ONBOARDING).alias(C.STAGE),
        F.lit(run_id).alias(C.RUN_ID),
        F.col(_FILE).alias(C.SOURCE_FILE),
    )


def _check_dataset(counts: OnboardCounts, cfg: DatasetConfig, raw: RawSource) -> None:
    if counts.rows_in == 0 and not cfg.schema_checks.allow_empty:
        raise EmptyInputError(
            f"dataset {cfg.name!r}: {raw.path} has a header but 0 data rows in {len(raw.files) or 1} file(s) "
            "(set schema_checks.allow_empty to accept an empty delivery)"
        )
    if counts.rows_out > 0:
        for column in cfg.columns:
            if column == C.SEX or column in cfg.schema_checks.allow_unusable:
                continue
            parts = counts.fields[column]
            if parts["present"] == 0:
                invalid = {k: v for k, v in parts.items() if k not in ("present", "missing") and v}
                raise UnusableColumnError(
                    f"dataset {cfg.name!r}: column {cfg.columns[column]} (mapped to {column}) has no usable value "
                    f"in {counts.rows_out} rows: {parts['missing']} blank, invalid by reason {invalid or '{}'} "
                    "(check the mapping, or list it in schema_checks.allow_unusable)"
                )
    limit = cfg.quarantine.max_fraction
    if limit is not None and counts.rows_in and counts.quarantined / counts.rows_in > limit:
        raise QuarantineLimitError(
            f"dataset {cfg.name!r}: {counts.quarantined} of {counts.rows_in} rows quarantined "
            f"({counts.quarantined / counts.rows_in:.1%}), over quarantine.max_fraction {limit:.1%}; "
            f"by reason: { {k: v for k, v in counts.quarantine_reasons.items() if v} }"
        )


@contextmanager
def _named_read_failures(cfg: DatasetConfig) -> Iterator[None]:
    """A source file that Spark cannot read (removed during the run, truncated, corrupt) as a
    CorruptInputFileError naming the dataset, the file and what to do; never a Py4J traceback."""
    try:
        yield
    except NatlinkError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated when it is a read failure, else re-raised
        named = files.named_read_failure(exc, remedy=SOURCE_REMEDY)
        if named is None:
            raise
        log.debug("onboard %s: reading a source file failed", cfg.name, exc_info=True)
        raise CorruptInputFileError(f"dataset {cfg.name!r}: {named}") from None


def onboard(
    spark: SparkSession,
    cfg: DatasetConfig,
    *,
    data_dir: str | None = None,
    run_id: str,
    as_of: dt.date | None = None,
) -> Onboarded:
    """Read, check, standardise and classify one dataset; counts computed and reconciled.

    The classified rows are persisted (MEMORY_AND_DISK; spill is encrypted by the session's
    ``spark.io.encryption.enabled``) so the counts, the clean rows and the quarantine rows are
    read from the source once. Call ``Onboarded.unpersist()`` when both frames are written.
    """
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run id must be 1-128 letters, digits, '_', '-' or '.', got {len(run_id)} characters")
    with _named_read_failures(cfg):
        raw = read_raw(spark, cfg, data_dir=data_dir)  # a Parquet source's footers are read here
    checked = _row_checks(raw, cfg)
    std = S.standardise(checked, cfg, as_of=as_of, passthrough=(_MALFORMED, _BAD_BYTES, _BAD_BYTES_ANY, _FILE))
    classified = _classify(std, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with _named_read_failures(cfg):
            counts = _counts(classified, cfg, run_id, raw)  # the job that reads every source row
        counts.check()
        _check_dataset(counts, cfg, raw)
    except Exception:
        classified.unpersist()
        raise
    out = F.col(_REASON).isNull() & ~F.col(_COLLAPSED)
    clean = classified.where(out).select(*S.output_columns(cfg))
    log.info(
        "onboard %s run %s: in %d, out %d, quarantined %d, collapsed %d",
        cfg.name, run_id, counts.rows_in, counts.rows_out, counts.quarantined, counts.duplicates_collapsed,
    )
    return Onboarded(clean=clean, quarantine=_quarantine_rows(classified, run_id), counts=counts, _cached=classified)
