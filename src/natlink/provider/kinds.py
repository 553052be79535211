"""Cleaning of declared identifiers (:mod:`natlink.config.identifiers`) by kind, natively.

The six built-in identifiers are cleaned by :mod:`natlink.provider.standardise`; every other
identifier a dataset declares is cleaned here by its kind, in the same three steps (so each
expression runs once per row): the raw text (nulled, flag ``too_long``, when longer than its
``max_length``), then the flag (why a present value is not used), then the value (NULL when
flagged). Rules per kind:

* ``person_id``: upper case, spaces and hyphens removed; ``bad_format`` unless letters and digits
  only; ``placeholder`` when one character repeated (``0000000``); with ``check_digit:
  modulus11``: ``bad_format`` unless 10 digits, ``bad_check_digit`` when the modulus 11 check fails.
* ``date``: the identifier's ``formats`` (else the dataset's) in order; ``impossible`` (31/02),
  ``unparseable``, ``out_of_range`` (after the as-of date).
* ``postcode``: ``format: uk`` as the built-in postcode (Royal Mail pattern, ``OUTWARD INWARD``);
  ``free``: upper case, letters and digits only.
* ``address``: Unicode NFC, upper case, punctuation and symbols made spaces, whitespace collapsed.
* ``category``: upper case, whitespace collapsed.

Every reason a flag can hold is in :func:`reasons` (the counts report each, even at 0).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.datasets import DatasetConfig
from natlink.config.identifiers import DEFAULT_MAX_LENGTH, IdentifierKind
from natlink.provider import cleaning as S

__all__ = ["reasons", "max_length", "text_stage", "parse_stage", "flag_stage", "value_stage"]

_REASONS: dict[str, tuple[str, ...]] = {
    "person_id": ("bad_format", "placeholder", "bad_check_digit", "too_long"),
    "date": ("unparseable", "impossible", "out_of_range", "too_long"),
    "postcode": ("pseudo", "invalid", "too_long"),
    "address": ("too_long",),
    "category": ("too_long",),
}


def reasons(kind: IdentifierKind) -> tuple[str, ...]:
    return _REASONS[str(kind.kind)]


def max_length(kind: IdentifierKind) -> int:
    return kind.max_length or DEFAULT_MAX_LENGTH[str(kind.kind)]


def _text(name: str) -> str:
    return f"_kind_text_{name}"


def _parsed(name: str) -> str:
    return f"_kind_date_{name}"


def _long(name: str) -> str:
    return f"_kind_long_{name}"


def _raw_text(raw: Column, kind: IdentifierKind) -> Column:
    text = raw.cast("string")
    if kind.kind == "person_id":
        return S.blank_to_null(F.upper(F.regexp_replace(text, r"[\s\p{Z}\-]", "")))
    if kind.kind == "postcode":
        return S.postcode_compact(text)
    if kind.kind == "address":
        return S.blank_to_null(F.regexp_replace(F.upper(S.nfc(F.regexp_replace(text, r"[\p{P}\p{S}]", " "))), r"[\s\p{Z}]+", " "))
    if kind.kind == "category":
        return S.blank_to_null(F.regexp_replace(F.upper(text), r"[\s\p{Z}]+", " "))
    return S.blank_to_null(text)  # date


def text_stage(cfg: DatasetConfig, source_type: dict[str, str]) -> list[Column]:
    """Stage one: per declared identifier, whether it is too long and its raw text (NULL when too long)."""
    out = []
    for name, kind in cfg.declared_identifiers.items():
        if name not in cfg.columns:
            out += [F.lit(False).alias(_long(name)), F.lit(None).cast("string").alias(_text(name))]
            continue
        raw = F.col(f"`{cfg.columns[name]}`")
        long = S.too_long(raw, max_length(kind))
        if kind.kind == "date" and source_type.get(name) in ("date", "timestamp", "timestamp_ntz"):
            text = raw.cast("date").cast("string")
        else:
            text = _raw_text(raw, kind)
        out += [F.coalesce(long, F.lit(False)).alias(_long(name)), S.bounded(long, text).alias(_text(name))]
    return out


def parse_stage(cfg: DatasetConfig) -> list[Column]:
    """Stage two: dates parsed with their patterns."""
    return [
        S.parse_date(F.col(_text(n)), cfg.date_formats_of(n)).alias(_parsed(n))
        for n, k in cfg.declared_identifiers.items() if k.kind == "date"
    ]


def _person_id_flag(long: Column, text: Column, kind: IdentifierKind) -> Column:
    flag = (
        F.when(long, F.lit("too_long"))
        .when(text.isNull(), F.lit(None))
        .when(~text.rlike(r"^[A-Z0-9]+$"), F.lit("bad_format"))
        .when((F.length(text) > 1) & (text == F.repeat(F.substring(text, 1, 1), F.length(text))), F.lit("placeholder"))
    )
    if kind.check_digit_rule == "modulus11":
        last = F.ascii(F.substring(text, 10, 1)) - 48
        flag = flag.when(~text.rlike(r"^[0-9]{10}$"), F.lit("bad_format")).when(S.nhs_check_digit(text) != last, F.lit("bad_check_digit"))
    return flag


def _flag(name: str, kind: IdentifierKind, as_of: dt.date) -> Column:
    long, text = F.col(_long(name)), F.col(_text(name))
    if kind.kind == "person_id":
        return _person_id_flag(long, text, kind)
    if kind.kind == "date":
        parsed = F.col(_parsed(name))
        return (
            F.when(long, F.lit("too_long"))
            .when(text.isNull(), F.lit(None))
            .when(parsed.isNull() & text.rlike(r"^[0-9]{1,4}[-/. ][0-9]{1,2}[-/. ][0-9]{1,4}$|^[0-9]{8}$"), F.lit("impossible"))
            .when(parsed.isNull(), F.lit("unparseable"))
            .when(parsed > F.lit(as_of), F.lit("out_of_range"))
        )
    if kind.kind == "postcode" and kind.postcode_format == "uk":
        return S.postcode_flag(long, text)
    return F.when(long, F.lit("too_long"))


def flag_stage(cfg: DatasetConfig, as_of: dt.date) -> list[Column]:
    """Stage three: per declared identifier, why a present value is not used (NULL: used or blank)."""
    return [_flag(n, k, as_of).alias(C.flag(n)) for n, k in cfg.declared_identifiers.items()]


def value_stage(cfg: DatasetConfig) -> dict[str, Column]:
    """The clean value of every declared identifier (NULL when flagged), by name."""
    out = {}
    for name, kind in cfg.declared_identifiers.items():
        ok = F.col(C.flag(name)).isNull()
        if kind.kind == "date":
            value = F.col(_parsed(name))
        elif kind.kind == "postcode" and kind.postcode_format == "uk":
            value = S.format_postcode(F.col(_text(name)))
        else:
            value = F.col(_text(name))
        out[name] = F.when(ok, value)
    return out
