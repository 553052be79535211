"""Column -> Column cleaning helpers shared by :mod:`natlink.provider.standardise` (the built-in
identifiers) and :mod:`natlink.provider.kinds` (declared identifiers). Native Spark only; every
rule is linear in the value's length."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = [
    "UK_POSTCODE",
    "blank_to_null",
    "bounded",
    "format_postcode",
    "nfc",
    "nhs_check_digit",
    "parse_date",
    "postcode_compact",
    "postcode_flag",
    "too_long",
]


def blank_to_null(col: Column) -> Column:
    trimmed = F.trim(col)
    return F.when(trimmed == "", F.lit(None)).otherwise(trimmed)


def nfc(col: Column) -> Column:
    """Unicode NFC through ICU4J (on Spark's classpath); NULL stays NULL."""
    composed = F.call_function("reflect", F.lit("com.ibm.icu.text.Normalizer"), F.lit("compose"), col, F.lit(False))
    return F.when(col.isNotNull(), composed)


def too_long(col: Column, max_length: int) -> Column:
    """True when the raw value is longer than ``max_length`` characters (NULL for NULL)."""
    return F.length(col.cast("string")) > max_length


def bounded(long: Column, value: Column) -> Column:
    """``value`` unless ``long``: Spark's CASE WHEN evaluates only the branch taken, so no
    cleaning runs on an over-long value."""
    return F.when(long, F.lit(None)).otherwise(value)


def nhs_check_digit(digits: Column) -> Column:
    """Modulus 11 over the first nine digits (weights 10..2): 0-9, or 10 meaning invalid."""

    def d(i: int) -> Column:  # never fails, unlike a cast under ANSI mode
        return F.ascii(F.substring(digits, i, 1)) - 48

    check = F.lit(11) - F.pmod(sum(d(i) * (11 - i) for i in range(1, 10)), F.lit(11))
    return F.when(check == 11, F.lit(0)).otherwise(check)


def parse_date(text: Column, formats: list[str]) -> Column:
    """The first pattern that parses, as a DATE. try_to_timestamp gives NULL (not an ANSI error)
    when a pattern does not fit, and Spark's parser is strict: 31/02/2020 parses with none."""
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(fmt)).cast("date") for fmt in formats])


# Royal Mail format (BS 7666): outward AN, ANN, AAN, AANN, ANA, AANA; inward NAA. Letters that
# never occur in a position are excluded (Q V X first; I J Z second; C I K M O V in the inward).
UK_POSTCODE = (
    r"^(?:[A-PR-UWYZ][0-9]{1,2}|[A-PR-UWYZ][A-HK-Y][0-9]{1,2}|[A-PR-UWYZ][0-9][A-HJKPSTUW]"
    r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])[0-9][ABD-HJLNP-UW-Z]{2}$"
)


def postcode_compact(col: Column) -> Column:
    """Upper case with everything but letters and digits removed; blank -> NULL."""
    up = F.upper(col.cast("string"))
    compact = F.when(up.rlike(r"^[A-Z0-9 ]*$"), F.translate(up, " ", "")).otherwise(
        F.regexp_replace(up, r"[^A-Z0-9]", "")
    )
    return blank_to_null(compact)


def postcode_flag(long: Column, compact: Column) -> Column:
    return (
        F.when(long, F.lit("too_long"))
        .when(compact.isNull(), F.lit(None))
        .when(compact.startswith("ZZ99"), F.lit("pseudo"))
        .when(~compact.rlike(UK_POSTCODE), F.lit("invalid"))
    )


def format_postcode(compact: Column) -> Column:
    """'LS14AP' -> 'LS1 4AP' (call on valid compact postcodes)."""
    return F.concat(F.call_function("left", compact, F.length(compact) - 3), F.lit(" "), F.substring(compact, -3, 3))
