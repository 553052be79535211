"""Dataset descriptions (``conf/datasets/*.yaml``) and the up-front checks made on a source.

A dataset config says where a provider's extract lives, how its columns map to natlink's
canonical columns, and the rules used to clean it. It is a frozen pydantic model with unknown
keys rejected; :func:`load_dataset` names the file and the key path of every problem.

Source checks (:mod:`natlink.provider.sources`) run before any Spark job that reads data rows: the files exist and are not
empty (Hadoop FileSystem listing, works for local paths and cluster URIs alike), every CSV file's
header is read on the driver (so column drift between files of one delivery is caught), and the
columns and their types are compared with the mapping. Errors name the file, the columns that
are missing or unexpected and what is present, never a data value.

Minimal YAML (the schema of the walking skeleton, still accepted)::

    name: gp
    source: {path: "{data_dir}/raw/gp", format: csv}
    record_id: patient_ref
    columns: {nhs_number: nhs_no, given_name: forename, family_name: surname,
              date_of_birth: birth_date, sex: gender, postcode: postcode}
    date_format: "yyyy-MM-dd"

Keys added by onboarding (all optional): ``date_formats`` (several patterns, tried in order),
``nhs_number``, ``date_of_birth``, ``names``, ``max_length``, ``schema_checks``, ``quarantine``,
``source.encoding``, ``as_of``; and ``one_row_per_person`` (a linkage property: see :class:`DatasetConfig`).
``identifiers`` declares identifiers beyond the six built-in ones with their kind
(:mod:`natlink.config.identifiers`), which ``columns`` may then map.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from natlink import columns as C
from natlink.config import identifiers as ids
from natlink.config.base import Frozen, load
from natlink.errors import ConfigError

__all__ = [
    "SourceSpec",
    "DatasetConfig",
    "NhsNumberRules",
    "DateOfBirthRules",
    "NameRules",
    "MaxLength",
    "SchemaChecks",
    "AgeBandRules",
    "QuarantineRules",
    "load_dataset",
    "source_path",
]


CANONICAL_COLUMNS: tuple[str, ...] = C.IDENTIFIERS
_NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"
_REGION_RE = r"^[A-Z][A-Z_]{0,62}$"

DEFAULT_TITLES: tuple[str, ...] = (
    "MR", "MRS", "MS", "MISS", "MX", "MSTR", "MASTER", "DR", "PROF", "PROFESSOR", "REV", "REVD",
    "FR", "SIR", "DAME", "LADY", "LORD", "CAPT", "COL", "MAJ", "SGT", "CLLR", "HON", "RT HON",
)
DEFAULT_NAME_PLACEHOLDERS: tuple[str, ...] = (
    "UNKNOWN", "NOT KNOWN", "NOTKNOWN", "NK", "UNK", "UNNAMED", "NONAME", "NO NAME", "NONE", "NULL",
    "NA", "TEST", "TESTPATIENT", "TEST PATIENT", "PATIENT", "X", "XX", "XXX", "XXXX", "ZZ", "ZZZ",
    "ZZZZ", "BABY", "INFANT", "TWIN", "TRIPLET", "BOY", "GIRL", "MALE", "FEMALE",
)


class SourceSpec(Frozen):
    """Where the extract is: a path (``{data_dir}`` is filled in at run time) and its format."""

    path: str
    format: Literal["csv", "parquet", "delta"] = "csv"
    # Passed to Spark's reader (csv: sep, quote, ...), over natlink's RFC 4180 defaults for CSV
    # (natlink.provider.sources.CSV_DEFAULTS: multiLine, quote and escape '"').
    options: dict[str, str] = Field(default_factory=dict)
    encoding: str = "UTF-8"  # csv only; bytes that are not valid in it quarantine their row

    @field_validator("options")
    @classmethod
    def _no_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        owned = {"header", "mode", "columnnameofcorruptrecord", "encoding", "charset", "enforceschema", "inferschema"}
        clash = sorted(k for k in value if k.lower() in owned)
        if clash:
            raise ValueError(f"options {clash} are set by natlink (use source.encoding for the encoding)")
        return value


class NhsNumberRules(Frozen):
    allow_test_range: bool = False  # 999 000 0000 - 999 999 9999: test numbers, never issued to patients
    reject_repeated_digits: bool = True  # 0000000000, 4444444444 ...: pass modulus 11, but are fillers


class DateOfBirthRules(Frozen):
    """Placeholders and plausibility bounds of a date of birth.

    After the as-of date: ``out_of_range``. Before ``earliest``, or more than ``max_age_years``
    whole years old at the as-of date: ``implausible_date``. Either way the value is nulled and
    counted, never passed on. The as-of date is the dataset's ``as_of`` (see :class:`DatasetConfig`).
    """

    placeholder_dates: list[dt.date] = Field(default_factory=lambda: [dt.date(1900, 1, 1)])
    # "MM-DD" that, in any year, mean "not known" at this provider (e.g. "01-01" for 01/01/YYYY).
    unknown_day_month: list[str] = Field(default_factory=list)
    earliest: dt.date = dt.date(1900, 1, 1)  # anything earlier is implausible for a living record
    max_age_years: int | None = Field(120, ge=1, le=200)  # older than this at the as-of date: implausible

    @field_validator("unknown_day_month")
    @classmethod
    def _mm_dd(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                dt.date(2000, int(item[0:2]), int(item[3:5]))
            except (ValueError, IndexError):
                raise ValueError("each entry must be 'MM-DD', e.g. '01-01'") from None
            if len(item) != 5 or item[2] != "-":
                raise ValueError("each entry must be 'MM-DD', e.g. '01-01'")
        return value


class MaxLength(Frozen):
    """The longest raw value (in characters) cleaned, per identifier column.

    A longer value is nulled with the flag ``too_long`` before any cleaning runs on it, so one
    absurd value (a pasted document in a surname) costs a length check, not a task. The defaults
    are far above any real value and far below what slows a task down.
    """

    nhs_number: int = Field(32, ge=10, le=1 << 24)  # 10 digits, with spaces or hyphens: 12
    given_name: int = Field(255, ge=1, le=1 << 24)  # every given name of a person, in one field
    family_name: int = Field(255, ge=1, le=1 << 24)
    date_of_birth: int = Field(40, ge=8, le=1 << 24)  # a timestamp with zone is 29
    sex: int = Field(32, ge=1, le=1 << 24)  # "NOT SPECIFIED" is 13
    postcode: int = Field(16, ge=8, le=1 << 24)  # "SW1A 1AA" is 8

    def of(self, column: str) -> int:
        return int(getattr(self, column))


class NameRules(Frozen):
    titles: list[str] = Field(default_factory=lambda: list(DEFAULT_TITLES))
    placeholders: list[str] = Field(default_factory=lambda: list(DEFAULT_NAME_PLACEHOLDERS))

    @field_validator("titles", "placeholders")
    @classmethod
    def _upper_words(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.fullmatch(r"[A-Z]+( [A-Z]+)*", v)]
        if bad:
            raise ValueError(f"{len(bad)} entries are not upper-case words separated by single spaces")
        return value


class AgeBandRules(Frozen):
    """An age band derived at the provider and carried, non-identifying, into the token table.

    Age in whole years at ``reference_date`` (the same date at every provider of one linkage, so
    bands agree across datasets), in ``width``-year bands (``"40-49"``), everyone at or over
    ``open_from`` in one open band (``"90+"``). No usable date of birth, or one after the
    reference date, gives NULL. The date of birth itself is never carried over.
    """

    reference_date: dt.date
    width: int = Field(10, ge=5, le=50)
    open_from: int = Field(90, ge=10, le=120)

    @model_validator(mode="after")
    def _aligned(self) -> "AgeBandRules":
        if self.open_from % self.width:
            raise ValueError(f"open_from ({self.open_from}) must be a multiple of width ({self.width})")
        return self

    def labels(self) -> list[str]:
        """Every band label, youngest first."""
        closed = [f"{lo}-{lo + self.width - 1}" for lo in range(0, self.open_from, self.width)]
        return [*closed, f"{self.open_from}+"]


class SchemaChecks(Frozen):
    # Source columns that are neither mapped nor the record id: "error" stops the run (strict
    # deliveries), "ignore" lets them through (they are listed in the profile and the counts).
    unexpected_columns: Literal["error", "ignore"] = "ignore"
    ignore_columns: list[str] = Field(default_factory=list)  # known extras, allowed even when strict
    # Identifiers (built-in or declared) allowed to have no usable value in a delivery.
    allow_unusable: list[str] = Field(default_factory=list)
    allow_empty: bool = False  # a delivery with no data rows is an error unless this is set


class QuarantineRules(Frozen):
    # A row needs at least this many usable identifiers among nhs_number, given_name,
    # family_name, date_of_birth, postcode (sex alone never identifies anyone).
    min_identifiers: int = Field(1, ge=1, le=32)
    max_fraction: float | None = Field(None, gt=0, le=1)  # stop when more rows than this are quarantined


class DatasetConfig(Frozen):
    """One provider extract: source, record id, column mapping and cleaning rules."""

    name: str
    description: str | None = None
    source: SourceSpec
    record_id: str
    # Kinds of identifiers beyond the six built-in ones, and options of built-in ones
    # (natlink.config.identifiers); declared but not mapped: NULL in this dataset.
    identifiers: dict[str, ids.IdentifierKind] = Field(default_factory=dict)
    columns: dict[str, str]  # identifier name -> source column (built-in names, or declared in identifiers)
    date_format: str | None = None  # one pattern (kept for older configs); or:
    date_formats: list[str] = Field(default_factory=list)  # several, tried in order
    event_columns: dict[str, str] = Field(default_factory=dict)  # output name -> source column (carried as text)
    region: str | None = None  # fixed region for single-region providers
    # The extract holds at most one row per person (a death register, a census): two of its rows
    # are never one person. The linkage centre enforces it as a cannot-link rule when its link
    # config names the dataset (LinkConfig.cannot_link.one_row_per_person; LinkConfig.declaring).
    # Off by default: most extracts (GP lists, hospital episodes) hold duplicates or many rows.
    one_row_per_person: bool = False
    age_band: AgeBandRules | None = None  # derive and keep an age band (see AgeBandRules)
    # The date the extract was taken: dates after it are out_of_range, ages (max_age_years) are
    # reckoned at it. None: the day the delivery is onboarded (UTC). Set it so a rerun, a test or
    # a back-filled delivery flags the same values on any day.
    as_of: dt.date | None = None
    nhs_number: NhsNumberRules = Field(default_factory=NhsNumberRules)
    date_of_birth: DateOfBirthRules = Field(default_factory=DateOfBirthRules)
    names: NameRules = Field(default_factory=NameRules)
    max_length: MaxLength = Field(default_factory=MaxLength)
    schema_checks: SchemaChecks = Field(default_factory=SchemaChecks)
    quarantine: QuarantineRules = Field(default_factory=QuarantineRules)

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        # Becomes a Delta partition value and a folder name.
        if not re.fullmatch(_NAME_RE, value):
            raise ValueError("must be lower-case letters, digits and '_', starting with a letter")
        return value

    @field_validator("identifiers")
    @classmethod
    def _declared(cls, value: dict[str, ids.IdentifierKind]) -> dict[str, ids.IdentifierKind]:
        ids.check_declared(value)
        return value

    @field_validator("columns")
    @classmethod
    def _mapping(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # Checked here, not after the model, so it is reported beside any other key's error.
        known = [*CANONICAL_COLUMNS, *[n for n in info.data.get("identifiers", {}) if n not in CANONICAL_COLUMNS]]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown identifiers {unknown}; built-in: {list(CANONICAL_COLUMNS)}, "
                "others are declared with their kind under identifiers (natlink.config.identifiers)"
            )
        if not set(value) - {C.SEX}:
            raise ValueError("map at least one identifier other than sex")
        sources = list(value.values())
        twice = sorted({s for s in sources if sources.count(s) > 1})
        if twice:
            raise ValueError(f"source columns mapped more than once: {twice}")
        return value

    @field_validator("event_columns")
    @classmethod
    def _events(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in value if not re.fullmatch(_NAME_RE, k))
        if bad:
            raise ValueError(f"event column names {bad} must be lower-case letters, digits and '_'")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(_REGION_RE, value):
            raise ValueError("must be upper-case letters and '_' (it becomes a Delta partition value)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "DatasetConfig":
        known = list(self.identifier_kinds)
        bad = sorted(set(self.schema_checks.allow_unusable) - set(known))
        if bad:
            raise ValueError(f"schema_checks.allow_unusable: not identifiers: {bad}; expected some of {known}")
        if self.date_format is not None and self.date_formats:
            raise ValueError("give date_format or date_formats, not both")
        declared = list(ids.custom(self.identifier_kinds))
        reserved = {C.DATASET, C.RECORD_ID, C.REGION, C.AGE_BAND, *CANONICAL_COLUMNS, *C.DERIVED_COLUMNS,
                    *declared, *[C.flag(n) for n in declared]}
        clash = sorted(set(self.event_columns) & reserved)
        if clash:
            raise ValueError(f"event column names {clash} clash with natlink's own output columns")
        if self.record_id in self.event_columns.values():
            raise ValueError("the record id column cannot also be an event column")
        # An identifier's source column carried as an event column would put plaintext in the token table.
        identifying = {source: canonical for canonical, source in self.columns.items()}
        leaks = sorted(f"{out} <- {src} (mapped as {identifying[src]})" for out, src in self.event_columns.items() if src in identifying)
        if leaks:
            raise ValueError(f"event columns read identifier source columns: {leaks}; identifiers are never carried as events")
        if self.record_id in identifying:
            raise ValueError(f"the record id column is mapped as {identifying[self.record_id]}: a record id must not be an identifier")
        return self

    @property
    def identifier_kinds(self) -> dict[str, ids.IdentifierKind]:
        """Every identifier with its resolved kind: the six built-ins, then the declared ones."""
        return ids.resolve(self.identifiers)

    @property
    def declared_identifiers(self) -> dict[str, ids.IdentifierKind]:
        """The identifiers beyond the six built-in ones (standardised and tokenised by kind)."""
        return ids.custom(self.identifier_kinds)

    def date_formats_of(self, name: str) -> list[str]:
        """Patterns of a date identifier: its own ``formats``, else the dataset's."""
        return list(self.identifier_kinds[name].formats) or self.dob_formats

    @property
    def dob_formats(self) -> list[str]:
        """Date-of-birth patterns to try in order (Spark datetime patterns)."""
        if self.date_formats:
            return list(self.date_formats)
        return [self.date_format or "yyyy-MM-dd"]

    def kept_columns(self) -> list[str]:
        """Non-identifying columns carried into the token table: event columns, then the age band."""
        return [*self.event_columns, *([C.AGE_BAND] if self.age_band is not None else [])]

    def source_columns(self) -> list[str]:
        """Every source column the mapping reads, record id first."""
        return [self.record_id, *self.columns.values(), *self.event_columns.values()]


def load_dataset(path: str | Path, *, base_dir: str | Path | None = None) -> DatasetConfig:
    """Load and validate one dataset YAML (errors name the file and the key)."""
    return load(path, DatasetConfig, base_dir=base_dir)


def source_path(cfg: DatasetConfig, data_dir: str | None = None) -> str:
    """The dataset's source path with ``{data_dir}`` filled in."""
    if "{data_dir}" in cfg.source.path and data_dir is None:
        raise ConfigError(f"dataset {cfg.name!r}: source path uses {{data_dir}} but no data directory was given")
    return cfg.source.path.replace("{data_dir}", str(data_dir or ""))
