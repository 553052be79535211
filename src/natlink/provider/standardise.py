"""Cleaning of raw provider extracts into natlink's canonical columns (native Spark only).

Column -> Column helpers plus :func:`standardise`, a DataFrame -> DataFrame transform whose final
``select`` is its schema contract. Empty values become NULL, never ''. A value that is present in
the source but cannot be used (a wrong NHS number check digit, a placeholder date of birth, a
ZZ99 pseudo-postcode, ...) becomes NULL and its ``<column>_flag`` says why; the flag is NULL when
the value was used or was blank in the source. Junk hashed into a linking token would create
false links between strangers, so nothing doubtful is passed on.

Every raw identifier is measured first: one longer than the dataset's ``max_length`` for its
column is nulled with the flag ``too_long`` and no cleaning runs on it. Every rule below is linear
in the value's length (no regex that backtracks over a run, or recurses per repeat).

Rules, per column (references in ``natlink/data/README.md``):

* names: Unicode NFC (ICU4J, shipped with Spark), upper case, apostrophes removed, whitespace of
  any kind (no-break, thin and ideographic spaces, tabs) and other punctuation made word
  separators, leading titles (MR, DR, ...) stripped; given names split into
  ``given_name`` (the first) and ``given_name_other`` (the rest); family names compacted
  (``SMITH-JONES`` = ``SMITH JONES`` = ``SMITHJONES``) with the first and last parts of multi-part
  names kept in ``family_name_first`` / ``family_name_last``. Known placeholders (UNKNOWN, BABY,
  XXX, ...) are nulled. A character that is part of no name (a digit, a symbol or emoji, a
  control or format character) is never dropped: the value is flagged ``invalid_characters``.
* date of birth: the configured patterns in order; calendar-impossible dates (31/02), dates after
  the as-of (delivery) date (``out_of_range``), implausible dates (before ``earliest``, 1900-01-01
  by default, or more than ``max_age_years``, 120, old at the as-of date: ``implausible_date``)
  and placeholders (1900-01-01, and per dataset e.g. 01/01/YYYY) are nulled.
* sex: NHS data dictionary person gender codes (0 not known, 1 male, 2 female, 9 not specified)
  and common spellings -> 'M' / 'F'; not known, not specified and unrecognised codes are counted.
* NHS number: 10 digits after removing spaces and hyphens, modulus 11 check digit (weights 10..2;
  11 -> 0; 10 -> invalid), the test range 999 000 0000 - 999 999 9999 rejected unless allowed,
  repeated-digit fillers rejected.
* postcode: upper case, one space before the inward code, validated against the Royal Mail
  format; ZZ99 pseudo-postcodes nulled (their nation kept for the region); area, district
  (= outward code) and sector derived.
* age band (when the dataset config asks for one): whole years of age at a fixed reference date
  in 10-year bands (``"40-49"``, ``"90+"``), from the cleaned date of birth; kept through
  tokenise as a non-identifying column, while the date of birth itself is not.
* region: from the postcode area (``natlink/data/postcode_areas.csv``), else the nation of a ZZ99
  code, else ``UNKNOWN``; a dataset's fixed region wins.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from functools import lru_cache
from importlib import resources

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.datasets import AgeBandRules, DatasetConfig, DateOfBirthRules, NameRules, NhsNumberRules
from natlink.provider import kinds
from natlink.provider.cleaning import (
    blank_to_null,
    bounded,
    format_postcode,
    nfc,
    nhs_check_digit,
    parse_date,
    postcode_compact,
    postcode_flag,
    too_long,
)

__all__ = [
    "UNKNOWN_REGION",
    "DERIVED_COLUMNS",
    "FLAG_COLUMNS",
    "REASONS",
    "blank_to_null",
    "nfc",
    "too_long",
    "bounded",
    "name_text",
    "clean_name",
    "name_problem",
    "strip_titles",
    "nhs_digits",
    "nhs_check_digit",
    "parse_date",
    "oldest_plausible",
    "sex_code",
    "sex_value",
    "postcode_compact",
    "format_postcode",
    "postcode_area",
    "region",
    "region_lookup",
    "age_band",
    "regions",
    "standardise",
    "output_columns",
]

UNKNOWN_REGION = "UNKNOWN"

DERIVED_COLUMNS = C.DERIVED_COLUMNS
FLAG_COLUMNS: tuple[str, ...] = tuple(C.flag(c) for c in C.IDENTIFIERS)

# Every reason a flag column can hold (the counts and the profile report each one, even at 0).
# ``too_long`` (longer than the dataset's ``max_length``) is checked before any cleaning runs.
REASONS: dict[str, tuple[str, ...]] = {
    C.NHS_NUMBER: ("bad_format", "placeholder", "bad_check_digit", "test_range", "too_long"),
    C.GIVEN_NAME: ("placeholder", "title_only", "invalid", "invalid_characters", "too_long"),
    C.FAMILY_NAME: ("placeholder", "invalid", "invalid_characters", "too_long"),
    C.DATE_OF_BIRTH: ("unparseable", "impossible", "out_of_range", "placeholder", "implausible_date", "too_long"),
    C.SEX: ("not_known", "not_specified", "unrecognised", "too_long"),
    C.POSTCODE: ("pseudo", "invalid", "too_long"),
}

# ---------------------------------------------------------------------------------------------
# Generic helpers


def _alternation(words: list[str]) -> str:
    # Longest first, so "RT HON" wins over "HON"; words are validated as [A-Z ]+ in the config.
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def _in(col: Column, values: list[str]) -> Column:
    return col.isin(*values) if values else F.lit(False)


# ---------------------------------------------------------------------------------------------
# Names
#
# The helpers below take the intermediate columns of earlier stages (see standardise()), so
# each expensive expression runs once per row: Spark does not merge a select into the next
# when that would repeat a non-trivial expression, and the stages rely on it.

_APOSTROPHES = "'\u2018\u2019\u02bc`\u00b4"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_SUFFIXES = ("JR", "JNR", "SNR", "II", "III", "IV")
_MAX_TITLES = 16  # leading titles stripped at most (a bounded loop: Java's regex recurses per repeat)

# One rule for the characters of a name (after NFC, upper case, apostrophes removed and dashes
# made '-'): letters and combining marks are the name; whitespace of any kind (Unicode
# White_Space: no-break, thin and ideographic spaces, tabs, line breaks) and punctuation separate
# its words; anything else (digits, symbols and emoji, control and format characters, private
# use and unassigned code points) is part of no name and flags the value ``invalid_characters``.
# Nothing is dropped silently. Every pattern here is a single character class, with at most a
# greedy run of one class, so matching is linear in the value's length and never recurses
# (a repeated group such as ``(?: [A-Z]+)*`` recurses once per repeat in Java and overflows the
# stack on a long value; ``\s*-`` tried at every position of a long run of spaces is quadratic).
_NOT_IN_NAME = r"[^\p{L}\p{M}\p{P}\p{IsWhite_Space}]"
_SEPARATORS = r"[\p{P}\p{IsWhite_Space}&&[^-]]+"
_NOT_WHITESPACE = r"\P{IsWhite_Space}"
_PLAIN = r"[^A-Z ]"  # with no double space: already clean


def _plain(up: Column) -> Column:
    return (up != "") & ~up.rlike(_PLAIN) & ~up.contains("  ")


def name_text(col: Column) -> Column:
    """Stage one of a name: NFC, upper case, apostrophes removed, dashes made '-'; NULL when
    blank. Plain values (A-Z words separated by single spaces, most names) are returned as they
    are, skipping ICU."""
    up = F.upper(F.trim(col.cast("string")))
    text = F.translate(F.translate(F.upper(nfc(up)), _APOSTROPHES, ""), _DASHES, "-" * len(_DASHES))
    return F.when(up == "", F.lit(None)).when(_plain(up), up).otherwise(text)


def clean_name(text: Column) -> Column:
    """Stage two, from :func:`name_text`: punctuation and whitespace of any kind made word
    separators, hyphens kept (separators around them removed), separators collapsed and trimmed.
    Whitespace only -> NULL; nothing but punctuation -> '' (flagged ``invalid``). Characters that
    are part of no name are kept here and flagged by :func:`name_problem`."""
    s = F.regexp_replace(text, _SEPARATORS, " ")
    s = F.regexp_replace(s, r" ?-[ -]*", "-")  # every separator run holding a hyphen -> one hyphen
    s = F.trim(s, F.lit(" -"))
    return F.when(_plain(text), text).when(~text.rlike(_NOT_WHITESPACE), F.lit(None)).otherwise(s)


def name_problem(text: Column, long: Column) -> Column:
    """``too_long`` or ``invalid_characters`` (a digit, symbol, emoji, control or format
    character ...), else NULL."""
    bad = F.when(_plain(text), F.lit(False)).otherwise(text.rlike(_NOT_IN_NAME))
    return F.when(long, F.lit("too_long")).when(bad, F.lit("invalid_characters"))


def strip_titles(base: Column, titles: list[str]) -> Column:
    """Leading titles removed ('MR JOHN' -> 'JOHN'); a title alone is kept (see the flags)."""
    if not titles:
        return base
    first_word = F.substring_index(base, " ", 1)
    starts = sorted({t.split(" ", 1)[0] for t in titles})
    stripped = F.regexp_replace(base, rf"^(?:(?:{_alternation(titles)}) ){{1,{_MAX_TITLES}}}(?=\S)", "")
    # The regex only runs when the first word can start a title (a hash-set test otherwise).
    return F.when(first_word.isin(*starts), stripped).otherwise(base)


def strip_suffixes(name: Column) -> Column:
    """A trailing JR / SNR / III ... removed from a multi-word family name."""
    last_word = F.substring_index(F.translate(name, "-", " "), " ", -1)
    stripped = F.regexp_replace(name, rf"(?<=\S)[ -](?:{'|'.join(_SUFFIXES)})$", "")
    return F.when(last_word.isin(*_SUFFIXES) & (last_word != name), stripped).otherwise(name)


def given_name_flag(problem: Column, base: Column, stripped: Column, first: Column, rules: NameRules) -> Column:
    return (
        F.when(problem.isNotNull(), problem)
        .when(base.isNull(), F.lit(None))
        .when(base == "", F.lit("invalid"))
        .when(_in(base, rules.titles), F.lit("title_only"))
        .when(_in(stripped, rules.placeholders) | _in(first, rules.placeholders), F.lit("placeholder"))
    )


def family_name_flag(problem: Column, base: Column, stripped: Column, compact: Column, rules: NameRules) -> Column:
    return (
        F.when(problem.isNotNull(), problem)
        .when(base.isNull(), F.lit(None))
        .when(base == "", F.lit("invalid"))
        .when(_in(stripped, rules.placeholders) | _in(compact, rules.placeholders), F.lit("placeholder"))
    )


# ---------------------------------------------------------------------------------------------
# NHS number


def nhs_digits(col: Column, source_type: str = "string") -> Column:
    """The NHS number as text with spaces and hyphens removed; blank -> NULL."""
    if source_type in ("tinyint", "smallint", "int", "bigint") or source_type.startswith("decimal"):
        # Integer columns lose leading zeros (CHI numbers start with 0-3): pad back to 10 digits.
        # try_cast: an ANSI cast error would print the offending value (an identifier).
        text = F.lpad(col.try_cast("decimal(20,0)").cast("string"), 10, "0")
    else:
        text = col.cast("string")
    return blank_to_null(F.translate(text, " -\t", ""))


def nhs_number_flag(long: Column, digits: Column, rules: NhsNumberRules) -> Column:
    flag = (
        F.when(long, F.lit("too_long"))
        .when(digits.isNull(), F.lit(None))
        .when(~digits.rlike(r"^[0-9]{10}$"), F.lit("bad_format"))
    )
    if rules.reject_repeated_digits:
        flag = flag.when(digits == F.repeat(F.substring(digits, 1, 1), 10), F.lit("placeholder"))
    last = F.ascii(F.substring(digits, 10, 1)) - 48
    flag = flag.when(nhs_check_digit(digits) != last, F.lit("bad_check_digit"))  # 10 never equals a digit
    if not rules.allow_test_range:
        flag = flag.when(digits.startswith("999"), F.lit("test_range"))
    return flag


# ---------------------------------------------------------------------------------------------
# Date of birth

_DATE_SHAPE = r"^[0-9]{1,4}[-/. ][0-9]{1,2}[-/. ][0-9]{1,4}$|^[0-9]{8}$"


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February -> 28 February
        return day.replace(year=day.year - years, day=28)


def oldest_plausible(rules: DateOfBirthRules, as_of: dt.date) -> dt.date:
    """The earliest plausible date of birth at ``as_of``: ``earliest``, or the day after which a
    person is at most ``max_age_years`` whole years old, whichever is later."""
    if rules.max_age_years is None:
        return rules.earliest
    youngest_too_old = _years_before(as_of, rules.max_age_years + 1)  # exactly max + 1 years old
    return max(rules.earliest, youngest_too_old + dt.timedelta(days=1))


def date_of_birth_flag(long: Column, text: Column, parsed: Column, rules: DateOfBirthRules, as_of: dt.date) -> Column:
    placeholders = [F.lit(d) for d in rules.placeholder_dates]
    return (
        F.when(long, F.lit("too_long"))
        .when(text.isNull(), F.lit(None))
        .when(parsed.isNull() & text.rlike(_DATE_SHAPE), F.lit("impossible"))
        .when(parsed.isNull(), F.lit("unparseable"))
        .when(parsed.isin(*placeholders) if placeholders else F.lit(False), F.lit("placeholder"))
        .when(_in(F.date_format(parsed, "MM-dd"), rules.unknown_day_month), F.lit("placeholder"))
        .when(parsed > F.lit(as_of), F.lit("out_of_range"))
        .when(parsed < F.lit(oldest_plausible(rules, as_of)), F.lit("implausible_date"))
    )


# ---------------------------------------------------------------------------------------------
# Sex

# NHS data dictionary PERSON GENDER CODE (0, 1, 2, 9) and PERSON STATED GENDER CODE (X, I),
# plus common spellings seen in extracts.
_SEX_CODES: dict[str, str] = {
    **{k: "M" for k in ("1", "M", "MALE", "MAN", "BOY")},
    **{k: "F" for k in ("2", "F", "FEMALE", "WOMAN", "GIRL")},
}
_SEX_UNKNOWN: dict[str, str] = {
    **{k: "not_known" for k in ("0", "U", "UNKNOWN", "NOT KNOWN", "NK", "N/K", "X", "UNK")},
    **{k: "not_specified" for k in ("9", "I", "INDETERMINATE", "NOT SPECIFIED", "NS", "O", "OTHER")},
}


def _literal_map(mapping: dict[str, str]) -> Column:
    return F.create_map(*[F.lit(x) for pair in sorted(mapping.items()) for x in pair])


def sex_code(col: Column) -> Column:
    """Upper case, dots removed, whitespace collapsed; blank -> NULL (the lookup key)."""
    cleaned = F.regexp_replace(F.upper(F.translate(col.cast("string"), ".", "")), r"\s+", " ")
    return blank_to_null(cleaned)


def sex_value(code: Column) -> Column:
    return F.element_at(_literal_map(_SEX_CODES), code)


def sex_flag(long: Column, code: Column) -> Column:
    known = F.element_at(_literal_map(_SEX_CODES), code).isNotNull()
    return F.when(long, F.lit("too_long")).when(code.isNull() | known, F.lit(None)).otherwise(
        F.coalesce(F.element_at(_literal_map(_SEX_UNKNOWN), code), F.lit("unrecognised"))
    )


# ---------------------------------------------------------------------------------------------
# Postcode and region

# ZZ99 pseudo-postcodes that name a nation (NHS data dictionary); the others (3VZ no fixed
# abode, 3WZ not known, 3CZ England n.o.s., ZZ99 + country code overseas) give no region.
_PSEUDO_NATIONS = {"ZZ993GZ": "WALES", "ZZ991WZ": "SCOTLAND", "ZZ992WZ": "NORTHERN_IRELAND"}


def postcode_area(col: Column) -> Column:
    """The letters before the first digit of a postcode ('LS' of 'LS1 4AP')."""
    return F.regexp_extract(col, r"^([A-Z]{1,2})[0-9]", 1)


def pseudo_region(compact: Column) -> Column:
    """The nation of a ZZ99 pseudo-postcode that names one, else NULL."""
    return F.element_at(_literal_map(_PSEUDO_NATIONS), compact)


@lru_cache(maxsize=1)
def regions() -> dict[str, str]:
    """Postcode area -> NHS England region / nation, from the table shipped in the package."""
    with resources.files("natlink.data").joinpath("postcode_areas.csv").open(encoding="utf-8") as fh:
        return {r["area"]: r["region"] for r in csv.DictReader(fh)}


def region_lookup(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(sorted(regions().items()), "_area string, _region string")


def region(area: Column, pseudo: Column, fixed: str | None = None) -> Column:
    """A fixed region, else the area's region, else a ZZ99 code's nation, else UNKNOWN."""
    if fixed is not None:
        return F.lit(fixed)
    return F.coalesce(F.element_at(_literal_map(regions()), area), pseudo, F.lit(UNKNOWN_REGION))


# ---------------------------------------------------------------------------------------------
# The transform


def age_band(dob: Column, rules: AgeBandRules) -> Column:
    """``"40-49"``-style band of the age in whole years at ``rules.reference_date``; NULL when the
    date of birth is NULL or after the reference date. The age is computed as the generator does
    (``floor(months_between / 12)``), so synthetic truth and records agree on birthdays."""
    age = F.floor(F.months_between(F.lit(rules.reference_date), dob) / 12).cast("int")
    lower = (F.floor(age / rules.width) * rules.width).cast("int")
    closed = F.concat(lower.cast("string"), F.lit("-"), (lower + rules.width - 1).cast("string"))
    return F.when(age >= rules.open_from, F.lit(f"{rules.open_from}+")).when(age >= 0, closed)


def output_columns(cfg: DatasetConfig) -> list[str]:
    """The columns :func:`standardise` returns, in order: the built-in identifiers and what is
    derived from them, bookkeeping, kept columns, flags; then declared identifiers and their flags."""
    declared = list(cfg.declared_identifiers)
    return [
        C.DATASET,
        C.RECORD_ID,
        C.NHS_NUMBER,
        C.GIVEN_NAME,
        C.GIVEN_NAME_OTHER,
        C.FAMILY_NAME,
        C.FAMILY_NAME_FIRST,
        C.FAMILY_NAME_LAST,
        C.DATE_OF_BIRTH,
        C.SEX,
        C.POSTCODE,
        C.POSTCODE_AREA,
        C.POSTCODE_DISTRICT,
        C.POSTCODE_SECTOR,
        C.REGION,
        *cfg.kept_columns(),
        *FLAG_COLUMNS,
        *declared,
        *[C.flag(n) for n in declared],
    ]


def identifier_columns(cfg: DatasetConfig) -> list[str]:
    """Every identifier column :func:`standardise` returns: the built-in six, then the declared ones."""
    return [*C.IDENTIFIERS, *cfg.declared_identifiers]


def reasons_of(cfg: DatasetConfig, name: str) -> tuple[str, ...]:
    """Every reason the flag of identifier ``name`` can hold."""
    return REASONS[name] if name in REASONS else kinds.reasons(cfg.identifier_kinds[name])


def _type_of(df: DataFrame, column: str) -> str:
    return df.schema[column].dataType.simpleString()


def standardise(
    df: DataFrame, cfg: DatasetConfig, *, as_of: dt.date | None = None, passthrough: tuple[str, ...] = ()
) -> DataFrame:
    """Map and clean one raw dataset into canonical columns, derived columns and flags.

    ``as_of``: the reference date of the date checks (default: the dataset's ``as_of``, else today, UTC).
    ``passthrough``: extra input columns carried unchanged after the contract columns.
    Six selects, each computing what the next uses more than once; the first measures every raw
    identifier, so that no cleaning runs on a value longer than ``cfg.max_length`` allows.
    """
    as_of = as_of or cfg.as_of or dt.datetime.now(dt.timezone.utc).date()
    m = cfg.columns
    keep = [C.DATASET, C.RECORD_ID, *cfg.event_columns.keys(), *passthrough]

    def src(canonical: str) -> Column:
        return F.col(f"`{m[canonical]}`") if canonical in m else F.lit(None).cast("string")

    def src_type(canonical: str) -> str:
        return _type_of(df, m[canonical]) if canonical in m else "string"

    def long(canonical: str) -> Column:
        return too_long(src(canonical), cfg.max_length.of(canonical)) if canonical in m else F.lit(False)

    dob_type = src_type(C.DATE_OF_BIRTH)
    if dob_type in ("date", "timestamp", "timestamp_ntz"):
        dob_text, dob_parsed = src(C.DATE_OF_BIRTH).cast("string"), src(C.DATE_OF_BIRTH).cast("date")
    else:
        dob_text, dob_parsed = blank_to_null(src(C.DATE_OF_BIRTH).cast("string")), None

    uk_postcode = cfg.identifier_kinds[C.POSTCODE].postcode_format == "uk"
    # Stage 0: the length of every raw identifier, so that nothing below runs on an over-long one.
    stage0 = df.select("*", *[long(c).alias(f"_long_{c}") for c in C.IDENTIFIERS])

    def is_long(canonical: str) -> Column:
        return F.col(f"_long_{canonical}")

    stage1 = stage0.select(
        F.lit(cfg.name).alias(C.DATASET),
        blank_to_null(F.col(f"`{cfg.record_id}`").cast("string")).alias(C.RECORD_ID),
        *[blank_to_null(F.col(f"`{source}`").cast("string")).alias(name) for name, source in cfg.event_columns.items()],
        *[F.col(c) for c in passthrough],
        *[is_long(c) for c in C.IDENTIFIERS],
        bounded(is_long(C.NHS_NUMBER), nhs_digits(src(C.NHS_NUMBER), src_type(C.NHS_NUMBER))).alias("_nhs"),
        bounded(is_long(C.GIVEN_NAME), name_text(src(C.GIVEN_NAME))).alias("_gn_text"),
        bounded(is_long(C.FAMILY_NAME), name_text(src(C.FAMILY_NAME))).alias("_fn_text"),
        bounded(is_long(C.DATE_OF_BIRTH), dob_text).alias("_dob_text"),
        *([bounded(is_long(C.DATE_OF_BIRTH), dob_parsed).alias("_dob")] if dob_parsed is not None else []),
        bounded(is_long(C.SEX), sex_code(src(C.SEX))).alias("_sex"),
        bounded(is_long(C.POSTCODE), postcode_compact(src(C.POSTCODE))).alias("_pc"),
        *kinds.text_stage(cfg, {n: src_type(n) for n in cfg.declared_identifiers}),
    )
    stage1 = stage1.select(
        "*",
        clean_name(F.col("_gn_text")).alias("_gn_base"),
        clean_name(F.col("_fn_text")).alias("_fn_base"),
        name_problem(F.col("_gn_text"), is_long(C.GIVEN_NAME)).alias("_gn_problem"),
        name_problem(F.col("_fn_text"), is_long(C.FAMILY_NAME)).alias("_fn_problem"),
        *([parse_date(F.col("_dob_text"), cfg.dob_formats).alias("_dob")] if dob_parsed is None else []),
        *kinds.parse_stage(cfg),
    )
    stage2 = stage1.select(
        "*",
        strip_titles(F.col("_gn_base"), cfg.names.titles).alias("_gn"),
        strip_suffixes(strip_titles(F.col("_fn_base"), cfg.names.titles)).alias("_fn"),
        nhs_number_flag(is_long(C.NHS_NUMBER), F.col("_nhs"), cfg.nhs_number).alias(C.flag(C.NHS_NUMBER)),
        date_of_birth_flag(
            is_long(C.DATE_OF_BIRTH), F.col("_dob_text"), F.col("_dob"), cfg.date_of_birth, as_of
        ).alias(C.flag(C.DATE_OF_BIRTH)),
        sex_flag(is_long(C.SEX), F.col("_sex")).alias(C.flag(C.SEX)),
        (postcode_flag(is_long(C.POSTCODE), F.col("_pc")) if uk_postcode else F.when(is_long(C.POSTCODE), F.lit("too_long"))).alias(
            C.flag(C.POSTCODE)
        ),
        *kinds.flag_stage(cfg, as_of),
    )
    stage3 = stage2.select(
        "*",
        F.split(F.col("_gn"), " ").alias("_gn_tokens"),
        F.regexp_replace(F.col("_fn"), r"[\s-]", "").alias("_fn_compact"),
        F.split(F.col("_fn"), r"[\s-]").alias("_fn_parts"),
        F.when(F.col(C.flag(C.POSTCODE)).isNull() & F.col("_pc").isNotNull(), format_postcode(F.col("_pc")) if uk_postcode else F.col("_pc")).alias(
            C.POSTCODE
        ),
    )
    gn_first = F.regexp_replace(F.element_at(F.col("_gn_tokens"), 1), "-", "")
    stage4 = stage3.select(
        "*",
        gn_first.alias("_gn_first"),
        given_name_flag(F.col("_gn_problem"), F.col("_gn_base"), F.col("_gn"), gn_first, cfg.names).alias(
            C.flag(C.GIVEN_NAME)
        ),
        family_name_flag(F.col("_fn_problem"), F.col("_fn_base"), F.col("_fn"), F.col("_fn_compact"), cfg.names).alias(
            C.flag(C.FAMILY_NAME)
        ),
        # A postcode of another country's shape (format: free) has no UK area, district or sector.
        (postcode_area(F.col(C.POSTCODE)) if uk_postcode else F.lit(None).cast("string")).alias(C.POSTCODE_AREA),
        (F.substring_index(F.col(C.POSTCODE), " ", 1) if uk_postcode else F.lit(None).cast("string")).alias(C.POSTCODE_DISTRICT),
    )
    gn_ok = F.col(C.flag(C.GIVEN_NAME)).isNull()
    fn_ok = F.col(C.flag(C.FAMILY_NAME)).isNull()
    fn_multi = fn_ok & (F.size(F.col("_fn_parts")) > 1)
    gn_rest = blank_to_null(F.regexp_replace(F.array_join(F.slice(F.col("_gn_tokens"), 2, 64), " "), "-", ""))
    columns = {
        C.NHS_NUMBER: F.when(F.col(C.flag(C.NHS_NUMBER)).isNull(), F.col("_nhs")),
        C.GIVEN_NAME: F.when(gn_ok, F.col("_gn_first")),
        C.GIVEN_NAME_OTHER: F.when(gn_ok, gn_rest),
        C.FAMILY_NAME: F.when(fn_ok, F.col("_fn_compact")),
        C.FAMILY_NAME_FIRST: F.when(fn_multi, F.element_at(F.col("_fn_parts"), 1)),
        C.FAMILY_NAME_LAST: F.when(fn_multi, F.element_at(F.col("_fn_parts"), -1)),
        C.DATE_OF_BIRTH: F.when(F.col(C.flag(C.DATE_OF_BIRTH)).isNull(), F.col("_dob")),
        C.SEX: sex_value(F.col("_sex")),
        C.POSTCODE: F.col(C.POSTCODE),
        C.POSTCODE_AREA: F.col(C.POSTCODE_AREA),
        C.POSTCODE_DISTRICT: F.col(C.POSTCODE_DISTRICT),
        C.POSTCODE_SECTOR: F.concat(F.col(C.POSTCODE_DISTRICT), F.lit(" "), F.substring(F.col(C.POSTCODE), -3, 1)),
        C.REGION: region(F.col(C.POSTCODE_AREA), pseudo_region(F.col("_pc")) if uk_postcode else F.lit(None), cfg.region),
        **kinds.value_stage(cfg),
    }
    if cfg.age_band is not None:
        columns[C.AGE_BAND] = age_band(columns[C.DATE_OF_BIRTH], cfg.age_band)
    flags = {*FLAG_COLUMNS, *[C.flag(n) for n in cfg.declared_identifiers]}
    out = [F.col(c) if c in keep or c in flags else columns[c].alias(c) for c in output_columns(cfg)]
    return stage4.select(*out, *[F.col(c) for c in passthrough])
