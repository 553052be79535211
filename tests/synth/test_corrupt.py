"""The error model: each error type's observed rate among eligible records matches its configured rate."""

from __future__ import annotations

import math

from pyspark.sql import functions as F

from natlink.config.synth import DatasetSpec, FieldErrors, SynthConfig
from natlink.synth.nhs import nhs_check_digit_ok
from natlink.synth.population import population
from natlink.synth.records import dataset_records


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
        pop = population(spark, persons, 11, cfg).cache()
        dataset_records(pop, 11, "gp", cfg.datasets["gp"], cfg, persons).write.parquet(str(tmp_path / "recs"))
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
    assert all(nhs_check_digit_ok(r[0]) for r in sample)
    other = recs.where(rn.isNotNull() & (rn != n) & (lev(rn, n) > 2)).select("r_nhs").collect()
    assert other and all(nhs_check_digit_ok(r[0]) for r in other)
    recs.unpersist()
