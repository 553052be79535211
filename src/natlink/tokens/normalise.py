"""Native normalisation of identifiers before hashing, and the phonetic codes of names.

Tokens must not depend on the standardiser, so values are normalised again here, natively (no
Python UDFs): Unicode NFC (ICU, bundled with Spark) and upper case, whitespace collapsed,
'' -> NULL; NHS numbers lose spaces and hyphens; postcodes are re-spaced as ``OUTWARD INWARD``.
Phonetic codes (Soundex, a NYSIIS-like code) work on the letters of a name, accents stripped.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.config.identifiers import BUILTIN, IdentifierKind

__all__ = [
    "DATE_TYPES",
    "letters",
    "normalise_code",
    "normalise_free_postcode",
    "normalise_free_text",
    "normalise_identifiers",
    "normalise_person_id",
    "normalise_nhs_number",
    "normalise_postcode",
    "normalise_text",
    "normaliser",
    "nysiis",
    "postcode_district",
    "postcode_sector",
    "soundex",
]

# The types a date of birth may have when it reaches tokenise (standardise parses dates).
DATE_TYPES = (T.DateType, T.TimestampType, T.TimestampNTZType)
_ICU_NORMALIZER = "com.ibm.icu.text.Normalizer"


def _icu(method: str, col: Column) -> Column:
    # reflect() is non-deterministic to Spark, so callers materialise its result in one projection.
    return F.when(col.isNotNull(), F.reflect(F.lit(_ICU_NORMALIZER), F.lit(method), col, F.lit(False)))


def _is_ascii(col: Column) -> Column:
    # Cheap test that lets ASCII values (most of them) skip the ICU calls.
    return F.octet_length(col) == F.length(col)


def _empty_to_null(col: Column) -> Column:
    return F.when(col != "", col)


def normalise_text(col: Column) -> Column:
    """NFC, upper case, whitespace (incl. Unicode spaces) collapsed and trimmed, '' -> NULL."""
    spaced = F.regexp_replace(F.regexp_replace(col, r"[\s\p{Z}]+", " "), r"^ | $", "")
    upper = F.when(_is_ascii(spaced), F.upper(spaced)).otherwise(_icu("compose", F.upper(_icu("compose", spaced))))
    return _empty_to_null(upper)


def normalise_nhs_number(col: Column) -> Column:
    return _empty_to_null(F.regexp_replace(col, r"[\s\p{Z}\-]", ""))


def normalise_person_id(col: Column) -> Column:
    """Upper case, whitespace and hyphens removed, '' -> NULL (an id of any scheme)."""
    return _empty_to_null(F.upper(F.regexp_replace(col, r"[\s\p{Z}\-]", "")))


def normalise_free_text(col: Column) -> Column:
    """Free text (an address line): as :func:`normalise_text`, punctuation and symbols made spaces
    first (``ST. JOHN'S RD`` -> ``ST JOHN S RD``)."""
    return normalise_text(F.regexp_replace(col, r"[\p{P}\p{S}]", " "))


def normalise_free_postcode(col: Column) -> Column:
    """A postcode of no fixed shape: upper case, letters and digits only ('2000', 'D02X285')."""
    return _empty_to_null(F.regexp_replace(F.upper(col), r"[^\p{L}\p{N}]", ""))


def normalise_code(col: Column) -> Column:
    return _empty_to_null(F.upper(F.trim(col)))


def normalise_postcode(col: Column) -> Column:
    """``OUTWARD INWARD`` for 5-7 alphanumerics (the UK shapes); otherwise the compact form."""
    compact = F.regexp_replace(F.upper(col), r"[^A-Z0-9]", "")
    n = F.length(compact)
    outward = F.substring(compact, F.lit(1), n - 3)
    spaced = F.concat(outward, F.lit(" "), F.substring(compact, -3, 3))
    return _empty_to_null(F.when((n >= 5) & (n <= 7), spaced).otherwise(compact))


def postcode_district(col: Column) -> Column:
    """The outward code of a normalised postcode ``OUTWARD INWARD``; NULL unless it has that shape."""
    return F.when(col.contains(" "), F.substring_index(col, " ", 1))


def postcode_sector(col: Column) -> Column:
    """Outward code, a space and the first inward character; NULL unless the postcode has that shape."""
    inward = F.substring_index(col, " ", -1)
    return F.when(col.contains(" "), F.concat(F.substring_index(col, " ", 1), F.lit(" "), F.substring(inward, 1, 1)))


def letters(col: Column) -> Column:
    """A-Z only, accents stripped (NFD, marks removed): the input of phonetic codes."""
    stripped = F.when(_is_ascii(col), col).otherwise(F.regexp_replace(_icu("decompose", col), r"\p{M}", ""))
    return _empty_to_null(F.regexp_replace(stripped, r"[^A-Z]", ""))


def soundex(col: Column, *, letters_of: Column | None = None) -> Column:
    """Spark's Soundex of the letters of a normalised name (``letters_of``: precomputed letters)."""
    return F.soundex(letters(col) if letters_of is None else letters_of)


def nysiis(col: Column, *, letters_of: Column | None = None) -> Column:
    """A native approximation of NYSIIS (New York State Identification and Intelligence System).

    Follows the published rules with regular expressions: prefix and suffix translations,
    vowels to A, consonant folds, H/W dropped where NYSIIS copies the previous letter, runs
    collapsed, final S / A removed and final AY -> Y. Not truncated. It is a blocking and
    comparison aid, not a reference implementation.
    """
    x = letters(col) if letters_of is None else letters_of
    for pattern, repl in ((r"^MAC", "MCC"), (r"^KN", "NN"), (r"^K", "C"), (r"^P[HF]", "FF"), (r"^SCH", "SSS")):
        x = F.regexp_replace(x, pattern, repl)
    x = F.regexp_replace(F.regexp_replace(x, r"(EE|IE)$", "Y"), r"(DT|RT|RD|NT|ND)$", "D")
    first = F.substring(x, 1, 1)
    rest = F.regexp_replace(x, r"^.", "")
    for pattern, repl in (
        (r"EV", "AF"), (r"[AEIOU]", "A"), (r"Q", "G"), (r"Z", "S"), (r"M", "N"), (r"KN", "N"),
        (r"K", "C"), (r"SCH", "SSS"), (r"PH", "FF"), (r"(?<=[^A])H|H(?=[^A]|$)", ""), (r"(?<=A)W", ""),
    ):
        rest = F.regexp_replace(rest, pattern, repl)
    code = F.regexp_replace(F.concat(first, rest), r"(.)\1+", "$1")
    code = F.regexp_replace(F.regexp_replace(code, r"S$", ""), r"AY$", "Y")
    return _empty_to_null(F.regexp_replace(code, r"(?<=.)A$", ""))


_NORMALISERS: dict[str, Callable[[Column], Column]] = {
    C.NHS_NUMBER: normalise_nhs_number,
    C.GIVEN_NAME: normalise_text,
    C.FAMILY_NAME: normalise_text,
    C.SEX: normalise_code,
    C.POSTCODE: normalise_postcode,
}


_BY_KIND: dict[str, Callable[[Column], Column]] = {
    "person_id": normalise_person_id,
    "address": normalise_free_text,
    "category": normalise_text,
}


def normaliser(name: str, kind: IdentifierKind) -> Callable[[Column], Column]:
    """The tokenise-time normalisation of identifier ``name`` of ``kind`` (text in, text out;
    dates are handled by :func:`normalise_identifiers`)."""
    if kind.kind == "postcode":
        return normalise_postcode if kind.postcode_format == "uk" else normalise_free_postcode
    if name in _NORMALISERS:
        return _NORMALISERS[name]
    return _BY_KIND[str(kind.kind)]


def normalise_identifiers(
    df: DataFrame, columns: Iterable[str] | None = None, kinds: Mapping[str, IdentifierKind] | None = None
) -> list[Column]:
    """Normalised identifier columns (same names) of ``df``, for one projection. ``kinds``: the
    dataset's identifiers (:attr:`natlink.config.datasets.DatasetConfig.identifier_kinds`);
    None: the six built-in ones."""
    kinds = BUILTIN if kinds is None else kinds
    out = []
    for name in columns if columns is not None else [c for c in kinds if c in df.columns]:
        if kinds[name].kind == "date":
            out.append(F.to_date(F.col(name)).alias(name))
        else:
            out.append(normaliser(name, kinds[name])(F.col(name).cast("string")).alias(name))
    return out
