"""Dataset records: who appears in a dataset, how often, when, and as which raw columns.

A person is in a dataset with the dataset's coverage (by age band and conditions) and has one
or more records (a geometric count). Each record gets an opaque record id, an event date in the
person's window, the values true on that date and, through :mod:`natlink.synth.corrupt`, its
raw values. :func:`raw_columns` then writes them as the provider would deliver them: the
provider's own column names, case and formats (``gp``, ``hes``, ``prescriptions``, ``registry``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink.config.synth import DatasetSpec, SynthConfig
from natlink.errors import ConfigError
from natlink.synth.conditions import cause_of_death, diagnosis_codes, icd4, problem_list
from natlink.synth.corrupt import corrupt
from natlink.synth.draws import geometric, index, uniform

__all__ = ["RAW_ID_COLUMNS", "record_skeleton", "dataset_records", "raw_columns"]

RAW_ID_COLUMNS = {"gp": "patient_ref", "hes": "EPIKEY", "prescriptions": "PRESCRIPTION_ID", "registry": "DEATH_REG_ID"}
_RKEY_SLOTS = 1024  # record key = pid * 1024 + row number within the person


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


def record_skeleton(pop: DataFrame, seed: int, name: str, spec: DatasetSpec) -> DataFrame:
    """Persons in the dataset, exploded to one row per record with ``seq``, ``_rkey`` and ``record_id``."""
    pid = F.col("pid")
    eligible = F.col("date_of_death").isNotNull() if spec.kind == "registry" else F.lit(True)
    mean_extra = F.lit(spec.mean_records - 1.0) + spec.records_per_condition * F.col("n_conditions")
    n = F.least(F.lit(spec.max_records), F.lit(1) + geometric(uniform(seed, f"{name}:n", pid), mean_extra))
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
    return F.date_add(F.col("window_from"), index(uniform(seed, f"{name}:date", F.col("_rkey")), span + 1))


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


def dataset_records(
    pop: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig, persons: int
) -> DataFrame:
    """One dataset's records with clean truth (``pid``, clean fields) and raw canonical ``r_*`` values.

    Used by :func:`natlink.synth.generate.generate` (which keeps only the raw columns) and by
    tests that compare corrupted with clean values.
    """
    df = record_skeleton(pop, seed, name, spec)
    df = df.withColumn("event_date", _event_date(seed, name, spec.kind))
    df = _at_event(df)
    return corrupt(df, seed, name, spec.errors, persons, cfg.population.pseudo_postcodes, cfg.population.dob_placeholders)


def raw_columns(df: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig) -> DataFrame:
    """The dataset as its provider would deliver it: the provider's column names, case and formats."""
    formats = {"gp": _gp_columns, "hes": _hes_columns, "prescriptions": _prescriptions_columns, "registry": _registry_columns}
    if spec.kind not in formats:  # pragma: no cover - DatasetSpec.kind admits only these
        raise ConfigError(f"synth: dataset {name!r} has unknown kind {spec.kind!r}")
    return formats[spec.kind](df, seed, name, spec, cfg)


def _gp_columns(df: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig) -> DataFrame:
    return df.select(
        F.col("record_id").alias("patient_ref"),
        F.col("r_nhs").alias("nhs_no"),
        F.initcap("r_given").alias("forename"),
        F.initcap("r_family").alias("surname"),
        F.date_format("r_dob", "yyyy-MM-dd").alias("birth_date"),
        F.col("r_sex").alias("gender"),
        F.col("r_postcode").alias("postcode"),
        F.date_format("event_date", "yyyy-MM-dd").alias("registration_date"),
        *([problem_list(seed, name, cfg, spec).alias("ltc_codes")] if spec.problem_list_recording > 0 else []),
    )


def _hes_columns(df: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig) -> DataFrame:
    key = F.col("_rkey")
    primary, secondary = diagnosis_codes(seed, name, cfg, spec, "icd10")
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
        icd4(primary, uniform(seed, f"{name}:d1", key)).alias("DIAG_01"),
        icd4(secondary, uniform(seed, f"{name}:d2", key)).alias("DIAG_02"),
    )


def _prescriptions_columns(df: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig) -> DataFrame:
    primary, _secondary = diagnosis_codes(seed, name, cfg, spec, "bnf")
    nhs = F.col("r_nhs")
    spaced = F.concat_ws(" ", F.substring(nhs, 1, 3), F.substring(nhs, 4, 3), F.substring(nhs, 7, 4))
    is_spaced = nhs.isNotNull() & (uniform(seed, f"{name}:spaced", F.col("_rkey")) < 0.5)
    sex = F.when(F.col("r_sex") == "M", "Male").when(F.col("r_sex") == "F", "Female").otherwise(F.lit("Unknown"))
    return df.select(
        F.col("record_id").alias("PRESCRIPTION_ID"),
        F.when(is_spaced, spaced).otherwise(nhs).alias("NHS_NUMBER"),
        F.upper("r_given").alias("PATIENT_FORENAME"),
        F.upper("r_family").alias("PATIENT_SURNAME"),
        F.date_format("r_dob", "yyyyMMdd").alias("PATIENT_DOB"),
        sex.alias("PATIENT_SEX"),
        F.regexp_replace("r_postcode", " ", "").alias("PATIENT_POSTCODE"),
        F.date_format("event_date", "yyyy-MM-dd").alias("ISSUE_DATE"),
        primary.alias("BNF_CODE"),
    )


def _registry_columns(df: DataFrame, seed: int, name: str, spec: DatasetSpec, cfg: SynthConfig) -> DataFrame:
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
        cause_of_death(seed, name, cfg, spec).alias("UNDERLYING_CAUSE"),
    )
