"""Training cannot silently fail: every level is trained, floored by name, or training stops with
a named error saying which level and what to change; u of equality levels is exact.

The records are synthetic: integer stand-ins for tokens, made by Spark from a record number
(no identifiers). Persons 0..DUPES-1 have a second record with the same NHS token.
"""

from __future__ import annotations

import json

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.model import ModelConfig
from natlink.errors import EmptyTrainingRuleError, UntrainedLevelError
from natlink.linkage import model_store
from natlink.linkage.settings import splink_settings
from natlink.linkage.train import train
from natlink.linkage.u_exact import exact_u


def population(spark, persons: int, dupes: int, *, name_errors: bool = True) -> DataFrame:
    """``persons`` records plus a second record for the first ``dupes`` persons (same NHS token and
    date of birth; given name different for 1 in 10 of them when ``name_errors``)."""
    ids = spark.range(persons + dupes)
    person = F.when(F.col("id") >= persons, F.col("id") - persons).otherwise(F.col("id"))
    h = lambda salt, m: F.abs(F.xxhash64(person, F.lit(salt))) % m  # noqa: E731 - a pseudo-random value per person
    wrong_name = (F.col("id") >= persons) & (F.abs(F.xxhash64(F.col("id"), F.lit("e"))) % 10 == 0) if name_errors else F.lit(False)
    return ids.select(
        F.col("id").cast("string").alias(C.UNIQUE_ID),
        (person + 1_000_000_000).alias("tk_nhs_number"),
        F.when(wrong_name, h("n", 5000) + 5000).otherwise(h("n", 5000)).alias("tk_given_name"),
        h("d", 36500).alias("tk_dob"),
    )


def model(**training) -> ModelConfig:
    return ModelConfig.model_validate({
        "name": "train-test",
        "comparisons": [
            {"name": "nhs_number", "levels": [{"exact": "tk_nhs_number"}]},
            {"name": "given_name", "levels": [{"exact": "tk_given_name"}]},
            {"name": "date_of_birth", "levels": [{"exact": "tk_dob"}]},
        ],
        "blocking_rules_for_prediction": [["tk_nhs_number"], ["tk_dob"]],
        "training": {"deterministic_rules": [["tk_nhs_number", "tk_dob"]], **training},
    })


def _param(trained, comparison: str, level: str) -> dict:
    return next(r for r in trained.diagnostics["parameters"] if r["comparison"] == comparison and r["level"] == level)


def test_a_level_sampling_never_sees_stops_training_with_a_named_error(spark):
    df = population(spark, 3000, 150)
    # 1,000 sampled pairs (about 45 records) cannot meet one of 150 NHS duplicates in 4.6M pairs.
    cfg = model(u_exact=False, u_max_pairs=1000, em_blocking_rules=[["tk_nhs_number"], ["tk_dob"]])
    with pytest.raises(UntrainedLevelError) as caught:
        train(df, cfg)
    message = str(caught.value)
    assert "nhs_number / exact tk_nhs_number: u was not observed in the" in message
    assert "randomly sampled pairs" in message and "training.u_max_pairs (now 1e+03)" in message
    assert "training.u_exact: true" in message and "training.allow_unobserved.nhs_number" in message


def test_exact_u_trains_the_nhs_level_whatever_the_sampling(spark):
    """The same data and sampling as above, with u_exact (the default): u is the exact count."""
    df = population(spark, 3000, 150)
    cfg = model(u_max_pairs=1000, em_blocking_rules=[["tk_nhs_number"], ["tk_given_name"]])
    trained = train(df, cfg)
    nhs = _param(trained, "nhs_number", "exact tk_nhs_number")
    n = 3150
    assert nhs["u"] == 2 * 150 / (n * (n - 1)) and nhs["u_source"] == "exact"
    assert nhs["m"] > 0.9 and nhs["m_source"] == "EM"
    assert exact_u(df, splink_settings(cfg))["nhs_number"][1] == nhs["u"]
    assert model_store.untrained_levels(trained.settings) == []


def test_a_comparison_no_em_rule_trains_is_named_with_the_rule_to_add(spark):
    df = population(spark, 2000, 100)
    cfg = model(em_blocking_rules=[["tk_nhs_number", "tk_dob"], ["tk_dob", "tk_given_name"]])
    with pytest.raises(UntrainedLevelError) as caught:
        train(df, cfg)
    message = str(caught.value)
    assert "date_of_birth / exact tk_dob: m was not estimated: every EM blocking rule uses its columns ['tk_dob']" in message
    assert "add a rule to training.em_blocking_rules that blocks on none of ['tk_dob']" in message
    assert "given_name /" not in message  # trained by the first rule (1 in 10 duplicates differ on it)


def test_a_level_em_never_sees_among_matches_is_refused_or_floored_by_name(spark, tmp_path):
    """Duplicates never disagree on date of birth, and only the NHS rule trains that comparison:
    its ELSE level holds no EM pair. Refused by default; listed in allow_unobserved it gets the
    Jeffreys estimate over the EM pairs, recorded in the sidecar."""
    df = population(spark, 2000, 100)
    rules = [["tk_nhs_number"], ["tk_dob"]]
    with pytest.raises(UntrainedLevelError) as caught:
        train(df, model(em_blocking_rules=rules))
    message = str(caught.value)
    assert "date_of_birth / all other comparisons: m was not observed in the 100 EM pairs" in message
    assert "training.allow_unobserved.date_of_birth" in message

    cfg = model(em_blocking_rules=rules, allow_unobserved={"date_of_birth": ["all other comparisons"]})
    trained = train(df, cfg)
    floor = trained.diagnostics["floors"]
    assert [(f["comparison"], f["level"], f["parameter"], f["pairs"]) for f in floor] == [
        ("date_of_birth", "all other comparisons", "m", 100)
    ]
    other = _param(trained, "date_of_birth", "all other comparisons")
    assert other["m"] == pytest.approx(0.5 / 101) and other["m_source"] == "floor"
    exact = _param(trained, "date_of_birth", "exact tk_dob")
    assert exact["m"] + other["m"] == pytest.approx(1.0)  # the comparison's m still sums to 1
    path = model_store.save(trained, tmp_path / "m.json", key_fingerprint="test-fingerprint", training_manifest={})
    sidecar = json.loads(path.with_name("m.sidecar.json").read_text())
    assert sidecar["fit"]["floors"][0]["estimate"] == "Jeffreys 0.5 / (pairs + 1)"
    assert {r["m_source"] for r in sidecar["fit"]["parameters"]} == {"EM", "floor"}


def test_an_em_rule_without_pairs_is_refused_before_training(spark):
    df = population(spark, 500, 20).withColumn("tk_nhs_number", F.lit(None).cast("long"))  # data without NHS numbers
    with pytest.raises(EmptyTrainingRuleError, match=r"'l.tk_nhs_number = r.tk_nhs_number' gives no record pairs"):
        train(df, model(deterministic_rules=[["tk_dob"]], em_blocking_rules=[["tk_nhs_number"], ["tk_dob"]]))


def test_a_model_with_an_untrained_level_is_not_saved(tmp_path):
    settings = {"comparisons": [{"output_column_name": "x", "comparison_levels": [
        {"sql_condition": "x_l IS NULL OR x_r IS NULL", "is_null_level": True},
        {"sql_condition": "x_l = x_r", "label_for_charts": "exact", "m_probability": 0.9},
        {"sql_condition": "ELSE", "label_for_charts": "else", "m_probability": 0.1, "u_probability": 0.9}]}]}
    with pytest.raises(UntrainedLevelError, match=r"x / exact \(u\)"):
        model_store.save(model_store.TrainedModel(settings), tmp_path / "m.json", key_fingerprint="f", training_manifest={})
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_nhs_level_is_trained_at_a_million_records(spark):
    """1M records, 20k NHS duplicate pairs, the default u_max_pairs (2e6) and max_records (300k):
    sampling alone leaves the NHS level unobserved; with exact u it is trained from the counts."""
    df = population(spark, 980_000, 20_000).cache()
    # Duplicates share their date of birth: EM (NHS rule) sees no dob disagreement among matches.
    settings = dict(em_blocking_rules=[["tk_nhs_number"], ["tk_dob"]], allow_unobserved={"date_of_birth": ["all other comparisons"]})
    with pytest.raises(UntrainedLevelError, match="nhs_number / exact tk_nhs_number: u was not observed in the 2,000,"):
        train(df, model(u_exact=False, **settings))
    trained = train(df, model(**settings))
    nhs = _param(trained, "nhs_number", "exact tk_nhs_number")
    n = 1_000_000
    assert nhs["u"] == pytest.approx(2 * 20_000 / (n * (n - 1)), rel=1e-12) and nhs["u_source"] == "exact"
    assert nhs["match_weight"] > 20  # about log2(0.9 / 4e-8); Splink's default would be about +10
    df.unpersist()
