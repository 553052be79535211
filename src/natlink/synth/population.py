"""The synthetic population: one row per true person, with clean identifiers and history.

Sex and date of birth from a UK-like age pyramid; given and middle names drawn with birth-era
frequencies; nicknames; surnames from a weighted list of real names plus a generated long tail
of rare ones, some double-barrelled, some changed at marriage; unique valid NHS numbers; an
address history in real postcode areas across all regions, with moves during the observation
window; deaths; twins and same-name-same-birthday strangers (lookalikes); long-term conditions.

Each step below adds columns to a frame of person numbers ``pid``. Intermediate results are
columns of their own: Spark would otherwise inline and repeat the hash expressions.
"""

from __future__ import annotations

import math
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.synth import AGE_BAND_EDGES, AGE_BAND_LABELS, PopulationSpec, SynthConfig
from natlink.errors import ConfigError
from natlink.synth import tables
from natlink.synth.conditions import check_condition_names, with_conditions
from natlink.synth.draws import index, uniform
from natlink.synth.nhs import MAX_PERSONS, with_nhs_number

__all__ = ["population"]

_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code's unit part


def population(spark: SparkSession, persons: int, seed: int, config: SynthConfig | None = None) -> DataFrame:
    """One row per true person with clean identifiers and history (truth only; never a linkage input)."""
    cfg = config or SynthConfig()
    pop = cfg.population
    if not 1 <= persons <= MAX_PERSONS:
        raise ConfigError(f"synth: persons must be between 1 and {MAX_PERSONS:,} (unique NHS numbers), got {persons}")
    check_condition_names(cfg)
    partitions = max(1, math.ceil(persons / cfg.persons_per_file))
    df = spark.range(0, persons, 1, partitions).withColumnRenamed("id", "pid")
    df = df.transform(_families, seed, pop, persons).transform(_age_and_sex, seed, pop)
    df = df.transform(_given_names, seed, pop).transform(_nicknames, seed, pop).transform(_birth_surnames, seed, pop)
    df = df.transform(_deaths, seed, pop).transform(_surname_changes, seed, pop)
    df = df.transform(_addresses, seed, pop.mean_moves, pop.local_move_share)
    df = df.transform(with_nhs_number, seed, "pid", "nhs_number", persons).transform(with_conditions, seed, cfg)
    return df.transform(_person_columns)


def _u(seed: int, salt: str, key: str | Column = "pid") -> Column:
    """A uniform draw keyed on a column (by name) or on an expression."""
    return uniform(seed, salt, F.col(key) if isinstance(key, str) else key)


def _reference_date(pop: PopulationSpec) -> Column:
    return F.lit(pop.reference_date).cast("date")


def _window_start(pop: PopulationSpec) -> Column:
    ref = pop.reference_date
    return F.lit(date(ref.year - pop.window_years, ref.month, ref.day)).cast("date")


def _families(df: DataFrame, seed: int, pop: PopulationSpec, persons: int) -> DataFrame:
    """Twins are consecutive pairs (2k, 2k+1) sharing birth date, surname and address; a lookalike
    copies name, sex and birth date of a target who is not one himself. Adds the keys later draws
    share: ``_fam`` (the family), ``_given_key`` and ``_birth_key``."""
    pid = F.col("pid")

    def twin(p: Column) -> Column:
        return (uniform(seed, "twin", F.floor(p / 2)) < pop.twin_rate) & (p + 1 - F.pmod(p, 2) < persons)

    df = df.withColumn("_target", F.pmod(F.xxhash64(F.lit(seed), F.lit("lookalike-target"), pid), F.lit(persons)))
    df = df.withColumns(
        {
            "_twin": twin(pid),
            "_target_twin": twin(F.col("_target")),
            "_lookalike_raw": _u(seed, "lookalike") < pop.lookalike_rate,
            "_target_lookalike_raw": _u(seed, "lookalike", "_target") < pop.lookalike_rate,
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
    return df.withColumns(
        {
            "_given_key": F.when(F.col("_lookalike"), F.col("_target")).otherwise(pid),
            "_birth_key": F.when(F.col("_lookalike"), F.col("_target_fam")).otherwise(F.col("_fam")),
        }
    )


def _age_band(age_years: Column) -> Column:
    band = F.lit(0)
    for edge in AGE_BAND_EDGES:
        band = band + F.when(age_years >= edge, 1).otherwise(0)
    return band


def _age_and_sex(df: DataFrame, seed: int, pop: PopulationSpec) -> DataFrame:
    """Age from the pyramid (shared by twins and lookalikes through ``_birth_key``); sex by age."""
    ref = _reference_date(pop)
    ages = tables.age_pyramid()
    df = df.withColumn("_age_item", ages.draw(_u(seed, "age", "_birth_key"), _u(seed, "age~", "_birth_key")))
    item = F.col("_age_item")
    df = df.withColumns(
        {
            "_age_from": ages.value("age_from", item),
            "_age_to": ages.value("age_to", item),
            "_female_share": ages.value("female_share", item),
        }
    )
    in_band = _u(seed, "age-in-band", "_birth_key")
    age_days = F.floor((F.col("_age_from") + in_band * (F.col("_age_to") - F.col("_age_from"))) * 365.25).cast("int")
    df = df.withColumn("dob", F.date_sub(ref, age_days))
    df = df.withColumn("sex", F.when(_u(seed, "sex", "_given_key") < F.col("_female_share"), "F").otherwise("M"))
    df = df.withColumn("_age", F.floor(F.months_between(ref, F.col("dob")) / 12).cast("int"))
    return df.withColumn("_band", _age_band(F.col("_age")))


def _given_names(df: DataFrame, seed: int, pop: PopulationSpec) -> DataFrame:
    """Given and middle names by sex and birth era; the second twin draws away from the first."""
    pid = F.col("pid")
    sex_index = F.when(F.col("sex") == "F", 0).otherwise(1)
    df = df.withColumn("_name_group", sex_index * 4 + tables.era_index(F.year("dob")))
    name_group = F.col("_name_group")
    first_twin_u = _u(seed, "given", pid - 1)
    given_u = F.when(
        F.col("_twin") & (F.pmod(pid, 2) == 1),
        F.pmod(first_twin_u + 0.1 + 0.8 * _u(seed, "given-twin"), F.lit(1.0)),
    ).otherwise(_u(seed, "given", "_given_key"))
    given = tables.given_names()
    df = df.withColumns(
        {
            "_given_item": given.draw(given_u, _u(seed, "given~", "_given_key"), name_group),
            "_middle_item": given.draw(_u(seed, "middle"), _u(seed, "middle~"), name_group),
        }
    )
    df = df.withColumns(
        {
            "given_name": given.value("name", F.col("_given_item")),
            "_middle": given.value("name", F.col("_middle_item")),
        }
    )
    has_middle = (_u(seed, "has-middle") < pop.middle_name_rate) & (F.col("_middle") != F.col("given_name"))
    return df.withColumn("middle_name", F.when(has_middle, F.col("_middle")))


def _nicknames(df: DataFrame, seed: int, pop: PopulationSpec) -> DataFrame:
    """A nickname of the given name, for some of those whose name has one."""
    nick, nick_group_of_given = tables.nicknames()
    df = df.withColumn("_nick_group", F.element_at(tables.literal_array(nick_group_of_given), F.col("_given_item") + 1))
    has_nickname = (F.col("_nick_group") >= 0) & (_u(seed, "uses-nickname") < pop.nickname_rate)
    nick_item = nick.draw(_u(seed, "nickname"), _u(seed, "nickname~"), F.greatest(F.col("_nick_group"), F.lit(0)))
    return df.withColumn("nickname", F.when(has_nickname, nick.value("nickname", nick_item)))


def _birth_surnames(df: DataFrame, seed: int, pop: PopulationSpec) -> DataFrame:
    """Surnames from the real list or the generated rare tail, some double-barrelled; and the
    surname of a spouse (``_spouse``), taken at marriage by some."""
    family = tables.family_names()
    parts = tables.surname_parts()

    def real(salt: str, key: str) -> Column:
        return family.value("name", family.draw(_u(seed, salt, key), _u(seed, salt + "~", key)))

    def part(salt: str, key: str, group: int) -> Column:
        return parts.value("part", parts.draw(_u(seed, salt, key), _u(seed, salt + "~", key), group))

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
    tail = pop.surname_tail_share
    base = F.when(_u(seed, "tail", "_birth_key") < tail, F.concat("_pre1", "_suf1")).otherwise(F.col("_real1"))
    birth = F.when(
        (_u(seed, "hyphenated", "_birth_key") < pop.hyphenated_rate) & (F.col("_real2") != base),
        F.concat(base, F.lit("-"), F.col("_real2")),
    ).otherwise(base)
    spouse = F.when(_u(seed, "spouse-tail") < tail, F.concat("_pre2", "_suf2")).otherwise(F.col("_real3"))
    return df.withColumns({"birth_surname": birth, "_spouse": spouse})


def _deaths(df: DataFrame, seed: int, pop: PopulationSpec) -> DataFrame:
    """Deaths within the window (Gompertz annual mortality by age). Adds the person's span in the
    window (``_lo`` to ``_hi``: death or the reference date) and the date of turning 20 (``_adult``)."""
    ref = _reference_date(pop)
    annual = F.least(F.lit(0.6), pop.mortality_scale * 2e-5 * F.exp(0.095 * F.col("_age")))
    exposure = F.least(F.lit(float(pop.window_years)), F.col("_age") + 0.5)
    df = df.withColumn("_lo", F.greatest(_window_start(pop), F.col("dob")))
    died = _u(seed, "dies") < F.lit(1.0) - F.exp(-exposure * annual)
    death = F.date_add(F.col("_lo"), index(_u(seed, "death-date"), F.datediff(ref, F.col("_lo")) + 1))
    df = df.withColumn("date_of_death", F.when(died, death))
    return df.withColumns({"_hi": F.coalesce(F.col("date_of_death"), ref), "_adult": F.add_months(F.col("dob"), 240)})


def _surname_changes(df: DataFrame, seed: int, pop: PopulationSpec) -> DataFrame:
    """Surname changes at marriage (the spouse's name, or double-barrelled), dated in adult life."""
    change_rate = F.when(F.col("sex") == "F", pop.surname_change_rate_female).otherwise(pop.surname_change_rate_male)
    adult = F.col("_adult")
    changed = (_u(seed, "surname-change") < change_rate) & (adult < F.col("_hi"))
    change_date = F.date_add(adult, index(_u(seed, "surname-change-date"), F.datediff(F.col("_hi"), adult)))
    new_name = F.when(
        _u(seed, "hyphenate-at-marriage") < pop.hyphenate_at_marriage,
        F.concat(F.col("birth_surname"), F.lit("-"), F.col("_spouse")),
    ).otherwise(F.col("_spouse"))
    df = df.withColumn("_new_surname", new_name)
    df = df.withColumn(
        "surname_change_date", F.when(changed & (F.col("_new_surname") != F.col("birth_surname")), change_date)
    )
    has_changed = F.col("surname_change_date").isNotNull()
    return df.withColumns(
        {
            "changed_surname": F.when(has_changed, F.col("_new_surname")),
            "family_name": F.when(has_changed, F.col("_new_surname")).otherwise(F.col("birth_surname")),
        }
    )


def _postcode(seed: int, salt: str, key: Column, area: Column, max_district: Column) -> Column:
    """A well-formed postcode in ``area``: district 1..max_district, sector digit, two unit letters."""
    district = (index(uniform(seed, salt + "d", key), max_district) + 1).cast("string")
    sector = index(uniform(seed, salt + "s", key), 10).cast("string")
    letters = F.lit(_UNIT_LETTERS)
    n = len(_UNIT_LETTERS)
    l1 = F.substring(letters, index(uniform(seed, salt + "a", key), n) + 1, 1)
    l2 = F.substring(letters, index(uniform(seed, salt + "b", key), n) + 1, 1)
    return F.concat(area, district, F.lit(" "), sector, l1, l2)


def _address_areas(df: DataFrame, seed: int, local_share: float) -> DataFrame:
    """Five postcode areas per family (``_area0..4`` with region and district count); a local move
    keeps the previous area."""
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
    return df


def _addresses(df: DataFrame, seed: int, mean_moves: float, local_share: float) -> DataFrame:
    """One address before the window, one at its start, then up to three moves (twins move together)."""
    key = F.col("_fam")
    df = _address_areas(df, seed, local_share)
    p = min(1.0, mean_moves / 3)
    moves = sum(F.when(uniform(seed, f"move{i}", key) < p, 1).otherwise(0) for i in range(3))
    span = F.datediff(F.col("_hi"), F.col("_lo"))
    dates = F.array_sort(
        F.array(*[F.date_add(F.col("_lo"), index(uniform(seed, f"move-date{i}", key), span + 1)) for i in range(3)])
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


def _true_person_id(pid: Column) -> Column:
    return F.concat(F.lit("P"), F.lpad(pid.cast("string"), 10, "0"))


def _person_columns(df: DataFrame) -> DataFrame:
    """The population's schema: public columns only, in a fixed order."""
    pid = F.col("pid")
    band_label = F.element_at(F.array(*[F.lit(x) for x in AGE_BAND_LABELS]), F.col("_band") + 1)
    return df.select(
        _true_person_id(pid).alias(C.TRUE_PERSON_ID),
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
        F.when(F.col("_twin"), _true_person_id(F.col("pid") + 1 - 2 * F.pmod(pid, 2))).alias("twin_of"),
        F.when(F.col("_lookalike"), _true_person_id(F.col("_target"))).alias("lookalike_of"),
        "conditions",
        F.size("conditions").alias("n_conditions"),
    )
