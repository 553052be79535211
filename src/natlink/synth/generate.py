"""Write a synthetic population's raw datasets and its truth tables.

Persons are generated in ``ceil(persons / persons_per_file)`` contiguous ranges of person
numbers; each range becomes one file per table, its rows sorted by record id. There is no
shuffle anywhere, so the same seed and configuration give byte-identical files.

Datasets (raw, as a provider would deliver them, each with its own column names and formats;
see ``conf/synth.yaml`` and ``conf/datasets/*.yaml``), under ``OUT/raw/NAME``:

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

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Iterable, Iterator

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.config.synth import SynthConfig
from natlink.errors import ConfigError
from natlink.synth.population import population
from natlink.synth.records import RAW_ID_COLUMNS, dataset_records, raw_columns, record_skeleton

log = logging.getLogger(__name__)

__all__ = ["SynthResult", "TRUTH_SCHEMA", "generate"]

TRUTH_SCHEMA = T.StructType(
    [
        T.StructField(C.DATASET, T.StringType(), False),
        T.StructField(C.RECORD_ID, T.StringType(), False),
        T.StructField(C.TRUE_PERSON_ID, T.StringType(), False),
    ]
)

# The generator's projections are long chains of hashes and lookups. Fused by whole-stage codegen
# into one method they exceed the JVM's 8 KB JIT limit and run interpreted (measured with JFR:
# ~110 us vs ~65 us CPU per person), and compiling the huge class costs tens of seconds per query.
# Per-operator code splits expressions into small, JIT-compiled methods. Set only during generate().
_SQL_CONF = {"spark.sql.codegen.wholeStage": "false"}


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
    names = _selected(cfg, datasets)
    out = Path(out_dir)
    steps: dict[str, float] = {}
    with _per_operator_codegen(spark):
        pop = population(spark, persons, seed, cfg).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            for name in [] if truth_only else names:  # truth_only: the truth tables alone
                spec = cfg.datasets[name]
                raw = raw_columns(dataset_records(pop, seed, name, spec, cfg, persons), seed, name, spec, cfg)
                _write(raw, out / "raw" / name, spec.format, [RAW_ID_COLUMNS[spec.kind]])
                _lap(steps, f"raw:{name}", time.perf_counter() - started)
            _write(_truth(pop, seed, cfg, names), out / "truth", "parquet", [C.DATASET, C.RECORD_ID])
            _lap(steps, "truth", time.perf_counter() - started)
            _write_truth_persons(pop, out)
        finally:
            pop.unpersist()
    counts = _record_counts(spark, out / "truth", names)
    seconds = time.perf_counter() - started
    _lap(steps, "truth_persons+conditions", seconds)
    log.info("synth: %d persons, records %s in %.1f s; step seconds %s", persons, counts, seconds, steps)
    return SynthResult(
        datasets={name: str(out / "raw" / name) for name in names},
        truth=str(out / "truth"),
        records=counts,
        persons=persons,
        truth_persons=str(out / "truth_persons"),
        truth_conditions=str(out / "truth_conditions"),
        formats={name: cfg.datasets[name].format for name in names},
        seconds=seconds,
        steps=steps,
    )


def _selected(cfg: SynthConfig, datasets: Iterable[str] | None) -> list[str]:
    """The dataset names asked for (default: every configured one), checked against the configuration."""
    names = list(cfg.datasets) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in cfg.datasets]
    if unknown:
        raise ConfigError(f"synth: unknown datasets {unknown}; configured: {sorted(cfg.datasets)}")
    if not names:
        raise ConfigError("synth: no datasets selected")
    return names


@contextmanager
def _per_operator_codegen(spark: SparkSession) -> Iterator[None]:
    """Set ``_SQL_CONF`` for the block, then restore what the session had (unset if nothing)."""
    saved = {k: spark.conf.get(k, None) for k in _SQL_CONF}
    for key, value in _SQL_CONF.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _lap(steps: dict[str, float], step: str, elapsed: float) -> None:
    """Record ``step``'s seconds: ``elapsed`` since the start less the steps before it."""
    steps[step] = round(elapsed - sum(steps.values()), 2)


def _write(df: DataFrame, path: Path, fmt: str, sort_by: list[str]) -> None:
    """One file per person range, rows sorted by ``sort_by``: byte-identical for the same input."""
    writer = df.sortWithinPartitions(*sort_by).write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", True).csv(str(path))
    else:
        writer.parquet(str(path))


def _truth(pop: DataFrame, seed: int, cfg: SynthConfig, names: list[str]) -> DataFrame:
    """(dataset, record_id, true_person_id) of every record of the datasets ``names``."""
    parts = [
        record_skeleton(pop, seed, name, cfg.datasets[name]).select(
            F.lit(name).alias(C.DATASET), F.col("record_id").alias(C.RECORD_ID), F.col(C.TRUE_PERSON_ID)
        )
        for name in names
    ]
    return reduce(DataFrame.unionByName, parts)


def _write_truth_persons(pop: DataFrame, out: Path) -> None:
    """``truth_persons`` (one row per person) and ``truth_conditions`` (one row per person and condition)."""
    persons = pop.select(
        C.TRUE_PERSON_ID,
        "sex",
        F.col("dob").alias("date_of_birth"),
        "age_band",
        "region",
        "date_of_death",
        "twin_of",
        "lookalike_of",
        "n_conditions",
    )
    _write(persons, out / "truth_persons", "parquet", [C.TRUE_PERSON_ID])
    conditions = pop.select(C.TRUE_PERSON_ID, F.explode("conditions").alias("condition"))
    _write(conditions, out / "truth_conditions", "parquet", [C.TRUE_PERSON_ID, "condition"])


def _record_counts(spark: SparkSession, truth_path: Path, names: list[str]) -> dict[str, int]:
    """Records per dataset, read back from the truth table (0 for a dataset with none)."""
    counted = spark.read.parquet(str(truth_path)).groupBy(C.DATASET).count().collect()
    counts = {name: 0 for name in names}
    counts.update({r[C.DATASET]: int(r["count"]) for r in counted})
    return counts
