"""Writing a synthetic population: truth bookkeeping, readable raw datasets, determinism."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink.config import DatasetConfig, load, project_root
from natlink.config.synth import SynthConfig
from natlink.errors import ConfigError
from natlink.provider import sources, standardise
from natlink.synth.generate import generate
from natlink.synth.nhs import nhs_check_digit_ok
from natlink.synth.population import population

PERSONS = 3000
SEED = 5
SMALL = SynthConfig(persons_per_file=1000)  # 3 files per table: exercises more than one partition

# Golden digests, computed from the generator before natlink.synth was split into modules: a
# change to any draw, name table, error rate or column format changes them. Update them only for
# an intended change of output, and say so.
GOLDEN_TABLES = {  # the `generated` fixture: 3000 persons, seed 5, 1000 persons per file
    "gp": (3019, "cc2d9f61778784871eb534999d914f5a0e35d75f900513bafcf0399fa797ca8d"),
    "hes": (2568, "301c73e595bd9edcce23f7124561aecd31961ee7d939b2f06fc6ee1e23338533"),
    "prescriptions": (4552, "f18c9934dbbf4cc9b4990281f39e04b9ae46cc5a306860bda836bfa1ea94e2c8"),
    "registry": (183, "031b607f94c64571b2a7333f714b85821cb67bdc4819165afdf27d80116ae9df"),
    "truth": (10322, "8be99706fade9756a0052b57731963e71798dbce05eba78413215a1e4f954add"),
    "truth_persons": (3000, "277f8c34cdfbc9037d00b4c3eb0a9f3a62c76c76e52d4fb2285660e95d75c924"),
    "truth_conditions": (2136, "987303ea9ef44791bc616de9a171d28ba5a507f2cd4d13df28886f7764a585e2"),
}


def _files_digest(folder: str) -> list[tuple[str, str]]:
    """(part number, sha256) of every data file, in part order (file names carry a random id)."""
    out = []
    for f in sorted(Path(folder).glob("part-*")):
        out.append((f.name.split("-")[1], hashlib.sha256(f.read_bytes()).hexdigest()))
    return out


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return generate(spark, out, persons=PERSONS, seed=SEED, config=SMALL)


def test_every_record_is_in_the_truth_table_exactly_once(spark, generated):
    truth = spark.read.parquet(generated.truth)
    assert truth.count() == generated.total_records
    assert truth.groupBy("dataset", "record_id").count().where(F.col("count") > 1).count() == 0
    assert truth.where(F.col("true_person_id").isNull()).count() == 0
    assert set(generated.records) == {"gp", "hes", "prescriptions", "registry"}
    root = project_root()
    for name in generated.records:
        ds = load(root / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        raw = sources.read_source(spark, ds, data_dir=str(Path(generated.truth).parent))
        assert "true_person_id" not in raw.columns
        assert raw.count() == generated.records[name], name
        ids = raw.select(F.lit(name).alias("dataset"), F.col(ds.record_id).alias("record_id"))
        # every raw record has a truth row, and every truth row of the dataset a raw record
        assert ids.join(truth, on=["dataset", "record_id"], how="left_anti").count() == 0, name
        assert truth.where(F.col("dataset") == name).join(ids, on=["dataset", "record_id"], how="left_anti").count() == 0


def test_raw_datasets_read_through_their_mappings(spark, generated):
    """Each mapping YAML reads its dataset; identifiers standardise to plausible values."""
    root = project_root()
    data_dir = str(Path(generated.truth).parent)
    for name in generated.records:
        ds = load(root / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        clean = standardise.standardise(sources.read_source(spark, ds, data_dir=data_dir), ds)
        row = clean.agg(
            F.count(F.lit(1)).alias("n"),
            F.avg(F.col("nhs_number").isNotNull().cast("int")).alias("nhs"),
            F.avg(F.col("date_of_birth").isNotNull().cast("int")).alias("dob"),
            F.avg(F.col("postcode").isNotNull().cast("int")).alias("pc"),
            F.avg(F.col("sex").isNotNull().cast("int")).alias("sex"),
            F.avg((F.col("region") != "UNKNOWN").cast("int")).alias("region"),
        ).first()
        # missing rates are a few percent; a column the mapping misreads would be ~0
        for col in ("nhs", "dob", "pc", "sex", "region"):
            assert row[col] > 0.85, (name, col, row[col])


def test_nhs_numbers_valid_unique_and_valid_when_not_corrupted(spark, generated):
    pop = population(spark, PERSONS, SEED, SMALL).select("nhs_number")
    numbers = [r[0] for r in pop.collect()]
    assert len(numbers) == PERSONS == len(set(numbers))
    assert all(nhs_check_digit_ok(n) for n in numbers)
    assert sum(n[0] in "467" for n in numbers) == PERSONS  # England and Wales ranges (4xx, 600-708)
    known = set(numbers)
    gp = spark.read.option("header", True).csv(generated.datasets["gp"]).select("nhs_no").collect()
    present = [r[0] for r in gp if r[0] is not None]
    # an uncorrupted number is some person's number and passes modulus 11; digit errors and
    # transpositions never do (single-digit changes and adjacent swaps are always detected)
    assert all(nhs_check_digit_ok(n) == (n in known) for n in present)
    assert sum(n in known for n in present) > 0.95 * len(present)


def test_same_seed_gives_byte_identical_files(spark, generated, tmp_path):
    again = generate(spark, tmp_path, persons=PERSONS, seed=SEED, config=SMALL, datasets=["gp", "registry"])
    for name in ("gp", "registry"):
        assert _files_digest(again.datasets[name]) == _files_digest(generated.datasets[name])
        assert len(_files_digest(again.datasets[name])) == math.ceil(PERSONS / SMALL.persons_per_file)
    assert _files_digest(again.truth_persons) == _files_digest(generated.truth_persons)
    assert _files_digest(again.truth_conditions) == _files_digest(generated.truth_conditions)
    a = spark.read.parquet(generated.truth).where(F.col("dataset").isin("gp", "registry"))
    b = spark.read.parquet(again.truth)
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


def test_generated_tables_match_their_golden_digests(spark, generated, rows_digest):
    found = {}
    for name, path in generated.datasets.items():
        reader = spark.read.option("header", True)
        df = reader.csv(path) if generated.formats[name] == "csv" else reader.parquet(path)
        found[name] = (df.count(), rows_digest(df))
    for name in ("truth", "truth_persons", "truth_conditions"):
        df = spark.read.parquet(getattr(generated, name))
        found[name] = (df.count(), rows_digest(df))
    assert found == GOLDEN_TABLES


def test_population_shape_conditions_and_truth_attributes(spark, generated):
    persons = spark.read.parquet(generated.truth_persons)
    assert persons.count() == PERSONS
    conditions = spark.read.parquet(generated.truth_conditions)
    stats = persons.agg(
        F.avg((F.col("sex") == "F").cast("int")).alias("female"),
        F.avg(F.col("date_of_death").isNotNull().cast("int")).alias("died"),
        F.countDistinct("region").alias("regions"),
        F.avg(F.col("twin_of").isNotNull().cast("int")).alias("twins"),
    ).first()
    assert 0.45 < stats["female"] < 0.56
    assert 0.02 < stats["died"] < 0.15
    assert stats["regions"] >= 10
    assert 0.01 < stats["twins"] < 0.06
    # prevalence rises with age; co-occurrence: hypertension is commoner with diabetes
    by_band = (
        conditions.where(F.col("condition") == "hypertension")
        .join(persons, "true_person_id")
        .groupBy("age_band")
        .count()
        .join(persons.groupBy("age_band").count().withColumnRenamed("count", "n"), "age_band")
        .select("age_band", (F.col("count") / F.col("n")).alias("p"))
        .collect()
    )
    p = {r["age_band"]: r["p"] for r in by_band}
    assert p.get("0-17", 0) < p["40-59"] < p["60-79"]
    cond = conditions.groupBy("true_person_id").agg(F.collect_set("condition").alias("c"))
    joined = persons.join(cond, "true_person_id", "left").where(F.col("age_band").isin("40-59", "60-79"))
    flags = joined.select(
        F.coalesce(F.array_contains("c", "diabetes"), F.lit(False)).alias("dm"),
        F.coalesce(F.array_contains("c", "hypertension"), F.lit(False)).alias("ht"),
    )
    rates = {r["dm"]: r["p"] for r in flags.groupBy("dm").agg(F.avg(F.col("ht").cast("int")).alias("p")).collect()}
    assert rates[True] > rates[False]


def test_generate_rejects_unknown_or_no_datasets(spark, tmp_path):
    with pytest.raises(ConfigError, match="unknown datasets"):
        generate(spark, tmp_path, persons=10, seed=1, datasets=["nope"])
    with pytest.raises(ConfigError, match="no datasets"):
        generate(spark, tmp_path, persons=10, seed=1, datasets=[])
