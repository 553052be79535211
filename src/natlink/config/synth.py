"""Typed, frozen configuration of the synthetic population generator (``conf/synth.yaml``).

Every field has a default, so ``SynthConfig()`` is the generator's default configuration and
``conf/synth.yaml`` spells the same values out (a test keeps the two in step). Unknown keys
are rejected. Error rates are *per record* and *conditional on the error being possible*
(a day/month swap needs a day <= 12, a nickname needs a name that has one, a previous
surname needs a surname change before the record's date); at most one error is applied to
each field of a record, so the rates of one field must sum to at most 1.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from natlink.config.base import Frozen, load

AGE_BAND_EDGES = (18, 40, 60, 80)  # prevalence and coverage lists have one value per band: 0-17 ... 80+
AGE_BAND_LABELS = ("0-17", "18-39", "40-59", "60-79", "80+")

Rate = float


def _rate_field(default: float) -> float:
    return Field(default, ge=0.0, le=1.0)


class FieldErrors(Frozen):
    """Per-record error rates for one dataset, grouped by the field they corrupt."""

    # given name
    given_missing: Rate = _rate_field(0.01)
    given_typo: Rate = _rate_field(0.02)  # one insert / delete / substitute / transpose
    given_nickname: Rate = _rate_field(0.04)  # the person's nickname (WILLIAM -> BILL), when they have one
    given_middle_first: Rate = _rate_field(0.02)  # middle name recorded as the given name, when there is one
    given_initial: Rate = _rate_field(0.0)  # only the initial recorded
    # family name
    family_missing: Rate = _rate_field(0.005)
    family_typo: Rate = _rate_field(0.02)
    family_previous: Rate = _rate_field(0.15)  # the surname before a change at marriage, after the change
    family_partial: Rate = _rate_field(0.2)  # hyphenated/double-barrelled: one part only, or the other separator
    # date of birth
    dob_missing: Rate = _rate_field(0.005)
    dob_swapped: Rate = _rate_field(0.03)  # day and month swapped, when the day is 12 or less and differs
    dob_placeholder: Rate = _rate_field(0.003)  # a placeholder date such as 1900-01-01
    dob_partial: Rate = _rate_field(0.003)  # only the year known: recorded as 1 January
    dob_day_error: Rate = _rate_field(0.005)  # a few days out
    dob_year_error: Rate = _rate_field(0.003)  # one or ten years out (a keying slip)
    # sex
    sex_missing: Rate = _rate_field(0.01)
    sex_wrong: Rate = _rate_field(0.002)
    # postcode
    postcode_missing: Rate = _rate_field(0.02)
    postcode_previous: Rate = _rate_field(0.05)  # the person's previous address
    postcode_pseudo: Rate = _rate_field(0.003)  # NHS pseudo-postcodes (no fixed abode, not known, ...)
    postcode_typo: Rate = _rate_field(0.003)  # wrong sector digit
    # NHS number
    nhs_missing: Rate = _rate_field(0.03)
    nhs_digit: Rate = _rate_field(0.003)  # one digit mis-keyed (fails the modulus-11 check)
    nhs_transposed: Rate = _rate_field(0.002)  # two adjacent digits swapped (fails the check)
    nhs_other_person: Rate = _rate_field(0.001)  # a valid number of someone else (a twin's, a relative's)

    @model_validator(mode="after")
    def _each_field_at_most_one(self) -> "FieldErrors":
        for field, total in self.totals().items():
            if total > 1.0 + 1e-12:
                raise ValueError(f"error rates of field {field!r} sum to {total:.4f} > 1")
        return self

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in type(self).model_fields:
            field = name.split("_", 1)[0]
            out[field] = out.get(field, 0.0) + getattr(self, name)
        return out


class DatasetSpec(Frozen):
    """One generated dataset: what kind of source it imitates, who is in it, how many rows, which errors."""

    kind: Literal["gp", "hes", "prescriptions", "registry"]
    format: Literal["csv", "parquet"] = "csv"
    id_prefix: str = Field(pattern=r"^[A-Z]{2}$")
    # Probability that a person is in the dataset (registry: a deceased person's death is registered).
    coverage: Rate = _rate_field(1.0)
    # Multiplies coverage by age band (0-17, 18-39, 40-59, 60-79, 80+); capped at 1.
    coverage_by_age: list[float] = Field(default_factory=lambda: [1.0] * 5)
    # Extra coverage per long-term condition (relative): coverage * (1 + this * conditions).
    coverage_per_condition: float = Field(0.0, ge=0.0)
    # Coverage of persons with at least one long-term condition (prescriptions); None -> coverage.
    coverage_with_condition: Rate | None = None
    mean_records: float = Field(1.0, ge=1.0)  # mean rows per person in the dataset (1 + geometric extra)
    records_per_condition: float = Field(0.0, ge=0.0)  # extra mean rows per long-term condition
    max_records: int = Field(50, ge=1, le=1000)
    condition_share: Rate = _rate_field(0.0)  # share of rows coded with one of the person's conditions
    # GP only: probability that each of a person's long-term conditions is on the practice's coded
    # problem list (QOF-style disease registers), delivered as ';'-separated ICD-10 codes.
    problem_list_recording: Rate = _rate_field(0.0)
    errors: FieldErrors = Field(default_factory=FieldErrors)

    @field_validator("coverage_by_age")
    @classmethod
    def _five_bands(cls, value: list[float]) -> list[float]:
        if len(value) != len(AGE_BAND_LABELS) or any(v < 0 for v in value):
            raise ValueError(f"needs {len(AGE_BAND_LABELS)} non-negative values, one per age band {AGE_BAND_LABELS}")
        return value


class ConditionSpec(Frozen):
    """A long-term condition: prevalence by age band, sex ratio and co-occurrence with earlier conditions."""

    name: str
    prevalence: list[float]  # one probability per age band (0-17, 18-39, 40-59, 60-79, 80+)
    female_rr: float = Field(1.0, gt=0)  # women's risk relative to men's (marginal prevalence unchanged)
    depends_on: dict[str, float] = Field(default_factory=dict)  # earlier condition -> relative risk

    @field_validator("prevalence")
    @classmethod
    def _five_probabilities(cls, value: list[float]) -> list[float]:
        if len(value) != len(AGE_BAND_LABELS) or any(not 0 <= v <= 1 for v in value):
            raise ValueError(f"needs {len(AGE_BAND_LABELS)} probabilities, one per age band {AGE_BAND_LABELS}")
        return value


class PopulationSpec(Frozen):
    """Who the persons are: dates, family structure, names, moves and deaths."""

    reference_date: date = date(2026, 1, 1)  # "today": ages and the end of the observation window
    window_years: int = Field(10, ge=1, le=50)  # records are dated within the window before the reference date
    middle_name_rate: Rate = _rate_field(0.6)
    nickname_rate: Rate = _rate_field(0.5)  # persons whose name has nicknames and who go by one
    surname_tail_share: Rate = _rate_field(0.4)  # surnames from the generated long tail of rare names
    hyphenated_rate: Rate = _rate_field(0.015)  # double-barrelled surnames from birth
    surname_change_rate_female: Rate = _rate_field(0.6)  # adult women who changed surname at marriage
    surname_change_rate_male: Rate = _rate_field(0.02)
    hyphenate_at_marriage: Rate = _rate_field(0.06)  # of those who change: BIRTH-SPOUSE
    twin_rate: Rate = _rate_field(0.015)  # of consecutive person pairs: twins (same birth date, surname, address)
    lookalike_rate: Rate = _rate_field(0.0005)  # strangers with the same name, sex and birth date as someone
    mean_moves: float = Field(0.8, ge=0, le=3)  # address changes within the window (at most 3)
    local_move_share: Rate = _rate_field(0.7)  # moves within the same postcode area
    mortality_scale: float = Field(1.0, ge=0)  # scales a Gompertz annual mortality curve
    dob_placeholders: list[date] = Field(default_factory=lambda: [date(1900, 1, 1), date(1901, 1, 1)])
    pseudo_postcodes: list[str] = Field(default_factory=lambda: ["ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ"])

    @field_validator("dob_placeholders", "pseudo_postcodes")
    @classmethod
    def _not_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("needs at least one value")
        return value


def _default_conditions() -> list[ConditionSpec]:
    # Hand-made approximations of UK primary-care register prevalence by age (QOF-like), see the data README.
    c = ConditionSpec
    return [
        c(name="hypertension", prevalence=[0.001, 0.03, 0.15, 0.40, 0.60]),
        c(name="diabetes", prevalence=[0.002, 0.015, 0.07, 0.15, 0.16], female_rr=0.8, depends_on={"hypertension": 1.8}),
        c(name="asthma", prevalence=[0.10, 0.08, 0.07, 0.07, 0.06], female_rr=1.2),
        c(name="copd", prevalence=[0.0, 0.002, 0.015, 0.05, 0.07], depends_on={"asthma": 2.0}),
        c(name="chd", prevalence=[0.0, 0.002, 0.02, 0.09, 0.17], female_rr=0.6, depends_on={"hypertension": 1.8, "diabetes": 1.8}),
        c(name="heart_failure", prevalence=[0.0, 0.0005, 0.004, 0.02, 0.08], depends_on={"chd": 3.0, "hypertension": 1.5, "copd": 1.8}),
        c(name="atrial_fibrillation", prevalence=[0.0, 0.0005, 0.005, 0.04, 0.12], depends_on={"hypertension": 1.5, "heart_failure": 2.5}),
        c(name="stroke", prevalence=[0.0, 0.001, 0.007, 0.03, 0.08], depends_on={"atrial_fibrillation": 2.5, "hypertension": 1.5}),
        c(name="ckd", prevalence=[0.0, 0.002, 0.015, 0.07, 0.25], depends_on={"diabetes": 2.5, "hypertension": 2.0}),
        c(name="depression", prevalence=[0.01, 0.12, 0.14, 0.11, 0.09], female_rr=1.8, depends_on={"copd": 1.5, "diabetes": 1.3, "stroke": 1.5}),
        c(name="dementia", prevalence=[0.0, 0.0, 0.001, 0.015, 0.10], female_rr=1.3, depends_on={"stroke": 2.0}),
        c(name="cancer", prevalence=[0.001, 0.005, 0.025, 0.07, 0.12]),
        c(name="epilepsy", prevalence=[0.005, 0.008, 0.009, 0.009, 0.009]),
        c(name="smi", prevalence=[0.001, 0.008, 0.011, 0.009, 0.006]),
        c(name="hypothyroidism", prevalence=[0.002, 0.015, 0.035, 0.06, 0.07], female_rr=5.0),
        c(name="rheumatoid_arthritis", prevalence=[0.0005, 0.003, 0.008, 0.012, 0.012], female_rr=2.5),
    ]


def _default_datasets() -> dict[str, DatasetSpec]:
    return {
        # A GP registration list: nearly everyone; a new row when someone re-registers.
        # Its problem list codes most long-term conditions (primary care holds the disease registers).
        "gp": DatasetSpec(
            kind="gp", format="csv", id_prefix="GP", coverage=0.96, mean_records=1.05, max_records=5,
            problem_list_recording=0.98,
        ),
        # Hospital episodes: more likely and more of them with age and long-term conditions.
        "hes": DatasetSpec(
            kind="hes",
            format="csv",
            id_prefix="HE",
            coverage=0.35,
            coverage_by_age=[0.7, 0.8, 1.0, 1.5, 2.0],
            coverage_per_condition=0.25,
            mean_records=1.6,
            records_per_condition=0.3,
            max_records=40,
            condition_share=0.4,
            errors=FieldErrors(
                given_typo=0.03,
                given_nickname=0.06,
                family_typo=0.03,
                dob_swapped=0.04,
                postcode_missing=0.03,
                postcode_previous=0.08,
                nhs_missing=0.08,
                nhs_digit=0.005,
                sex_missing=0.02,
            ),
        ),
        # Dispensed prescription items: repeat items for long-term conditions, acute items for others.
        "prescriptions": DatasetSpec(
            kind="prescriptions",
            format="parquet",
            id_prefix="RX",
            coverage=0.3,
            coverage_with_condition=0.95,
            mean_records=1.5,
            records_per_condition=1.0,
            max_records=60,
            condition_share=0.85,
            errors=FieldErrors(
                given_missing=0.05,
                given_nickname=0.08,
                given_initial=0.1,
                nhs_missing=0.01,
                postcode_previous=0.06,
            ),
        ),
        # Death registrations: one row per registered death, with the underlying cause.
        "registry": DatasetSpec(
            kind="registry",
            format="csv",
            id_prefix="DR",
            coverage=0.99,
            max_records=1,
            condition_share=0.7,
            errors=FieldErrors(nhs_missing=0.05, given_nickname=0.0, given_middle_first=0.0, family_previous=0.02, postcode_previous=0.02),
        ),
    }


class SynthConfig(Frozen):
    """The generator's whole configuration; ``SynthConfig()`` is the default."""

    persons_per_file: int = Field(250_000, ge=1_000)  # output files hold the records of this many persons
    frailty_sigma: float = Field(0.5, ge=0, le=2)  # shared log-normal frailty: co-occurrence of all conditions
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    conditions: list[ConditionSpec] = Field(default_factory=_default_conditions)
    datasets: dict[str, DatasetSpec] = Field(default_factory=_default_datasets)

    @model_validator(mode="after")
    def _conditions_in_order(self) -> "SynthConfig":
        seen: set[str] = set()
        for cond in self.conditions:
            if cond.name in seen:
                raise ValueError(f"condition {cond.name!r} listed twice")
            unknown = [d for d in cond.depends_on if d not in seen]
            if unknown:
                raise ValueError(f"condition {cond.name!r} depends on {unknown}, which must be listed before it")
            seen.add(cond.name)
        for name in self.datasets:
            if not name.isidentifier() or name != name.lower():
                raise ValueError(f"dataset name {name!r} must be a lower-case identifier")
        prefixes = [d.id_prefix for d in self.datasets.values()]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"dataset id prefixes must differ: {prefixes}")
        return self


def load_synth_config(path: str | Path) -> SynthConfig:
    """Load ``conf/synth.yaml`` (or another file) by explicit path; unknown keys are rejected."""
    return load(path, SynthConfig)
