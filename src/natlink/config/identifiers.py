"""Identifier kinds: what a dataset's identifiers are, so that any columns can be linked.

A dataset maps its columns to *identifiers* by name (``columns:`` in ``conf/datasets/*.yaml``).
Each identifier has a *kind*, which decides how it is cleaned at the provider, how it is
normalised before hashing and which tokens it yields (``tk_<name>`` and its variants). The
model's comparisons and blocking rules name those tokens, so they are written against
identifier names.

Six identifiers are built in, with the UK meanings natlink started with (their cleaning, tokens
and key purposes are exactly those of earlier versions):

=================  ===========  ===================================================
name               kind         options
=================  ===========  ===================================================
``nhs_number``     person_id    ``check_digit: modulus11`` (NHS, CHI and H&C numbers)
``given_name``     given_name
``family_name``    family_name
``date_of_birth``  date         (the dataset's ``date_formats`` and ``date_of_birth`` rules)
``sex``            sex
``postcode``       postcode     ``format: uk`` (Royal Mail pattern); ``free`` for other countries
=================  ===========  ===================================================

Any other identifier is declared in the dataset's ``identifiers:`` section with its kind::

    identifiers:
      soc_sec_id: {kind: person_id, check_digit: none}
      address_1: {kind: address}
      state: {kind: category}
      postcode: {format: free}          # the built-in postcode, without the UK pattern

Kinds of declared identifiers and the tokens each yields (``tk_`` + these names):

* ``person_id``: ``<name>``. ``check_digit``: ``none`` (default) or ``modulus11`` (10 digits,
  weights 10..2, as NHS/CHI/H&C numbers).
* ``date``: ``<name>``, ``<name>_swapped`` (day and month swapped, comparable with ``<name>``),
  ``<name>_year``, ``<name>_month``, ``<name>_day``. ``formats``: patterns tried in order
  (default: the dataset's ``date_formats``).
* ``postcode``: ``<name>``; with ``format: uk`` also ``<name>_sector`` and ``<name>_district``.
* ``address``: free text (a street, a locality, a house number): ``<name>``, ``<name>_soundex``,
  ``<name>_nysiis`` (phonetic codes of its letters).
* ``category``: any categorical value (a state, an ethnicity code): ``<name>``.

``given_name``, ``family_name`` and ``sex`` are served by the built-in identifiers of those names.
"""

from __future__ import annotations

import re
from typing import Literal, Mapping

from pydantic import Field, model_validator

from natlink import columns as C
from natlink.config.base import Frozen

__all__ = [
    "BUILTIN",
    "BUILTIN_TOKEN_NAMES",
    "CUSTOM_KINDS",
    "DEFAULT_MAX_LENGTH",
    "IdentifierKind",
    "LINKING_KINDS",
    "check_declared",
    "custom",
    "resolve",
    "token_names",
]

Kind = Literal["person_id", "given_name", "family_name", "date", "sex", "postcode", "address", "category"]
CUSTOM_KINDS: tuple[str, ...] = ("person_id", "date", "postcode", "address", "category")
# Kinds whose value helps tell people apart on its own (a category, like sex, never does): a row
# needs at least one usable identifier of these kinds (quarantine.min_identifiers).
LINKING_KINDS: tuple[str, ...] = ("person_id", "given_name", "family_name", "date", "postcode", "address")
DEFAULT_MAX_LENGTH: dict[str, int] = {"person_id": 32, "date": 40, "postcode": 16, "address": 255, "category": 64}

# Token names of the built-in identifiers (natlink.tokens.encode.TOKEN_SPECS; a test keeps them equal).
BUILTIN_TOKEN_NAMES: frozenset[str] = frozenset({
    "nhs_number", "given_name", "given_initial", "given_soundex", "given_nysiis", "family_name",
    "family_initial", "family_soundex", "family_nysiis", "dob", "dob_swapped", "dob_year", "dob_month",
    "dob_day", "sex", "postcode", "postcode_sector", "postcode_district",
})
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")  # no '__': salted columns are tk_<field>__r<i>
_RESERVED = frozenset({"block", C.DATASET, C.RECORD_ID, C.REGION, C.AGE_BAND, C.UNIQUE_ID, C.PERSON_ID, C.TRUE_PERSON_ID})


class IdentifierKind(Frozen):
    """The kind of one identifier and its options (each option belongs to one kind)."""

    kind: Kind | None = None  # may be omitted for a built-in identifier (its own kind)
    check_digit: Literal["none", "modulus11"] | None = None  # person_id
    format: Literal["uk", "free"] | None = None  # postcode
    formats: list[str] = Field(default_factory=list)  # date: Spark datetime patterns, tried in order
    max_length: int | None = Field(None, ge=1, le=1 << 24)  # declared identifiers: longest raw value cleaned

    @model_validator(mode="after")
    def _options_of_kind(self) -> "IdentifierKind":
        owners = {"check_digit": "person_id", "format": "postcode", "formats": "date"}
        for option, kind in owners.items():
            if getattr(self, option) and self.kind is not None and self.kind != kind:
                raise ValueError(f"'{option}' applies to kind {kind} only, not {self.kind}")
        return self

    @property
    def check_digit_rule(self) -> str:
        return self.check_digit or "none"

    @property
    def postcode_format(self) -> str:
        return self.format or "uk"

    def variants(self) -> tuple[str, ...]:
        """Token variants of a declared identifier of this kind ('' is the value itself)."""
        if self.kind == "date":
            return ("", "swapped", "year", "month", "day")
        if self.kind == "postcode":
            return ("", "sector", "district") if self.postcode_format == "uk" else ("",)
        if self.kind == "address":
            return ("", "soundex", "nysiis")
        return ("",)

    def described(self) -> dict:
        """Kind and the options that are set (recorded in manifests; providers must agree)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True, exclude={"max_length"})


BUILTIN: dict[str, IdentifierKind] = {
    C.NHS_NUMBER: IdentifierKind(kind="person_id", check_digit="modulus11"),
    C.GIVEN_NAME: IdentifierKind(kind="given_name"),
    C.FAMILY_NAME: IdentifierKind(kind="family_name"),
    C.DATE_OF_BIRTH: IdentifierKind(kind="date"),
    C.SEX: IdentifierKind(kind="sex"),
    C.POSTCODE: IdentifierKind(kind="postcode", format="uk"),
}


def token_names(name: str, kind: IdentifierKind) -> list[str]:
    """Token names (without ``tk_``) a *declared* identifier yields."""
    return [name if not v else f"{name}_{v}" for v in kind.variants()]


def check_declared(declared: Mapping[str, IdentifierKind]) -> None:
    """Refuse declarations that would clash with built-in identifiers, tokens or each other."""
    seen: dict[str, str] = {}
    for name, kind in declared.items():
        if name in BUILTIN:
            builtin = BUILTIN[name]
            if kind.kind not in (None, builtin.kind):
                raise ValueError(f"{name}: the built-in identifier is of kind {builtin.kind}, not {kind.kind}")
            if name == C.NHS_NUMBER and kind.check_digit not in (None, "modulus11"):
                raise ValueError(f"{name}: the NHS number is always checked by modulus 11; declare another person_id identifier for ids without it")
            if name == C.DATE_OF_BIRTH and kind.formats:
                raise ValueError(f"{name}: give its patterns in the dataset's date_formats")
            if kind.max_length is not None:
                raise ValueError(f"{name}: set the built-in identifiers' limits in max_length")
            if name != C.POSTCODE and kind.model_dump(exclude_none=True, exclude_defaults=True).keys() - {"kind", "check_digit"}:
                raise ValueError(f"{name}: only the built-in postcode takes options here (format)")
            continue
        if not _NAME.match(name) or len(name) > 48:
            raise ValueError(f"{name!r}: an identifier name is lower-case letters and digits in words joined by single '_' (at most 48)")
        if name in _RESERVED or name in C.DERIVED_COLUMNS:
            raise ValueError(f"{name!r} is one of natlink's own column names")
        if kind.kind is None:
            raise ValueError(f"{name}: give its kind, one of {list(CUSTOM_KINDS)}")
        if kind.kind not in CUSTOM_KINDS:
            raise ValueError(f"{name}: kind {kind.kind} has one identifier, the built-in {kind.kind}; declared identifiers are of kinds {list(CUSTOM_KINDS)}")
        for token in token_names(name, kind):
            if token in BUILTIN_TOKEN_NAMES or token in _RESERVED:
                raise ValueError(f"{name}: its token tk_{token} is a built-in token name; choose another name")
            if token in seen:
                raise ValueError(f"{name}: its token tk_{token} is also a token of {seen[token]}")
            seen[token] = name


def resolve(declared: Mapping[str, IdentifierKind]) -> dict[str, IdentifierKind]:
    """Every identifier of a dataset with its resolved kind: the six built-ins (with any options
    the declarations give them), then the declared ones in order."""
    out = {}
    for name, kind in BUILTIN.items():
        override = declared.get(name)
        out[name] = kind if override is None else kind.model_copy(update=override.model_dump(exclude_none=True, exclude_defaults=True) | {"kind": kind.kind})
    out.update({n: k for n, k in declared.items() if n not in BUILTIN})
    return out


def custom(identifiers: Mapping[str, IdentifierKind]) -> dict[str, IdentifierKind]:
    """The declared (not built-in) identifiers among ``identifiers``."""
    return {n: k for n, k in identifiers.items() if n not in BUILTIN}
