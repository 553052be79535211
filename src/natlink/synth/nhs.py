"""Synthetic NHS numbers: valid (modulus 11), unique per person, England-and-Wales-like.

``with_nhs_number`` makes them as Spark columns; ``nhs_check_digit_ok`` validates one in
plain Python (tests and spot checks).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink.synth.draws import uniform

__all__ = ["MAX_PERSONS", "with_nhs_number", "nhs_check_digit_ok"]

MAX_PERSONS = 90_000_000  # unique NHS numbers: 8-digit stems 10,000,000-99,999,999
_ENGLAND_STEMS = 20_880_000  # 400-499 and 600-708 million: the England and Wales ranges
_NHS_MULTIPLIER = 2_654_435_761  # a prime: (a * pid + b) mod S is a bijection for any S it does not divide


def _check_value(base9: Column) -> Column:
    """11 - (sum of digit * weight, weights 10..2) mod 11, for a 9-digit long."""
    total = None
    for i in range(9):
        digit = F.pmod(F.floor(base9 / 10 ** (8 - i)), F.lit(10))
        term = digit * (10 - i)
        total = term if total is None else total + term
    return F.lit(11) - F.pmod(total, F.lit(11))


def with_nhs_number(df: DataFrame, seed: int, pid: str, out: str, persons: int) -> DataFrame:
    """Add ``out``: a valid, unique 10-digit NHS number for the person number in column ``pid``.

    The 8-digit stem is an affine bijection of the person number (so no two persons share a
    number); the ninth digit is random, moved on by one when it would give the invalid check
    value 10 (that changes the weighted sum by 2 mod 11, so the next digit is always valid).
    Up to 20.88M persons get England-and-Wales-like numbers (400... and 600-708...).
    Intermediate columns keep Spark from inlining the digit sums into each other.
    """
    space = _ENGLAND_STEMS if persons <= _ENGLAND_STEMS else MAX_PERSONS
    a = _NHS_MULTIPLIER % space
    b = (seed * 7_919 + 104_729) % space
    t = f"_nhs_{out}_"
    df = df.withColumn(t + "j", F.pmod(F.col(pid) * F.lit(a) + F.lit(b), F.lit(space)))
    j = F.col(t + "j")
    if space == _ENGLAND_STEMS:
        stem = F.when(j < 10_000_000, j + 40_000_000).otherwise(j - 10_000_000 + 60_000_000)
    else:
        stem = j + 10_000_000
    df = df.withColumns({t + "stem": stem, t + "d9": F.floor(uniform(seed, "nhs9", F.col(pid)) * 10).cast("long")})
    df = df.withColumn(t + "b0", F.col(t + "stem") * 10 + F.col(t + "d9"))
    df = df.withColumn(t + "c0", _check_value(F.col(t + "b0")))
    fixed = F.col(t + "stem") * 10 + F.pmod(F.col(t + "d9") + 1, F.lit(10))
    df = df.withColumn(t + "b", F.when(F.col(t + "c0") == 10, fixed).otherwise(F.col(t + "b0")))
    df = df.withColumn(t + "c", _check_value(F.col(t + "b")))
    digit = F.when(F.col(t + "c") == 11, F.lit(0)).otherwise(F.col(t + "c"))
    df = df.withColumn(out, F.concat(F.col(t + "b").cast("string"), digit.cast("string")))
    return df.drop(*[t + x for x in ("j", "stem", "d9", "b0", "c0", "b", "c")])


def nhs_check_digit_ok(nhs: str | None) -> bool:
    """Plain-Python modulus-11 validation (for tests and spot checks)."""
    if nhs is None or len(nhs) != 10 or not nhs.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(nhs[:9], range(10, 1, -1)))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(nhs[9])
