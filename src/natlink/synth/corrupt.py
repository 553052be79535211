"""The error model: raw values ``r_*`` made from a record's clean values at configured rates.

Rates are per record and conditional on the error being possible (``FieldErrors`` in
``natlink.config.synth``); each field gets at most one error. Errors look like real ones:
missing values, keyboard slips, nicknames and middle names used as given names, previous and
partial surnames, day/month swaps, placeholder and partial dates, previous addresses, pseudo
postcodes, NHS digit errors and transpositions, another person's (valid) NHS number.
"""

from __future__ import annotations

from datetime import date
from typing import Callable, Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink.config.synth import FieldErrors
from natlink.synth.draws import choice, index, uniform
from natlink.synth.nhs import with_nhs_number

__all__ = ["corrupt"]

_Draw = Callable[[str], Column]  # a record's uniform draw for a salt

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_KEYBOARD = {  # UK QWERTY neighbours: substitutions and insertions look like real slips
    "Q": "WA", "W": "QESA", "E": "WRDS", "R": "ETFD", "T": "RYGF", "Y": "TUHG", "U": "YIJH",
    "I": "UOKJ", "O": "IPLK", "P": "OL", "A": "QWSZ", "S": "AWEDXZ", "D": "SERFCX", "F": "DRTGVC",
    "G": "FTYHBV", "H": "GYUJNB", "J": "HUIKMN", "K": "JIOLM", "L": "KOP", "Z": "ASX", "X": "ZSDC",
    "C": "XDFV", "V": "CFGB", "B": "VGHN", "N": "BHJM", "M": "NJK",
}  # fmt: skip
_FIELDS = ("given", "family", "dob", "sex", "postcode", "nhs")
_TEMPS = [f"_u_{f}" for f in _FIELDS] + [
    "_given_typo", "_family_typo", "_other_pid", "_other_nhs", "_fam_parts", "_day", "_month",
    "_sector_pos", "_dpos", "_tpos", "_na", "_nb",
]  # fmt: skip


def corrupt(
    df: DataFrame, seed: int, name: str, errors: FieldErrors, persons: int, pseudo: list[str], placeholders: list[date]
) -> DataFrame:
    """Add raw canonical values ``r_*`` from the clean ones, at the configured per-record rates.

    Reads the record key ``_rkey``, the person's clean values and those true at the record's
    date (``clean_family``, ``clean_postcode``, ``previous_*``); ``name`` salts the draws so
    every dataset has its own errors.
    """

    def u(salt: str) -> Column:
        return uniform(seed, f"{name}:{salt}", F.col("_rkey"))

    df = df.withColumns({f"_u_{f}": u(f) for f in _FIELDS})
    df = _with_typo(df, seed, f"{name}:gt", "_rkey", "given_name", "_given_typo")
    df = _with_typo(df, seed, f"{name}:ft", "_rkey", "clean_family", "_family_typo")
    df = _with_other_nhs(df, seed, name, persons).transform(_with_positions, u)
    raw = {
        "r_given": _given(errors),
        "r_family": _family(errors, u),
        "r_dob": _dob(errors, u, placeholders),
        "r_sex": _sex(errors),
        "r_postcode": _postcode(errors, u, pseudo),
        "r_nhs": _nhs(errors, u, persons),
    }
    return df.withColumns(raw).drop(*_TEMPS)


def _options(u: Column, clean: Column, options: Iterable[tuple[float, Column | None, Column]]) -> Column:
    """At most one error per field: consecutive intervals of ``u`` of width ``rate`` select an error.

    An error whose eligibility is false leaves the value clean, so each rate is the rate among
    eligible records exactly. ``u`` and ``clean`` should be plain columns (they are referenced
    once per option).
    """
    out = None
    lo = 0.0
    for rate, eligible, value in options:
        if rate <= 0:
            continue
        cond = (u >= lo) & (u < lo + rate)
        if eligible is not None:
            cond = cond & eligible
        out = F.when(cond, value) if out is None else out.when(cond, value)
        lo += rate
    return clean if out is None else out.otherwise(clean)


def _with_typo(df: DataFrame, seed: int, salt: str, key: str, value: str, out: str) -> DataFrame:
    """Add ``out``: ``value`` with one keyboard slip (insert, delete, QWERTY-neighbour substitute, transpose).

    Always differs from ``value`` when it has two or more characters.
    """
    t = f"_ty_{out}_"
    k = F.col(key)
    v = F.col(value)
    df = df.withColumn(t + "len", F.length(v))
    df = df.withColumn(t + "pos", index(uniform(seed, salt + ":pos", k), F.col(t + "len")) + 1)
    df = df.withColumn(t + "chr", F.substring(v, F.col(t + "pos"), 1))
    neighbours = F.element_at(F.create_map(*[F.lit(x) for kv in _KEYBOARD.items() for x in kv]), F.col(t + "chr"))
    df = df.withColumn(t + "pool", F.coalesce(neighbours, F.lit(_ALPHABET)))
    pool = F.col(t + "pool")
    df = df.withColumns(
        {
            t + "letter": F.substring(pool, index(uniform(seed, salt + ":chr", k), F.length(pool)) + 1, 1),
            t + "tpos": F.least(F.col(t + "pos"), F.col(t + "len") - 1),
            t + "op": index(uniform(seed, salt + ":op", k), 4),
        }
    )
    pos, letter, tpos = F.col(t + "pos"), F.col(t + "letter"), F.col(t + "tpos")
    df = df.withColumns({t + "a": F.substring(v, tpos, 1), t + "b": F.substring(v, tpos + 1, 1)})
    a, b = F.col(t + "a"), F.col(t + "b")
    df = df.withColumn(t + "sub", F.overlay(v, letter, pos, F.lit(1)))
    dup = F.when(uniform(seed, salt + ":dup", k) < 0.5, F.col(t + "chr")).otherwise(letter)
    op = F.col(t + "op")
    typo = (
        F.when(op == 0, F.overlay(v, dup, pos, F.lit(0)))
        .when(op == 1, F.overlay(v, F.lit(""), pos, F.lit(1)))
        .when((op == 2) | (a == b), F.col(t + "sub"))
        .otherwise(F.overlay(v, F.concat(b, a), tpos, F.lit(2)))
    )
    df = df.withColumn(out, typo)
    return df.drop(*[t + x for x in ("len", "pos", "chr", "pool", "letter", "tpos", "op", "a", "b", "sub")])


def _with_other_nhs(df: DataFrame, seed: int, name: str, persons: int) -> DataFrame:
    """Add ``_other_nhs``: the twin's NHS number, else a random other person's (valid, but wrong)."""
    k = F.col("_rkey")
    other_pid = F.when(F.col("twin_of").isNotNull(), F.substring(F.col("twin_of"), 2, 10).cast("long")).otherwise(
        F.pmod(
            F.col("pid") + 1 + F.pmod(F.xxhash64(F.lit(seed), F.lit(f"{name}:other"), k), F.lit(max(persons - 1, 1))),
            F.lit(persons),
        )
    )
    df = df.withColumn("_other_pid", other_pid)
    return with_nhs_number(df, seed, "_other_pid", "_other_nhs", persons)


def _with_positions(df: DataFrame, u: _Draw) -> DataFrame:
    """Columns the errors share: whether the surname has parts, day and month of birth, the
    postcode's sector position, and NHS digit positions (one changed, two swapped) with their digits."""
    fam, dob, pc, nhs = F.col("clean_family"), F.col("dob"), F.col("clean_postcode"), F.col("nhs_number")
    df = df.withColumns(
        {
            "_fam_parts": fam.contains("-") | fam.contains(" "),
            "_day": F.dayofmonth(dob),
            "_month": F.month(dob),
            "_sector_pos": F.length(pc) - 2,
            "_dpos": index(u("npos"), 9) + 1,
            "_tpos": index(u("tpos"), 8) + 1,
        }
    )
    tpos = F.col("_tpos")
    return df.withColumns({"_na": F.substring(nhs, tpos, 1), "_nb": F.substring(nhs, tpos + 1, 1)})


def _given(e: FieldErrors) -> Column:
    given = F.col("given_name")
    return _options(
        F.col("_u_given"),
        given,
        [
            (e.given_missing, None, F.lit(None).cast("string")),
            (e.given_typo, F.length(given) >= 2, F.col("_given_typo")),
            (e.given_nickname, F.col("nickname").isNotNull(), F.col("nickname")),
            (e.given_middle_first, F.col("middle_name").isNotNull(), F.col("middle_name")),
            (e.given_initial, F.length(given) >= 2, F.substring(given, 1, 1)),
        ],
    )


def _family(e: FieldErrors, u: _Draw) -> Column:
    fam = F.col("clean_family")
    first_part = F.regexp_extract(fam, r"^([^- ]+)[- ]", 1)
    last_part = F.regexp_extract(fam, r"[- ]([^- ]+)$", 1)
    other_separator = F.when(fam.contains("-"), F.regexp_replace(fam, "-", " ")).otherwise(F.regexp_replace(fam, " ", "-"))
    partial = F.element_at(F.array(first_part, last_part, other_separator), index(u("fpart"), 3) + 1)
    return _options(
        F.col("_u_family"),
        fam,
        [
            (e.family_missing, None, F.lit(None).cast("string")),
            (e.family_typo, F.length(fam) >= 2, F.col("_family_typo")),
            (e.family_previous, F.col("previous_family").isNotNull(), F.col("previous_family")),
            (e.family_partial, F.col("_fam_parts"), partial),
        ],
    )


def _dob(e: FieldErrors, u: _Draw, placeholders: list[date]) -> Column:
    dob, day, month = F.col("dob"), F.col("_day"), F.col("_month")
    shift = (index(u("dshift"), 3) + 1) * F.when(u("dsign") < 0.5, -1).otherwise(1)
    year_shift = F.when(u("yten") < 0.3, 10).otherwise(1) * F.when(u("ysign") < 0.5, -1).otherwise(1)
    placeholder = choice(u("dph"), [d.isoformat() for d in placeholders]).cast("date")
    return _options(
        F.col("_u_dob"),
        dob,
        [
            (e.dob_missing, None, F.lit(None).cast("date")),
            (e.dob_swapped, (day <= 12) & (day != month), F.make_date(F.year(dob), day, month)),
            (e.dob_placeholder, ~dob.isin(*placeholders), placeholder),
            (e.dob_partial, (day != 1) | (month != 1), F.make_date(F.year(dob), F.lit(1), F.lit(1))),
            (e.dob_day_error, None, F.date_add(dob, shift)),
            (e.dob_year_error, None, F.add_months(dob, year_shift * 12)),
        ],
    )


def _sex(e: FieldErrors) -> Column:
    sex = F.col("sex")
    return _options(
        F.col("_u_sex"),
        sex,
        [
            (e.sex_missing, None, F.lit(None).cast("string")),
            (e.sex_wrong, None, F.when(sex == "M", "F").otherwise("M")),
        ],
    )


def _postcode(e: FieldErrors, u: _Draw, pseudo: list[str]) -> Column:
    pc, sector_pos = F.col("clean_postcode"), F.col("_sector_pos")
    new_sector = F.pmod(F.substring(pc, sector_pos, 1).cast("int") + index(u("psec"), 9) + 1, F.lit(10)).cast("string")
    return _options(
        F.col("_u_postcode"),
        pc,
        [
            (e.postcode_missing, None, F.lit(None).cast("string")),
            (e.postcode_previous, F.col("previous_postcode") != pc, F.col("previous_postcode")),
            (e.postcode_pseudo, None, choice(u("ppseudo"), pseudo)),
            (e.postcode_typo, None, F.overlay(pc, new_sector, sector_pos, F.lit(1))),
        ],
    )


def _nhs(e: FieldErrors, u: _Draw, persons: int) -> Column:
    nhs, dpos, tpos, na, nb = F.col("nhs_number"), F.col("_dpos"), F.col("_tpos"), F.col("_na"), F.col("_nb")
    new_digit = F.pmod(F.substring(nhs, dpos, 1).cast("int") + index(u("ndig"), 9) + 1, F.lit(10)).cast("string")
    return _options(
        F.col("_u_nhs"),
        nhs,
        [
            (e.nhs_missing, None, F.lit(None).cast("string")),
            (e.nhs_digit, None, F.overlay(nhs, new_digit, dpos, F.lit(1))),
            (e.nhs_transposed, na != nb, F.overlay(nhs, F.concat(nb, na), tpos, F.lit(2))),
            (e.nhs_other_person, F.lit(persons > 1), F.col("_other_nhs")),
        ],
    )
