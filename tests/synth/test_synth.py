"""The synthetic population generator: validity, truth bookkeeping, error rates, determinism."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink.provider import sources, standardise
from natlink.synth import generate as synth
from natlink.config import DatasetConfig, load, project_root
from natlink.errors import ConfigError
from natlink.config.synth import DatasetSpec, FieldErrors, SynthConfig, load_synth_config

PERSONS = 3000
SEED = 5
SMALL = SynthConfig(persons_per_file=1000)  # 3 files per table: exercises more than one partition


# Golden digests, computed from the generator before natlink.synth was split into modules: a
# change to any draw, name table, error rate or column format changes them. Update them only for
# an intended change of output, and say so. sha256 over the sorted repr() of every row (rows, not
# file bytes: the Parquet footer names the writer's version).
POPULATION_200_SEED_3 = "cca323e698a937b4308463864e6d531c6f844ef25f990edaec5eaa2502de8b9c"
GOLDEN_TABLES = {  # the `generated` fixture: 3000 persons, seed 5, 1000 persons per file
    "gp": (3019, "cc2d9f61778784871eb534999d914f5a0e35d75f900513bafcf0399fa797ca8d"),
    "hes": (2568, "301c73e595bd9edcce23f7124561aecd31961ee7d939b2f06fc6ee1e23338533"),
    "prescriptions": (4552, "f18c9934dbbf4cc9b4990281f39e04b9ae46cc5a306860bda836bfa1ea94e2c8"),
    "registry": (183, "031b607f94c64571b2a7333f714b85821cb67bdc4819165afdf27d80116ae9df"),
    "truth": (10322, "8be99706fade9756a0052b57731963e71798dbce05eba78413215a1e4f954add"),
    "truth_persons": (3000, "277f8c34cdfbc9037d00b4c3eb0a9f3a62c76c76e52d4fb2285660e95d75c924"),
    "truth_conditions": (2136, "987303ea9ef44791bc616de9a171d28ba5a507f2cd4d13df28886f7764a585e2"),
}


def _rows_digest(df) -> str:
    lines = sorted(repr(tuple(r)) for r in df.collect())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _files_digest(folder: str) -> list[tuple[str, str]]:
    """(part number, sha256) of every data file, in part order (file names carry a random id)."""
    out = []
    for f in sorted(Path(folder).glob("part-*")):
        out.append((f.name.split("-")[1], hashlib.sha256(f.read_bytes()).hexdigest()))
    return out


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return synth.generate(spark, out, persons=PERSONS, seed=SEED, config=SMALL)


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
    pop = synth.population(spark, PERSONS, SEED, SMALL).select("nhs_number")
    numbers = [r[0] for r in pop.collect()]
    assert len(numbers) == PERSONS == len(set(numbers))
    assert all(synth.nhs_check_digit_ok(n) for n in numbers)
    assert sum(n[0] in "467" for n in numbers) == PERSONS  # England and Wales ranges (4xx, 600-708)
    known = set(numbers)
    gp = spark.read.option("header", True).csv(generated.datasets["gp"]).select("nhs_no").collect()
    present = [r[0] for r in gp if r[0] is not None]
    # an uncorrupted number is some person's number and passes modulus 11; digit errors and
    # transpositions never do (single-digit changes and adjacent swaps are always detected)
    assert all(synth.nhs_check_digit_ok(n) == (n in known) for n in present)
    assert sum(n in known for n in present) > 0.95 * len(present)


def test_nhs_check_digit_reference_values():
    # by hand: 4*10 + 0*9 + 1*8 + 0*7 + 2*6 + 3*5 + 2*4 + 1*3 + 3*2 = 92; 92 mod 11 = 4; 11 - 4 = 7
    assert synth.nhs_check_digit_ok("4010232137")
    assert not synth.nhs_check_digit_ok("4010232136")
    assert not synth.nhs_check_digit_ok("0410232137")  # adjacent digits swapped
    # 1000000060: 1*10 + 6*2 = 22, 22 mod 11 = 0, 11 - 0 = 11 -> check digit 0
    assert synth.nhs_check_digit_ok("1000000060") and not synth.nhs_check_digit_ok("1000000061")
    assert not synth.nhs_check_digit_ok(None)


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(spark, generated, tmp_path):
    again = synth.generate(spark, tmp_path, persons=PERSONS, seed=SEED, config=SMALL, datasets=["gp", "registry"])
    for name in ("gp", "registry"):
        assert _files_digest(again.datasets[name]) == _files_digest(generated.datasets[name])
        assert len(_files_digest(again.datasets[name])) == math.ceil(PERSONS / SMALL.persons_per_file)
    assert _files_digest(again.truth_persons) == _files_digest(generated.truth_persons)
    assert _files_digest(again.truth_conditions) == _files_digest(generated.truth_conditions)
    a = spark.read.parquet(generated.truth).where(F.col("dataset").isin("gp", "registry"))
    b = spark.read.parquet(again.truth)
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0

    cols = ["true_person_id", "given_name", "family_name", "dob", "nhs_number", "postcode"]
    one = synth.population(spark, 2000, seed=7).select(cols)
    # the same rows whatever the partitioning: 1 range vs 8 ranges of person numbers
    eight = synth.population(spark, 2000, seed=7, config=SynthConfig(persons_per_file=1000)).select(cols)
    assert one.exceptAll(eight).count() == 0
    other = synth.population(spark, 2000, seed=8).select(cols)
    same = one.join(other, on=cols, how="inner").count()
    assert same == 0


def test_population_of_200_persons_matches_its_golden_digest(spark):
    assert _rows_digest(synth.population(spark, 200, 3)) == POPULATION_200_SEED_3


def test_generated_tables_match_their_golden_digests(spark, generated):
    found = {}
    for name, path in generated.datasets.items():
        reader = spark.read.option("header", True)
        df = reader.csv(path) if generated.formats[name] == "csv" else reader.parquet(path)
        found[name] = (df.count(), _rows_digest(df))
    for name in ("truth", "truth_persons", "truth_conditions"):
        df = spark.read.parquet(getattr(generated, name))
        found[name] = (df.count(), _rows_digest(df))
    assert found == GOLDEN_TABLES


def _rates_config() -> tuple[SynthConfig, FieldErrors]:
    errors = FieldErrors(
        given_missing=0.05, given_typo=0.08, given_nickname=0.3, given_middle_first=0.2, given_initial=0.05,
        family_missing=0.04, family_typo=0.08, family_previous=0.3, family_partial=0.3,
        dob_missing=0.04, dob_swapped=0.2, dob_placeholder=0.03, dob_partial=0.03, dob_day_error=0.05, dob_year_error=0.05,
        sex_missing=0.05, sex_wrong=0.03,
        postcode_missing=0.05, postcode_previous=0.2, postcode_pseudo=0.03, postcode_typo=0.05,
        nhs_missing=0.05, nhs_digit=0.05, nhs_transposed=0.05, nhs_other_person=0.03,
    )  # fmt: skip
    spec = DatasetSpec(kind="gp", id_prefix="GP", coverage=1.0, mean_records=2.0, max_records=6, errors=errors)
    return SynthConfig(datasets={"gp": spec}), errors


def test_corruption_rates_match_the_configuration(spark, tmp_path):
    """Each error type's observed rate among eligible records, from corrupted vs clean values."""
    cfg, e = _rates_config()
    persons = 6000
    # Materialise the generator's output first (as generate() does, per-operator codegen): the
    # checks below over the unmaterialised expression chain would compile one enormous method.
    spark.conf.set("spark.sql.codegen.wholeStage", "false")
    try:
        pop = synth.population(spark, persons, 11, cfg).cache()
        synth.dataset_records(pop, 11, "gp", cfg.datasets["gp"], cfg, persons).write.parquet(str(tmp_path / "recs"))
    finally:
        spark.conf.unset("spark.sql.codegen.wholeStage")
        pop.unpersist()
    recs = spark.read.parquet(str(tmp_path / "recs")).cache()
    lev = F.levenshtein
    g, rg = F.col("given_name"), F.col("r_given")
    f, rf = F.col("clean_family"), F.col("r_family")
    d, rd = F.col("dob"), F.col("r_dob")
    p, rp = F.col("clean_postcode"), F.col("r_postcode")
    n, rn = F.col("nhs_number"), F.col("r_nhs")
    day, month = F.dayofmonth(d), F.month(d)
    has_parts = f.contains("-") | f.contains(" ")
    pseudo = ["ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ"]
    # (name, configured rate, eligible records, records showing that error)
    checks = [
        ("given_missing", e.given_missing, F.lit(True), rg.isNull()),
        ("given_typo", e.given_typo, F.length(g) >= 2, rg.isNotNull() & (rg != g) & (lev(rg, g) <= 2) & (F.length(rg) > 1)
         & ~F.coalesce(rg == F.col("nickname"), F.lit(False)) & ~F.coalesce(rg == F.col("middle_name"), F.lit(False))),
        ("given_nickname", e.given_nickname, F.col("nickname").isNotNull(), rg == F.col("nickname")),
        ("given_middle_first", e.given_middle_first, F.col("middle_name").isNotNull(), rg == F.col("middle_name")),
        ("given_initial", e.given_initial, F.length(g) >= 2, rg == F.substring(g, 1, 1)),
        ("family_missing", e.family_missing, F.lit(True), rf.isNull()),
        ("family_previous", e.family_previous, F.col("previous_family").isNotNull(), rf == F.col("previous_family")),
        # a previous surname is often one part of a double-barrelled one: judge partials without one
        ("family_partial", e.family_partial, has_parts & F.col("previous_family").isNull(), ((rf == F.regexp_extract(f, r"^([^- ]+)[- ]", 1))
         | (rf == F.regexp_extract(f, r"[- ]([^- ]+)$", 1)) | (rf == F.regexp_replace(f, "-", " "))
         | (rf == F.regexp_replace(f, " ", "-"))) & (rf != f)),
        ("dob_missing", e.dob_missing, F.lit(True), rd.isNull()),
        ("dob_swapped", e.dob_swapped, (day <= 12) & (day != month), rd == F.make_date(F.year(d), day, month)),
        ("dob_placeholder", e.dob_placeholder, F.lit(True), rd.isin("1900-01-01", "1901-01-01")),
        ("dob_day_error", e.dob_day_error, F.lit(True), (F.abs(F.datediff(rd, d)) >= 1) & (F.abs(F.datediff(rd, d)) <= 3)),
        ("dob_year_error", e.dob_year_error, F.lit(True), F.abs(F.months_between(rd, d)).isin(12.0, 120.0)),
        ("sex_missing", e.sex_missing, F.lit(True), F.col("r_sex").isNull()),
        ("sex_wrong", e.sex_wrong, F.lit(True), F.col("r_sex") != F.col("sex")),
        ("postcode_missing", e.postcode_missing, F.lit(True), rp.isNull()),
        ("postcode_previous", e.postcode_previous, F.col("previous_postcode") != p, rp == F.col("previous_postcode")),
        ("postcode_pseudo", e.postcode_pseudo, F.lit(True), rp.isin(*pseudo)),
        ("postcode_typo", e.postcode_typo, F.lit(True), (F.length(rp) == F.length(p)) & (lev(rp, p) == 1)),
        ("nhs_missing", e.nhs_missing, F.lit(True), rn.isNull()),
        ("nhs_digit", e.nhs_digit, F.lit(True), lev(rn, n) == 1),
        ("nhs_transposed", e.nhs_transposed, F.lit(True), (lev(rn, n) == 2) & (F.array_sort(F.split(rn, "")) == F.array_sort(F.split(n, "")))),
    ]  # fmt: skip
    aggs = []
    for name, _rate, eligible, shows in checks:
        aggs.append(F.sum(eligible.cast("int")).alias(f"{name}__n"))
        aggs.append(F.sum((eligible & F.coalesce(shows, F.lit(False))).cast("int")).alias(f"{name}__k"))
    aggs.append(F.count(F.lit(1)).alias("records"))
    row = recs.agg(*aggs).first()
    assert row["records"] > 1.7 * persons
    failures = []
    for name, rate, _eligible, _shows in checks:
        n_, k = row[f"{name}__n"], row[f"{name}__k"]
        assert n_ > 150, (name, n_)
        sd = math.sqrt(rate * (1 - rate) / n_)
        observed = k / n_
        # 4.5 standard errors plus a small allowance for coincidences (a typo equal to a nickname...)
        if abs(observed - rate) > 4.5 * sd + 0.004:
            failures.append((name, rate, round(observed, 4), n_))
    assert not failures, failures
    # an uncorrupted NHS number is valid; other people's numbers are valid too but not the person's
    sample = recs.where(rn == n).select("r_nhs").limit(2000).collect()
    assert all(synth.nhs_check_digit_ok(r[0]) for r in sample)
    other = recs.where(rn.isNotNull() & (rn != n) & (lev(rn, n) > 2)).select("r_nhs").collect()
    assert other and all(synth.nhs_check_digit_ok(r[0]) for r in other)
    recs.unpersist()


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


def test_conf_synth_yaml_is_the_default_and_strict(tmp_path):
    assert load_synth_config(project_root() / "conf" / "synth.yaml") == SynthConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("persons_per_file: 5000\nsurprise: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="surprise"):
        load_synth_config(bad)
    with pytest.raises(ValueError, match="given"):
        FieldErrors(given_missing=0.6, given_typo=0.5)
    with pytest.raises(ValueError, match="listed before"):
        SynthConfig(conditions=[{"name": "diabetes", "prevalence": [0.1] * 5, "depends_on": {"hypertension": 2}}])


def test_generate_rejects_unknown_datasets_and_sizes(spark, tmp_path):
    with pytest.raises(ConfigError, match="unknown datasets"):
        synth.generate(spark, tmp_path, persons=10, seed=1, datasets=["nope"])
    with pytest.raises(ConfigError, match="persons"):
        synth.population(spark, 0, 1)
