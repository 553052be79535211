"""Long-term conditions: who has which, and the clinical codes records carry for them.

A person's conditions follow prevalence by age band and sex, scaled by a shared log-normal
frailty (so all conditions co-occur) and by relative risks on conditions listed earlier. A
record codes one of its person's conditions at the dataset's ``condition_share``, otherwise an
acute code: ICD-10 diagnoses (HES), BNF items (prescriptions), GP problem lists, causes of death.
The codes come from ``natlink/data/conditions.csv`` and ``acute_codes.csv``.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink.config.synth import DatasetSpec, SynthConfig
from natlink.errors import ConfigError
from natlink.synth import tables
from natlink.synth.draws import choice, index, uniform

__all__ = ["check_condition_names", "with_conditions", "diagnosis_codes", "problem_list", "icd4", "cause_of_death"]


def check_condition_names(cfg: SynthConfig) -> list[str]:
    """The configured condition names, each checked against ``natlink/data/conditions.csv``."""
    known = tables.condition_codes()
    unknown = [c.name for c in cfg.conditions if c.name not in known]
    if unknown:
        raise ConfigError(f"synth config: conditions {unknown} are not in natlink/data/conditions.csv ({sorted(known)})")
    return [c.name for c in cfg.conditions]


def with_conditions(df: DataFrame, seed: int, cfg: SynthConfig) -> DataFrame:
    """Add ``conditions`` (array of names) from ``pid``, ``sex`` and the age band index ``_band``."""
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


def diagnosis_codes(seed: int, name: str, cfg: SynthConfig, spec: DatasetSpec, system: str) -> tuple[Column, Column]:
    """(primary, secondary) ``system`` codes (icd10 or bnf) for a record: one of the person's
    conditions, or an acute code. Reads ``conditions`` and the record key ``_rkey``."""
    meta = tables.condition_codes()
    key = F.col("_rkey")
    codes_of = F.create_map(
        *[x for c in cfg.conditions for x in (F.lit(c.name), F.array(*[F.lit(v) for v in meta[c.name][system]]))]
    )
    conds = F.col("conditions")
    n = F.size(conds)

    def from_conditions(salt: str) -> Column:
        chosen = F.element_at(conds, index(uniform(seed, f"{name}:{salt}c", key), F.greatest(n, F.lit(1))) + 1)
        codes = F.element_at(codes_of, chosen)
        return F.element_at(codes, index(uniform(seed, f"{name}:{salt}k", key), F.size(codes)) + 1)

    acute_kind = {"icd10": "hes", "bnf": "prescriptions"}[system]
    acute = choice(uniform(seed, f"{name}:acute", key), tables.acute_codes(acute_kind))
    use_condition = (n > 0) & (uniform(seed, f"{name}:uses-condition", key) < spec.condition_share)
    primary = F.when(use_condition, from_conditions("p")).otherwise(acute)
    secondary = F.when((n > 0) & (uniform(seed, f"{name}:second", key) < 0.5), from_conditions("s"))
    return primary, secondary


def problem_list(seed: int, name: str, cfg: SynthConfig, spec: DatasetSpec) -> Column:
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


def icd4(code: Column, u: Column) -> Column:
    """HES-style 4-character diagnosis: I10X for I10, otherwise a subdivision digit."""
    return F.when(code == "I10", F.lit("I10X")).otherwise(F.concat(code, index(u, 10).cast("string")))


def cause_of_death(seed: int, name: str, cfg: SynthConfig, spec: DatasetSpec) -> Column:
    """The person's condition with the highest death weight (at ``condition_share``), else an acute cause."""
    meta = tables.condition_codes()
    ranked = sorted(cfg.conditions, key=lambda c: -float(meta[c.name]["death_weight"]))
    key = F.col("_rkey")
    top = F.coalesce(
        *[F.when(F.array_contains("conditions", c.name), F.lit(meta[c.name]["icd10"][0])) for c in ranked],
        F.lit(None).cast("string"),
    )
    acute = choice(uniform(seed, f"{name}:acute", key), tables.acute_codes("death"))
    return F.when(top.isNotNull() & (uniform(seed, f"{name}:cause", key) < spec.condition_share), top).otherwise(acute)
