"""Synthetic national population with ground truth, generated with native Spark functions.

Every random draw is a pure function of (seed, salt, row keys) through ``xxhash64``, so the
output does not depend on partitioning, task order or the number of cores: the same seed and
configuration give byte-identical files. Persons are generated in ``ceil(persons /
persons_per_file)`` contiguous ranges of person numbers; each range becomes one file per
table, its rows sorted by record id. There is no shuffle anywhere: name and area draws are
broadcast joins, which keep each range in its own partition.

Persons (truth only): sex and date of birth from a UK-like age pyramid; given and middle names
drawn with birth-era frequencies; nicknames; surnames from a weighted list of real names plus a
generated long tail of rare ones, some double-barrelled, some changed at marriage; unique valid
NHS numbers (modulus 11); an address history in real postcode areas across all regions, with
moves during the observation window; deaths; twins and same-name-same-birthday strangers;
long-term conditions with age-dependent prevalence and co-occurrence.

Datasets (raw, as a provider would deliver them, each with its own column names and formats;
see ``conf/synth.yaml`` and ``conf/datasets/*.yaml``):

* ``gp`` - GP registrations: one row per registration, nearly everyone (CSV);
* ``hes`` - hospital episodes: zero to many rows, with diagnosis codes (CSV);
* ``prescriptions`` - dispensed items with BNF codes (Parquet);
* ``registry`` - death registrations with the underlying cause (CSV).

Truth tables (Parquet, never mixed into raw data): ``truth`` (dataset, record_id,
true_person_id), ``truth_persons`` (per-person attributes for case studies: sex, birth date,
age band, region, death, twin/lookalike links, condition count) and ``truth_conditions``
(true_person_id, condition).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.synth import tables
from natlink.errors import ConfigError
from natlink.config.synth import AGE_BAND_EDGES, AGE_BAND_LABELS, DatasetSpec, FieldErrors, SynthConfig

log = logging.getLogger(__name__)

__all__ = [
    "SynthResult",
    "SynthConfig",
    "TRUTH_SCHEMA",
    "RAW_ID_COLUMNS",
    "generate",
    "population",
    "dataset_records",
    "uniform",
    "nhs_check_digit_ok",
    "with_nhs_number",
]

_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code's unit part
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_KEYBOARD = {  # UK QWERTY neighbours: substitutions and insertions look like real slips
    "Q": "WA", "W": "QESA", "E": "WRDS", "R": "ETFD", "T": "RYGF", "Y": "TUHG", "U": "YIJH",
    "I": "UOKJ", "O": "IPLK", "P": "OL", "A": "QWSZ", "S": "AWEDXZ", "D": "SERFCX", "F": "DRTGVC",
    "G": "FTYHBV", "H": "GYUJNB", "J": "HUIKMN", "K": "JIOLM", "L": "KOP", "Z": "ASX", "X": "ZSDC",
    "C": "XDFV", "V": "CFGB", "B": "VGHN", "N": "BHJM", "M": "NJK",
}  # fmt: skip
_MAX_PERSONS = 90_000_000  # unique NHS numbers: 8-digit stems 10,000,000-99,999,999
_ENGLAND_STEMS = 20_880_000  # 400-499 and 600-708 million: the England and Wales ranges
_NHS_MULTIPLIER = 2_654_435_761  # a prime: (a * pid + b) mod S is a bijection for any S it does not divide
_RKEY_SLOTS = 1024  # record key = pid * 1024 + row number within the person


@dataclass(frozen=True)
class SynthResult:
    """Where the generated datasets and truth tables were written, and their sizes."""

    datasets: dict[str, str]
    truth: str
    records: dict[str, int]
    persons: int
    truth_persons: str | None = None
    truth_conditions: str | None = None
    formats: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step (the first includes the population)

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


TRUTH_SCHEMA = T.StructType(
    [
        T.StructField(C.DATASET, T.StringType(), False),
        T.StructField(C.RECORD_ID, T.StringType(), False),
        T.StructField(C.TRUE_PERSON_ID, T.StringType(), False),
    ]
)


# --- deterministic draws ------------------------------------------------------------------------


def _salt(seed: int, salt: str) -> int:
    """A signed 64-bit constant for (seed, salt): hashing a long is much cheaper than hashing a string."""
    digest = hashlib.blake2b(f"{seed}\x1f{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def uniform(seed: int, salt: str, *keys: Column) -> Column:
    """A deterministic U[0,1) draw from (seed, salt, keys); independent across salts."""
    h = F.xxhash64(F.lit(_salt(seed, salt)), *keys)
    return F.shiftrightunsigned(h, 11).cast("double") * (1.0 / (1 << 53))


def _index(u: Column, n: int | Column) -> Column:
    """floor(u * n) as an int in [0, n)."""
    return F.floor(u * n).cast("int")


def _choice(u: Column, values: list | tuple) -> Column:
    """One of a literal list, uniformly."""
    return F.element_at(tables.literal_array(values), _index(u, len(values)) + 1)


def _geometric(u: Column, mean: Column) -> Column:
    """Failures before the first success with the given mean (0 when the mean is 0)."""
    m = F.greatest(mean, F.lit(1e-9))
    p = F.lit(1.0) / (F.lit(1.0) + m)
    return F.floor(F.log(F.lit(1.0) - u) / F.log(F.lit(1.0) - p)).cast("int")


# --- NHS numbers --------------------------------------------------------------------------------


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
    space = _ENGLAND_STEMS if persons <= _ENGLAND_STEMS else _MAX_PERSONS
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


# --- population ---------------------------------------------------------------------------------


def _age_band(age_years: Column) -> Column:
    band = F.lit(0)
    for edge in AGE_BAND_EDGES:
        band = band + F.when(age_years >= edge, 1).otherwise(0)
    return band


def _postcode(seed: int, salt: str, key: Column, area: Column, max_district: Column) -> Column:
    """A well-formed postcode in ``area``: district 1..max_district, sector digit, two unit letters."""
    district = (_index(uniform(seed, salt + "d", key), max_district) + 1).cast("string")
    sector = _index(uniform(seed, salt + "s", key), 10).cast("string")
    letters = F.lit(_UNIT_LETTERS)
    n = len(_UNIT_LETTERS)
    l1 = F.substring(letters, _index(uniform(seed, salt + "a", key), n) + 1, 1)
    l2 = F.substring(letters, _index(uniform(seed, salt + "b", key), n) + 1, 1)
    return F.concat(area, district, F.lit(" "), sector, l1, l2)


def _condition_names(cfg: SynthConfig) -> list[str]:
    known = tables.condition_codes()
    unknown = [c.name for c in cfg.conditions if c.name not in known]
    if unknown:
        raise ConfigError(f"synth config: conditions {unknown} are not in natlink/data/conditions.csv ({sorted(known)})")
    return [c.name for c in cfg.conditions]


def population(spark: SparkSession, persons: int, seed: int, config: SynthConfig | None = None) -> DataFrame:
    """One row per true person with clean identifiers and history (truth only; never a linkage input)."""
    cfg = config or SynthConfig()
    pop_cfg = cfg.population
    if not 1 <= persons <= _MAX_PERSONS:
        raise ConfigError(f"synth: persons must be between 1 and {_MAX_PERSONS:,} (unique NHS numbers), got {persons}")
    _condition_names(cfg)
    ref = F.lit(pop_cfg.reference_date).cast("date")
    window_start = F.lit(
        date(pop_cfg.reference_date.year - pop_cfg.window_years, pop_cfg.reference_date.month, pop_cfg.reference_date.day)
    ).cast("date")
    partitions = max(1, math.ceil(persons / cfg.persons_per_file))

    def u(salt: str, key: str | Column = "pid") -> Column:
        return uniform(seed, salt, F.col(key) if isinstance(key, str) else key)

    pid = F.col("pid")
    df = spark.range(0, persons, 1, partitions).withColumnRenamed("id", "pid")

    # Family structure. Twins are consecutive pairs (2k, 2k+1) sharing birth date, surname and
    # address; a lookalike copies name, sex and birth date of a target who is not one himself.
    # (Each step is its own column: Spark would otherwise inline and repeat the hash expressions.)
    def twin(p: Column) -> Column:
        return (uniform(seed, "twin", F.floor(p / 2)) < pop_cfg.twin_rate) & (p + 1 - F.pmod(p, 2) < persons)

    df = df.withColumn("_target", F.pmod(F.xxhash64(F.lit(seed), F.lit("lookalike-target"), pid), F.lit(persons)))
    df = df.withColumns(
        {
            "_twin": twin(pid),
            "_target_twin": twin(F.col("_target")),
            "_lookalike_raw": u("lookalike") < pop_cfg.lookalike_rate,
            "_target_lookalike_raw": u("lookalike", "_target") < pop_cfg.lookalike_rate,
        }
    )
    df = df.withColumns(
        {
            "_fam": F.when(F.col("_twin"), pid - F.pmod(pid, 2)).otherwise(pid),
            "_target_fam": F.when(F.col("_target_twin"), F.col("_target") - F.pmod("_target", F.lit(2))).otherwise(
                F.col("_target")
            ),
        }
    )
    df = df.withColumn(
        "_lookalike",
        F.col("_lookalike_raw") & ~F.col("_target_lookalike_raw") & (F.col("_target_fam") != F.col("_fam")),
    )
    df = df.withColumns(
        {
            "_given_key": F.when(F.col("_lookalike"), F.col("_target")).otherwise(pid),
            "_birth_key": F.when(F.col("_lookalike"), F.col("_target_fam")).otherwise(F.col("_fam")),
        }
    )

    # Age from the pyramid (shared by twins and lookalikes through _birth_key); sex by age.
    ages = tables.age_pyramid()
    df = df.withColumn("_age_item", ages.draw(u("age", "_birth_key"), u("age~", "_birth_key")))
    item = F.col("_age_item")
    df = df.withColumns(
        {
            "_age_from": ages.value("age_from", item),
            "_age_to": ages.value("age_to", item),
            "_female_share": ages.value("female_share", item),
        }
    )
    age_days = F.floor(
        (F.col("_age_from") + u("age-in-band", "_birth_key") * (F.col("_age_to") - F.col("_age_from"))) * 365.25
    ).cast("int")
    df = df.withColumn("dob", F.date_sub(ref, age_days))
    df = df.withColumn("sex", F.when(u("sex", "_given_key") < F.col("_female_share"), "F").otherwise("M"))
    df = df.withColumn("_age", F.floor(F.months_between(ref, F.col("dob")) / 12).cast("int"))
    df = df.withColumn("_band", _age_band(F.col("_age")))

    # Given and middle names by sex and birth era; the second twin draws away from the first.
    sex_index = F.when(F.col("sex") == "F", 0).otherwise(1)
    df = df.withColumn("_name_group", sex_index * 4 + tables.era_index(F.year("dob")))
    name_group = F.col("_name_group")
    first_twin_u = u("given", pid - 1)
    given_u = F.when(
        F.col("_twin") & (F.pmod(pid, 2) == 1),
        F.pmod(first_twin_u + 0.1 + 0.8 * u("given-twin"), F.lit(1.0)),
    ).otherwise(u("given", "_given_key"))
    given = tables.given_names()
    df = df.withColumns(
        {
            "_given_item": given.draw(given_u, u("given~", "_given_key"), name_group),
            "_middle_item": given.draw(u("middle"), u("middle~"), name_group),
        }
    )
    df = df.withColumns(
        {
            "given_name": given.value("name", F.col("_given_item")),
            "_middle": given.value("name", F.col("_middle_item")),
        }
    )
    df = df.withColumn(
        "middle_name",
        F.when((u("has-middle") < pop_cfg.middle_name_rate) & (F.col("_middle") != F.col("given_name")), F.col("_middle")),
    )
    nick, nick_group_of_given = tables.nicknames()
    df = df.withColumn("_nick_group", F.element_at(tables.literal_array(nick_group_of_given), F.col("_given_item") + 1))
    has_nickname = (F.col("_nick_group") >= 0) & (u("uses-nickname") < pop_cfg.nickname_rate)
    nick_item = nick.draw(u("nickname"), u("nickname~"), F.greatest(F.col("_nick_group"), F.lit(0)))
    df = df.withColumn("nickname", F.when(has_nickname, nick.value("nickname", nick_item)))

    # Surnames: real list or generated rare tail; some double-barrelled; changes at marriage.
    family = tables.family_names()
    parts = tables.surname_parts()

    def real(salt: str, key: str) -> Column:
        return family.value("name", family.draw(u(salt, key), u(salt + "~", key)))

    def part(salt: str, key: str, group: int) -> Column:
        return parts.value("part", parts.draw(u(salt, key), u(salt + "~", key), group))

    df = df.withColumns(
        {
            "_real1": real("surname", "_birth_key"),
            "_real2": real("surname2", "_birth_key"),
            "_real3": real("spouse", "pid"),
            "_pre1": part("prefix", "_birth_key", 0),
            "_suf1": part("suffix", "_birth_key", 1),
            "_pre2": part("spouse-prefix", "pid", 0),
            "_suf2": part("spouse-suffix", "pid", 1),
        }
    )
    tail = pop_cfg.surname_tail_share
    base = F.when(u("tail", "_birth_key") < tail, F.concat("_pre1", "_suf1")).otherwise(F.col("_real1"))
    birth = F.when(
        (u("hyphenated", "_birth_key") < pop_cfg.hyphenated_rate) & (F.col("_real2") != base),
        F.concat(base, F.lit("-"), F.col("_real2")),
    ).otherwise(base)
    spouse = F.when(u("spouse-tail") < tail, F.concat("_pre2", "_suf2")).otherwise(F.col("_real3"))
    df = df.withColumns({"birth_surname": birth, "_spouse": spouse})

    # Deaths within the window (Gompertz annual mortality by age), then the dated events.
    annual = F.least(F.lit(0.6), pop_cfg.mortality_scale * 2e-5 * F.exp(0.095 * F.col("_age")))
    exposure = F.least(F.lit(float(pop_cfg.window_years)), F.col("_age") + 0.5)
    lo = F.greatest(window_start, F.col("dob"))
    df = df.withColumn("_lo", lo)
    died = u("dies") < F.lit(1.0) - F.exp(-exposure * annual)
    death = F.date_add(F.col("_lo"), _index(u("death-date"), F.datediff(ref, F.col("_lo")) + 1))
    df = df.withColumn("date_of_death", F.when(died, death))
    df = df.withColumns({"_hi": F.coalesce(F.col("date_of_death"), ref), "_adult": F.add_months(F.col("dob"), 240)})

    change_rate = F.when(F.col("sex") == "F", pop_cfg.surname_change_rate_female).otherwise(
        pop_cfg.surname_change_rate_male
    )
    adult = F.col("_adult")
    changed = (u("surname-change") < change_rate) & (adult < F.col("_hi"))
    change_date = F.date_add(adult, _index(u("surname-change-date"), F.datediff(F.col("_hi"), adult)))
    new_name = F.when(
        u("hyphenate-at-marriage") < pop_cfg.hyphenate_at_marriage,
        F.concat(F.col("birth_surname"), F.lit("-"), F.col("_spouse")),
    ).otherwise(F.col("_spouse"))
    df = df.withColumn("_new_surname", new_name)
    df = df.withColumn(
        "surname_change_date", F.when(changed & (F.col("_new_surname") != F.col("birth_surname")), change_date)
    )
    df = df.withColumns(
        {
            "changed_surname": F.when(F.col("surname_change_date").isNotNull(), F.col("_new_surname")),
            "family_name": F.when(F.col("surname_change_date").isNotNull(), F.col("_new_surname")).otherwise(
                F.col("birth_surname")
            ),
        }
    )

    # Addresses: one before the window, one at its start, then up to three moves (twins move together).
    df = _addresses(df, seed, pop_cfg.mean_moves, pop_cfg.local_move_share)
    df = with_nhs_number(df, seed, "pid", "nhs_number", persons)
    df = _conditions(df, seed, cfg)

    tpid = lambda c: F.concat(F.lit("P"), F.lpad(c.cast("string"), 10, "0"))  # noqa: E731
    band_label = F.element_at(F.array(*[F.lit(x) for x in AGE_BAND_LABELS]), F.col("_band") + 1)
    return df.select(
        tpid(pid).alias(C.TRUE_PERSON_ID),
        pid,
        "sex",
        "dob",
        F.col("_age").alias("age"),
        F.col("_band").alias("age_band_index"),
        band_label.alias("age_band"),
        "given_name",
        "middle_name",
        "nickname",
        "birth_surname",
        "changed_surname",
        "surname_change_date",
        "family_name",
        "nhs_number",
        "move_dates",
        "postcodes",
        "postcode",
        "region",
        "date_of_death",
        F.col("_lo").alias("window_from"),
        F.col("_hi").alias("window_to"),
        F.when(F.col("_twin"), tpid(F.col("pid") + 1 - 2 * F.pmod(pid, 2))).alias("twin_of"),
        F.when(F.col("_lookalike"), tpid(F.col("_target"))).alias("lookalike_of"),
        "conditions",
        F.size("conditions").alias("n_conditions"),
    )


def _addresses(df: DataFrame, seed: int, mean_moves: float, local_share: float) -> DataFrame:
    key = F.col("_fam")
    areas = tables.postcode_areas()
    df = df.withColumns(
        {f"_ai{i}": areas.draw(uniform(seed, f"area{i}", key), uniform(seed, f"area{i}~", key)) for i in range(5)}
    )
    df = df.withColumns(
        {
            name: areas.value(column, F.col(f"_ai{i}"))
            for i in range(5)
            for name, column in ((f"_area{i}", "area"), (f"_region{i}", "region"), (f"_maxd{i}", "max_district"))
        }
    )
    df = df.withColumns({f"_local{i}": uniform(seed, f"local{i}", key) < local_share for i in range(1, 5)})
    for i in range(1, 5):
        local = F.col(f"_local{i}")
        df = df.withColumns(
            {
                f"_area{i}": F.when(local, F.col(f"_area{i - 1}")).otherwise(F.col(f"_area{i}")),
                f"_region{i}": F.when(local, F.col(f"_region{i - 1}")).otherwise(F.col(f"_region{i}")),
                f"_maxd{i}": F.when(local, F.col(f"_maxd{i - 1}")).otherwise(F.col(f"_maxd{i}")),
            }
        )
    p = min(1.0, mean_moves / 3)
    moves = sum(F.when(uniform(seed, f"move{i}", key) < p, 1).otherwise(0) for i in range(3))
    span = F.datediff(F.col("_hi"), F.col("_lo"))
    dates = F.array_sort(
        F.array(*[F.date_add(F.col("_lo"), _index(uniform(seed, f"move-date{i}", key), span + 1)) for i in range(3)])
    )
    postcodes = F.array(
        *[_postcode(seed, f"pc{i}", key, F.col(f"_area{i}"), F.col(f"_maxd{i}")) for i in range(5)]
    )
    df = df.withColumns({"_moves": moves, "_all_dates": dates, "_all_postcodes": postcodes})
    df = df.withColumn("_regions", F.array(*[F.col(f"_region{i}") for i in range(5)]))
    return df.withColumns(
        {
            "move_dates": F.slice("_all_dates", 1, F.col("_moves")),
            "postcodes": F.slice("_all_postcodes", 1, F.col("_moves") + 2),
            "postcode": F.element_at("_all_postcodes", F.col("_moves") + 2),
            "region": F.element_at("_regions", F.col("_moves") + 2),
        }
    )


def _conditions(df: DataFrame, seed: int, cfg: SynthConfig) -> DataFrame:
    """Long-term conditions: prevalence by age band and sex, a shared frailty, and relative risks."""
    sigma = cfg.frailty_sigma
    u1 = F.lit(1.0) - uniform(seed, "frailty1", F.col("pid"))
    u2 = uniform(seed, "frailty2", F.col("pid"))
    z = F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)
    frailty = F.exp(F.lit(sigma) * z - F.lit(sigma * sigma / 2))
    df = df.withColumn("_frailty", frailty)
    present: dict[str, Column] = {}
    for cond in cfg.conditions:
        base = F.element_at(F.array(*[F.lit(float(p)) for p in cond.prevalence]), F.col("_band") + 1)
        r = cond.female_rr
        sex_factor = F.when(F.col("sex") == "F", 2 * r / (1 + r)).otherwise(2 / (1 + r))
        risk = base * sex_factor * F.col("_frailty")
        for parent, rr in cond.depends_on.items():
            risk = risk * F.when(F.col(f"_c_{parent}"), F.lit(float(rr))).otherwise(F.lit(1.0))
        col = uniform(seed, f"condition:{cond.name}", F.col("pid")) < F.least(risk, F.lit(1.0))
        df = df.withColumn(f"_c_{cond.name}", col)
        present[cond.name] = F.col(f"_c_{cond.name}")
    # concat of 0/1-element arrays rather than filter(): higher-order functions are not code-generated
    empty = F.array().cast("array<string>")
    listed = F.concat(*[F.when(c, F.array(F.lit(name))).otherwise(empty) for name, c in present.items()])
    return df.withColumn("conditions", listed)


# --- records ------------------------------------------------------------------------------------


def _with_record_id(df: DataFrame, seed: int, dataset: str, prefix: str, rkey: str, out: str) -> DataFrame:
    """Add ``out``: an opaque, unique record id from a 4-round Feistel permutation of the 64-bit key.

    A Feistel network is a bijection whatever its round function, so distinct keys always give
    distinct ids (no birthday collisions at any scale) and ids carry no person order.
    """
    mask = F.lit(0xFFFFFFFF)
    t = f"_rid_{out}_"
    df = df.withColumns({t + "l0": F.shiftright(F.col(rkey), 32).bitwiseAND(mask), t + "r0": F.col(rkey).bitwiseAND(mask)})
    for r in range(4):
        right = F.col(f"{t}r{r}")
        mixed = F.xxhash64(F.lit(seed), F.lit(f"{dataset}:rid{r}"), right).bitwiseAND(mask)
        df = df.withColumns({f"{t}l{r + 1}": right, f"{t}r{r + 1}": F.col(f"{t}l{r}").bitwiseXOR(mixed)})
    value = F.shiftleft(F.col(f"{t}l4"), 32).bitwiseOR(F.col(f"{t}r4"))
    df = df.withColumn(out, F.concat(F.lit(prefix), F.lpad(F.hex(value), 16, "0")))
    return df.drop(*[f"{t}{side}{r}" for side in "lr" for r in range(5)])


def _coverage(spec: DatasetSpec) -> Column:
    by_age = F.element_at(F.array(*[F.lit(float(x)) for x in spec.coverage_by_age]), F.col("age_band_index") + 1)
    n = F.col("n_conditions")
    base = F.lit(spec.coverage)
    if spec.coverage_with_condition is not None:
        base = F.when(n > 0, F.lit(spec.coverage_with_condition)).otherwise(base)
    return F.least(F.lit(1.0), base * by_age * (F.lit(1.0) + spec.coverage_per_condition * n))


def _record_skeleton(pop: DataFrame, seed: int, name: str, spec: DatasetSpec) -> DataFrame:
    """Persons in the dataset, exploded to one row per record with ``seq``, ``_rkey`` and the record id."""
    pid = F.col("pid")
    eligible = F.col("date_of_death").isNotNull() if spec.kind == "registry" else F.lit(True)
    mean_extra = F.lit(spec.mean_records - 1.0) + spec.records_per_condition * F.col("n_conditions")
    n = F.least(F.lit(spec.max_records), F.lit(1) + _geometric(uniform(seed, f"{name}:n", pid), mean_extra))
    if spec.max_records == 1:
        n = F.lit(1)
    covered = pop.where(eligible & (uniform(seed, f"{name}:cover", pid) < _coverage(spec)))
    rows = covered.withColumn("seq", F.explode(F.sequence(F.lit(1), n)))
    rows = rows.withColumn("_rkey", pid * _RKEY_SLOTS + F.col("seq"))
    return _with_record_id(rows, seed, name, spec.id_prefix, "_rkey", "record_id")


def _event_date(seed: int, name: str, kind: str) -> Column:
    if kind == "registry":
        return F.col("date_of_death")
    span = F.datediff(F.col("window_to"), F.col("window_from"))
    return F.date_add(F.col("window_from"), _index(uniform(seed, f"{name}:date", F.col("_rkey")), span + 1))


def _at_event(df: DataFrame) -> DataFrame:
    """Clean values true at the record's event date (current surname and address), and the previous ones."""
    df = df.withColumns(
        {
            # a sum over the (at most 3, sorted) move dates: filter() would not be code-generated
            "_moved": sum(
                F.when(F.try_element_at("move_dates", F.lit(i)) <= F.col("event_date"), 1).otherwise(0)
                for i in range(1, 4)
            ),
            "_after_change": F.col("surname_change_date").isNotNull()
            & (F.col("event_date") >= F.col("surname_change_date")),
        }
    )
    moved, after_change = F.col("_moved"), F.col("_after_change")
    return df.withColumns(
        {
            "clean_family": F.when(after_change, F.col("changed_surname")).otherwise(F.col("birth_surname")),
            "previous_family": F.when(after_change, F.col("birth_surname")),
            "clean_postcode": F.element_at("postcodes", moved + 2),
            "previous_postcode": F.element_at("postcodes", moved + 1),
        }
    ).drop("_moved", "_after_change")


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
    df = df.withColumn(t + "pos", _index(uniform(seed, salt + ":pos", k), F.col(t + "len")) + 1)
    df = df.withColumn(t + "chr", F.substring(v, F.col(t + "pos"), 1))
    neighbours = F.element_at(F.create_map(*[F.lit(x) for kv in _KEYBOARD.items() for x in kv]), F.col(t + "chr"))
    df = df.withColumn(t + "pool", F.coalesce(neighbours, F.lit(_ALPHABET)))
    pool = F.col(t + "pool")
    df = df.withColumns(
        {
            t + "letter": F.substring(pool, _index(uniform(seed, salt + ":chr", k), F.length(pool)) + 1, 1),
            t + "tpos": F.least(F.col(t + "pos"), F.col(t + "len") - 1),
            t + "op": _index(uniform(seed, salt + ":op", k), 4),
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


def _corrupt(
    df: DataFrame, seed: int, name: str, errors: FieldErrors, persons: int, pseudo: list[str], placeholders: list[date]
) -> DataFrame:
    """Raw canonical values ``r_*`` from the clean ones, at the configured per-record rates."""
    k = F.col("_rkey")

    def u(salt: str) -> Column:
        return uniform(seed, f"{name}:{salt}", k)

    e = errors
    fields = ("given", "family", "dob", "sex", "postcode", "nhs")
    df = df.withColumns({f"_u_{f}": u(f) for f in fields})
    df = _with_typo(df, seed, f"{name}:gt", "_rkey", "given_name", "_given_typo")
    df = _with_typo(df, seed, f"{name}:ft", "_rkey", "clean_family", "_family_typo")

    # other person's NHS number: the twin's, else a random other person's (valid, but wrong)
    other_pid = F.when(F.col("twin_of").isNotNull(), F.substring(F.col("twin_of"), 2, 10).cast("long")).otherwise(
        F.pmod(
            F.col("pid") + 1 + F.pmod(F.xxhash64(F.lit(seed), F.lit(f"{name}:other"), k), F.lit(max(persons - 1, 1))),
            F.lit(persons),
        )
    )
    df = df.withColumn("_other_pid", other_pid)
    df = with_nhs_number(df, seed, "_other_pid", "_other_nhs", persons)

    fam = F.col("clean_family")
    dob = F.col("dob")
    pc = F.col("clean_postcode")
    nhs = F.col("nhs_number")
    df = df.withColumns(
        {
            "_fam_parts": fam.contains("-") | fam.contains(" "),
            "_day": F.dayofmonth(dob),
            "_month": F.month(dob),
            "_sector_pos": F.length(pc) - 2,
            "_dpos": _index(u("npos"), 9) + 1,
            "_tpos": _index(u("tpos"), 8) + 1,
        }
    )
    day, month = F.col("_day"), F.col("_month")
    first_part = F.regexp_extract(fam, r"^([^- ]+)[- ]", 1)
    last_part = F.regexp_extract(fam, r"[- ]([^- ]+)$", 1)
    other_separator = F.when(fam.contains("-"), F.regexp_replace(fam, "-", " ")).otherwise(F.regexp_replace(fam, " ", "-"))
    partial = F.element_at(F.array(first_part, last_part, other_separator), _index(u("fpart"), 3) + 1)
    shift = (_index(u("dshift"), 3) + 1) * F.when(u("dsign") < 0.5, -1).otherwise(1)
    year_shift = F.when(u("yten") < 0.3, 10).otherwise(1) * F.when(u("ysign") < 0.5, -1).otherwise(1)
    placeholder = _choice(u("dph"), [d.isoformat() for d in placeholders]).cast("date")
    sector_pos = F.col("_sector_pos")
    new_sector = F.pmod(F.substring(pc, sector_pos, 1).cast("int") + _index(u("psec"), 9) + 1, F.lit(10)).cast("string")
    dpos, tpos = F.col("_dpos"), F.col("_tpos")
    new_digit = F.pmod(F.substring(nhs, dpos, 1).cast("int") + _index(u("ndig"), 9) + 1, F.lit(10)).cast("string")
    df = df.withColumns({"_na": F.substring(nhs, tpos, 1), "_nb": F.substring(nhs, tpos + 1, 1)})
    na, nb = F.col("_na"), F.col("_nb")
    given = F.col("given_name")
    sex = F.col("sex")
    r = {
        "r_given": _options(
            F.col("_u_given"),
            given,
            [
                (e.given_missing, None, F.lit(None).cast("string")),
                (e.given_typo, F.length(given) >= 2, F.col("_given_typo")),
                (e.given_nickname, F.col("nickname").isNotNull(), F.col("nickname")),
                (e.given_middle_first, F.col("middle_name").isNotNull(), F.col("middle_name")),
                (e.given_initial, F.length(given) >= 2, F.substring(given, 1, 1)),
            ],
        ),
        "r_family": _options(
            F.col("_u_family"),
            fam,
            [
                (e.family_missing, None, F.lit(None).cast("string")),
                (e.family_typo, F.length(fam) >= 2, F.col("_family_typo")),
                (e.family_previous, F.col("previous_family").isNotNull(), F.col("previous_family")),
                (e.family_partial, F.col("_fam_parts"), partial),
            ],
        ),
        "r_dob": _options(
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
        ),
        "r_sex": _options(
            F.col("_u_sex"),
            sex,
            [
                (e.sex_missing, None, F.lit(None).cast("string")),
                (e.sex_wrong, None, F.when(sex == "M", "F").otherwise("M")),
            ],
        ),
        "r_postcode": _options(
            F.col("_u_postcode"),
            pc,
            [
                (e.postcode_missing, None, F.lit(None).cast("string")),
                (e.postcode_previous, F.col("previous_postcode") != pc, F.col("previous_postcode")),
                (e.postcode_pseudo, None, _choice(u("ppseudo"), pseudo)),
                (e.postcode_typo, None, F.overlay(pc, new_sector, sector_pos, F.lit(1))),
            ],
        ),
        "r_nhs": _options(
            F.col("_u_nhs"),
            nhs,
            [
                (e.nhs_missing, None, F.lit(None).cast("string")),
                (e.nhs_digit, None, F.overlay(nhs, new_digit, dpos, F.lit(1))),
                (e.nhs_transposed, na != nb, F.overlay(nhs, F.concat(nb, na), tpos, F.lit(2))),
                (e.nhs_other_person, F.lit(persons > 1), F.col("_other_nhs")),
            ],
        ),
    }
    temps = [f"_u_{f}" for f in fields] + [
        "_given_typo", "_family_typo", "_other_pid", "_other_nhs", "_fam_parts", "_day", "_month",
        "_sector_pos", "_dpos", "_tpos", "_na", "_nb",
    ]  # fmt: skip
    return df.withColumns(r).drop(*temps)


def _codes(seed: int, name: str, cfg: SynthConfig, spec: DatasetSpec, system: str) -> tuple[Column, Column]:
    """(primary, secondary) codes for a record: one of the person's conditions, or an acute code."""
    meta = tables.condition_codes()
    key = F.col("_rkey")
    codes_of = F.create_map(
        *[x for c in cfg.conditions for x in (F.lit(c.name), F.array(*[F.lit(v) for v in meta[c.name][system]]))]
    )
    conds = F.col("conditions")
    n = F.size(conds)

    def from_conditions(salt: str) -> Column:
        chosen = F.element_at(conds, _index(uniform(seed, f"{name}:{salt}c", key), F.greatest(n, F.lit(1))) + 1)
        codes = F.element_at(codes_of, chosen)
        return F.element_at(codes, _index(uniform(seed, f"{name}:{salt}k", key), F.size(codes)) + 1)

    acute_kind = {"icd10": "hes", "bnf": "prescriptions"}[system]
    acute = _choice(uniform(seed, f"{name}:acute", key), tables.acute_codes(acute_kind))
    use_condition = (n > 0) & (uniform(seed, f"{name}:uses-condition", key) < spec.condition_share)
    primary = F.when(use_condition, from_conditions("p")).otherwise(acute)
    secondary = F.when((n > 0) & (uniform(seed, f"{name}:second", key) < 0.5), from_conditions("s"))
    return primary, secondary


def _problem_list(seed: int, name: str, cfg: SynthConfig, spec: DatasetSpec) -> Column:
    """A GP problem list: ';'-separated ICD-10 codes of the person's conditions, each recorded at
    ``problem_list_recording`` (drawn per person, so every row of one person lists the same)."""
    meta = tables.condition_codes()
    pid = F.col("pid")
    listed = [
        F.when(
            F.array_contains("conditions", c.name)
            & (uniform(seed, f"{name}:problem:{c.name}", pid) < spec.problem_list_recording),
            F.lit(meta[c.name]["icd10"][0]),
        )
        for c in cfg.conditions
    ]
    joined = F.concat_ws(";", *listed) if listed else F.lit("")
    return F.when(joined != "", joined)


def _icd4(code: Column, u: Column) -> Column:
    """HES-style 4-character diagnosis: I10X for I10, otherwise a subdivision digit."""
    return F.when(code == "I10", F.lit("I10X")).otherwise(F.concat(code, _index(u, 10).cast("string")))


def _cause_of_death(seed: int, name: str, cfg: SynthConfig, spec: DatasetSpec) -> Column:
    """The person's condition with the highest death weight (at ``condition_share``), else an acute cause."""
    meta = tables.condition_codes()
    ranked = sorted(cfg.conditions, key=lambda c: -float(meta[c.name]["death_weight"]))
    key = F.col("_rkey")
    top = F.coalesce(
        *[F.when(F.array_contains("conditions", c.name), F.lit(meta[c.name]["icd10"][0])) for c in ranked],
        F.lit(None).cast("string"),
    )
    acute = _choice(uniform(seed, f"{name}:acute", key), tables.acute_codes("death"))
    return F.when(top.isNotNull() & (uniform(seed, f"{name}:cause", key) < spec.condition_share), top).otherwise(acute)


def dataset_records(
    pop: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig, persons: int
) -> DataFrame:
    """One dataset's records with clean truth (``pid``, clean fields) and raw canonical ``r_*`` values.

    Used by :func:`generate` (which keeps only the raw columns) and by tests that compare
    corrupted with clean values.
    """
    df = _record_skeleton(pop, seed, name, spec)
    df = df.withColumn("event_date", _event_date(seed, name, spec.kind))
    df = _at_event(df)
    return _corrupt(
        df, seed, name, spec.errors, persons, cfg.population.pseudo_postcodes, cfg.population.dob_placeholders
    )


def _raw_columns(df: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig) -> DataFrame:
    """The dataset as its provider would deliver it: the provider's column names, case and formats."""
    key = F.col("_rkey")
    if spec.kind == "gp":
        return df.select(
            F.col("record_id").alias("patient_ref"),
            F.col("r_nhs").alias("nhs_no"),
            F.initcap("r_given").alias("forename"),
            F.initcap("r_family").alias("surname"),
            F.date_format("r_dob", "yyyy-MM-dd").alias("birth_date"),
            F.col("r_sex").alias("gender"),
            F.col("r_postcode").alias("postcode"),
            F.date_format("event_date", "yyyy-MM-dd").alias("registration_date"),
            *([_problem_list(seed, name, cfg, spec).alias("ltc_codes")] if spec.problem_list_recording > 0 else []),
        )
    if spec.kind == "hes":
        primary, secondary = _codes(seed, name, cfg, spec, "icd10")
        sex_code = F.when(F.col("r_sex") == "M", "1").when(F.col("r_sex") == "F", "2").otherwise(F.lit("9"))
        return df.select(
            F.col("record_id").alias("EPIKEY"),
            F.col("r_nhs").alias("NHS_NUMBER"),
            F.upper("r_given").alias("GIVEN_NAME"),
            F.upper("r_family").alias("FAMILY_NAME"),
            F.date_format("r_dob", "dd/MM/yyyy").alias("DOB"),
            sex_code.alias("SEX"),
            F.col("r_postcode").alias("POSTCODE"),
            F.date_format("event_date", "yyyy-MM-dd").alias("ADMIDATE"),
            _icd4(primary, uniform(seed, f"{name}:d1", key)).alias("DIAG_01"),
            _icd4(secondary, uniform(seed, f"{name}:d2", key)).alias("DIAG_02"),
        )
    if spec.kind == "prescriptions":
        primary, _secondary = _codes(seed, name, cfg, spec, "bnf")
        nhs = F.col("r_nhs")
        spaced = F.concat_ws(" ", F.substring(nhs, 1, 3), F.substring(nhs, 4, 3), F.substring(nhs, 7, 4))
        sex = F.when(F.col("r_sex") == "M", "Male").when(F.col("r_sex") == "F", "Female").otherwise(F.lit("Unknown"))
        return df.select(
            F.col("record_id").alias("PRESCRIPTION_ID"),
            F.when(nhs.isNotNull() & (uniform(seed, f"{name}:spaced", key) < 0.5), spaced).otherwise(nhs).alias("NHS_NUMBER"),
            F.upper("r_given").alias("PATIENT_FORENAME"),
            F.upper("r_family").alias("PATIENT_SURNAME"),
            F.date_format("r_dob", "yyyyMMdd").alias("PATIENT_DOB"),
            sex.alias("PATIENT_SEX"),
            F.regexp_replace("r_postcode", " ", "").alias("PATIENT_POSTCODE"),
            F.date_format("event_date", "yyyy-MM-dd").alias("ISSUE_DATE"),
            primary.alias("BNF_CODE"),
        )
    if spec.kind == "registry":
        # Death registrations carry all forenames; a middle name follows the recorded given name.
        forenames = F.when(
            F.col("r_given").isNotNull() & F.col("middle_name").isNotNull() & (F.col("r_given") != F.col("middle_name")),
            F.concat_ws(" ", "r_given", "middle_name"),
        ).otherwise(F.col("r_given"))
        sex_code = F.when(F.col("r_sex") == "M", "1").when(F.col("r_sex") == "F", "2")
        return df.select(
            F.col("record_id").alias("DEATH_REG_ID"),
            F.col("r_nhs").alias("NHS_NUMBER"),
            F.upper(forenames).alias("FORENAMES"),
            F.upper("r_family").alias("SURNAME"),
            F.date_format("r_dob", "dd-MM-yyyy").alias("DATE_OF_BIRTH"),
            sex_code.alias("SEX"),
            F.col("r_postcode").alias("POSTCODE"),
            F.date_format("event_date", "yyyy-MM-dd").alias("DATE_OF_DEATH"),
            _cause_of_death(seed, name, cfg, spec).alias("UNDERLYING_CAUSE"),
        )
    raise ConfigError(f"synth: dataset {name!r} has unknown kind {spec.kind!r}")  # pragma: no cover


# The generator's projections are long chains of hashes and lookups. Fused by whole-stage codegen
# into one method they exceed the JVM's 8 KB JIT limit and run interpreted (measured with JFR:
# ~110 us vs ~65 us CPU per person), and compiling the huge class costs tens of seconds per query.
# Per-operator code splits expressions into small, JIT-compiled methods. Set only during generate().
_SQL_CONF = {"spark.sql.codegen.wholeStage": "false"}

RAW_ID_COLUMNS = {"gp": "patient_ref", "hes": "EPIKEY", "prescriptions": "PRESCRIPTION_ID", "registry": "DEATH_REG_ID"}


def _write(df: DataFrame, path: Path, fmt: str, sort_by: list[str]) -> None:
    """One file per person range, rows sorted by ``sort_by``: byte-identical for the same input."""
    writer = df.sortWithinPartitions(*sort_by).write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", True).csv(str(path))
    else:
        writer.parquet(str(path))


def generate(
    spark: SparkSession,
    out_dir: str | Path,
    *,
    persons: int,
    seed: int,
    config: SynthConfig | None = None,
    datasets: Iterable[str] | None = None,
    truth_only: bool = False,
) -> SynthResult:
    """Write raw datasets under ``out_dir/raw/NAME`` and the truth tables under ``out_dir``.

    ``datasets`` picks some of the configured datasets (default: all). ``truth_only`` skips the
    raw datasets (the truth tables are identical either way; benchmarks use it to check
    determinism cheaply).
    """
    started = time.perf_counter()
    cfg = config or SynthConfig()
    names = list(cfg.datasets) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in cfg.datasets]
    if unknown:
        raise ConfigError(f"synth: unknown datasets {unknown}; configured: {sorted(cfg.datasets)}")
    if not names:
        raise ConfigError("synth: no datasets selected")
    out = Path(out_dir)
    saved = {k: spark.conf.get(k, None) for k in _SQL_CONF}
    for key, value in _SQL_CONF.items():
        spark.conf.set(key, value)
    pop = population(spark, persons, seed, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        paths: dict[str, str] = {}
        formats: dict[str, str] = {}
        steps: dict[str, float] = {}
        truth_parts = []
        for name in names:
            spec = cfg.datasets[name]
            path = out / "raw" / name
            if not truth_only:
                records = dataset_records(pop, seed, name, spec, cfg, persons)
                raw = _raw_columns(records, seed, name, spec, cfg)
                _write(raw, path, spec.format, [RAW_ID_COLUMNS[spec.kind]])
                steps[f"raw:{name}"] = round(time.perf_counter() - started - sum(steps.values()), 2)
            paths[name] = str(path)
            formats[name] = spec.format
            truth_parts.append(
                _record_skeleton(pop, seed, name, spec).select(
                    F.lit(name).alias(C.DATASET), F.col("record_id").alias(C.RECORD_ID), F.col(C.TRUE_PERSON_ID)
                )
            )
        truth = truth_parts[0]
        for part in truth_parts[1:]:
            truth = truth.unionByName(part)
        truth_path = out / "truth"
        _write(truth, truth_path, "parquet", [C.DATASET, C.RECORD_ID])
        steps["truth"] = round(time.perf_counter() - started - sum(steps.values()), 2)
        persons_path = out / "truth_persons"
        _write(
            pop.select(
                C.TRUE_PERSON_ID,
                "sex",
                F.col("dob").alias("date_of_birth"),
                "age_band",
                "region",
                "date_of_death",
                "twin_of",
                "lookalike_of",
                "n_conditions",
            ),
            persons_path,
            "parquet",
            [C.TRUE_PERSON_ID],
        )
        conditions_path = out / "truth_conditions"
        _write(
            pop.select(C.TRUE_PERSON_ID, F.explode("conditions").alias("condition")),
            conditions_path,
            "parquet",
            [C.TRUE_PERSON_ID, "condition"],
        )
    finally:
        pop.unpersist()
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
    counted = spark.read.parquet(str(truth_path)).groupBy(C.DATASET).count().collect()
    counts = {name: 0 for name in names}
    counts.update({r[C.DATASET]: int(r["count"]) for r in counted})
    seconds = time.perf_counter() - started
    steps["truth_persons+conditions"] = round(seconds - sum(steps.values()), 2)
    log.info("synth: %d persons, records %s in %.1f s; step seconds %s", persons, counts, seconds, steps)
    return SynthResult(
        datasets=paths,
        truth=str(truth_path),
        records=counts,
        persons=persons,
        truth_persons=str(persons_path),
        truth_conditions=str(conditions_path),
        formats=formats,
        seconds=seconds,
        steps=steps,
    )
