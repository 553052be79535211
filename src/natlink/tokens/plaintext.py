"""What an identifier looks like, checked by value over every row with native Spark aggregates.

Columns carried into a token table unchanged (the record id, event columns, the age band: the
``keep`` columns) must not hold identifiers. Config cannot prove that (a source column mapped as an
event column may hold NHS numbers or names), so the values are checked:

* :func:`check_kept_columns`, at the provider before anything is written: one aggregate pass over
  the standardised frame. A kept column is refused (:class:`~natlink.errors.IdentifierInEventColumnError`,
  naming the column and the counts, never a value) when

  - NHS numbers: it holds the record's own NHS number in any row, or valid NHS numbers (10 digits,
    spaces and hyphens ignored, modulus 11 check digit) make up at least half of its ten-digit
    values. Other ten-digit codes (SNOMED CT ids, record numbers) pass the check digit about one
    time in eleven, so a code column stays far below half; a column of NHS numbers is all valid.
  - postcodes: any value is a full UK postcode (outward and inward code). Event codes (ICD-10,
    OPCS, BNF, SNOMED, dates) never take that shape.
  - date of birth: at least half of the rows that have both hold the record's own date of birth
    (as ISO or a common day-first, month-first or compact form). Below that, equal dates happen
    (a newborn's admission), a mapped date-of-birth column is all equal.
  - names: at least half of the rows that have both hold the record's own given or family name
    (compared upper-case, trimmed).

* :func:`scan_token_table`, at the linkage centre: the same single pass checks every token value is
  64 lowercase hex digits and the NHS-number and postcode rules on the kept text columns (the
  centre has no plaintext to compare with), over *every* row (it used to sample 10,000).
"""

from __future__ import annotations

import functools
import operator
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import IdentifierInEventColumnError, NotTokenTableError

__all__ = [
    "MIN_SHARE",
    "TOKEN_PATTERN",
    "check_kept_columns",
    "is_nhs_number",
    "is_postcode",
    "scan_token_table",
]

# 64 hex digits (deterministic tokens), 32 (salted block keys) or 16 (salted tokens): natlink.tokens.salted
TOKEN_PATTERN = "^[0-9a-f]{16}([0-9a-f]{16}([0-9a-f]{32})?)?$"
MIN_SHARE = 0.5  # share of comparable values that makes a column an identifier column (see above)
_POSTCODE = r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$"
_DOB_FORMS = ("yyyy-MM-dd", "dd/MM/yyyy", "d/M/yyyy", "dd-MM-yyyy", "dd.MM.yyyy", "yyyyMMdd", "ddMMyyyy", "MM/dd/yyyy", "M/d/yyyy")


def _text(column: str) -> Column:
    return F.trim(F.col(column).cast("string"))


def _digits(col: Column) -> Column:
    return F.regexp_replace(col, r"[\s-]", "")


def _ten_digits(col: Column) -> Column:
    return _digits(col).rlike("^[0-9]{10}$")


def is_nhs_number(col: Column) -> Column:
    """True for 10 digits (spaces and hyphens ignored) with a valid modulus 11 check digit."""
    digits = _digits(col)

    def d(i: int) -> Column:  # never fails, unlike a cast under ANSI mode
        return F.ascii(F.substring(digits, i, 1)) - 48

    check = F.lit(11) - F.pmod(sum(d(i) * (11 - i) for i in range(1, 10)), F.lit(11))
    check = F.when(check == 11, F.lit(0)).otherwise(check)  # 10: no valid number has it
    return digits.rlike("^[0-9]{10}$") & (check == d(10))


def is_postcode(col: Column) -> Column:
    """True for a full UK postcode (``SW1A 1AA``, ``M11AE``), any case."""
    return F.upper(col).rlike(_POSTCODE)


def _count(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def _pattern_aggs(column: str) -> list[Column]:
    value = _text(column)
    return [
        _count(_ten_digits(value)).alias(f"__natlink_{column}__ten"),
        _count(is_nhs_number(value)).alias(f"__natlink_{column}__nhs"),
        _count(is_postcode(value)).alias(f"__natlink_{column}__postcode"),
    ]


def _pattern_findings(column: str, row) -> list[str]:
    ten, nhs, postcode = (int(row[f"__natlink_{column}__{k}"] or 0) for k in ("ten", "nhs", "postcode"))
    found = []
    if nhs and nhs >= MIN_SHARE * ten:
        found.append(f"{nhs} valid NHS numbers among its {ten} ten-digit values")
    if postcode:
        found.append(f"{postcode} full postcodes")
    return found


def _own_aggs(column: str, present: set[str]) -> list[Column]:
    value = _text(column)
    aggs = []
    if C.NHS_NUMBER in present:
        aggs.append(_count(_digits(value) == _digits(F.col(C.NHS_NUMBER).cast("string"))).alias(f"__natlink_{column}__own_nhs"))
    if C.DATE_OF_BIRTH in present:
        dob = F.col(C.DATE_OF_BIRTH)
        forms = [F.date_format(dob, f) for f in _DOB_FORMS]
        same = functools.reduce(operator.or_, [(value == f) | (F.substring(value, 1, 10) == f) for f in forms])
        aggs += [_count(value.isNotNull() & dob.isNotNull()).alias(f"__natlink_{column}__both_dob"), _count(same).alias(f"__natlink_{column}__own_dob")]
    for name in (C.GIVEN_NAME, C.FAMILY_NAME):
        if name in present:
            other = F.upper(F.trim(F.col(name).cast("string")))
            aggs += [
                _count(value.isNotNull() & other.isNotNull()).alias(f"__natlink_{column}__both_{name}"),
                _count(F.upper(value) == other).alias(f"__natlink_{column}__own_{name}"),
            ]
    return aggs


def _own_findings(column: str, row) -> list[str]:
    fields = row.asDict()

    def get(kind: str) -> int:
        return int(fields.get(f"__natlink_{column}__{kind}") or 0)

    found = []
    if get("own_nhs"):
        found.append(f"the record's own NHS number in {get('own_nhs')} rows")
    for name, label in ((C.DATE_OF_BIRTH, "date of birth"), (C.GIVEN_NAME, "given name"), (C.FAMILY_NAME, "family name")):
        kind = "dob" if name == C.DATE_OF_BIRTH else name
        same, both = get(f"own_{kind}"), get(f"both_{kind}")
        if same and same >= MIN_SHARE * both:
            found.append(f"the record's own {label} in {same} of {both} rows")
    return found


def check_kept_columns(df: DataFrame, keep: Sequence[str], *, where: str = "tokenise") -> None:
    """Refuse kept columns whose values look like identifiers (one Spark job over every row).

    ``df`` is the standardised frame (with its identifier columns, to compare with each record's own).
    """
    present = set(df.columns)
    columns = [c for c in dict.fromkeys(keep) if c in present and c not in (C.DATASET, C.REGION, C.AGE_BAND)]
    if not columns:
        return
    aggs = [a for c in columns for a in (*_pattern_aggs(c), *_own_aggs(c, present))]
    row = df.agg(*aggs).first()
    problems = {c: _pattern_findings(c, row) + _own_findings(c, row) for c in columns}
    problems = {c: found for c, found in problems.items() if found}
    if problems:
        described = "; ".join(f"column {c!r}: " + ", ".join(found) for c, found in sorted(problems.items()))
        raise IdentifierInEventColumnError(
            f"{where}: kept columns hold values that look like identifiers ({described}). Nothing was written. "
            "Event columns carry plaintext into the token table: map only non-identifying source columns "
            "as event_columns (conf/datasets/NAME.yaml)"
        )


def scan_token_table(df: DataFrame, *, tokens: Sequence[str], kept: Sequence[str], where: str) -> None:
    """The centre's check of a token table, over every row in one Spark job: every value of a token
    column is a hex token (64, 32 or 16 digits), and no kept text column holds NHS numbers or postcodes."""
    types = dict(df.dtypes)
    texts = [c for c in kept if types.get(c) == "string" and c not in (C.DATASET, C.REGION, C.AGE_BAND)]
    if not tokens and not texts:
        return
    bad = F.lit(0)
    for c in tokens:
        bad = bad + F.when(F.col(c).isNotNull() & ~F.col(c).rlike(TOKEN_PATTERN), 1).otherwise(0)
    row = df.agg(F.sum(bad).alias("__bad_tokens"), *[a for c in texts for a in _pattern_aggs(c)]).first()
    if row["__bad_tokens"]:
        raise NotTokenTableError(
            f"{where}: {row['__bad_tokens']} values in token columns are not hex tokens (64, 32 or 16 digits); refused"
        )
    problems = {c: _pattern_findings(c, row) for c in texts}
    problems = {c: found for c, found in problems.items() if found}
    if problems:
        described = "; ".join(f"column {c!r}: " + ", ".join(found) for c, found in sorted(problems.items()))
        raise IdentifierInEventColumnError(f"{where}: kept columns hold values that look like identifiers ({described}); refused")
