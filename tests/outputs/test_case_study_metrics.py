"""natlink.outputs.case_study and the provider-side age band, on tiny inline frames worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import types as T

from natlink.outputs import case_study as cs
from natlink.provider import standardise as S
from natlink.config.datasets import AgeBandRules, DatasetConfig
from natlink.config.case_study import load_config as load_case_study_config
from natlink.errors import ConfigError

RULES = AgeBandRules(reference_date=dt.date(2026, 1, 1))
CODES = {"diag_01": "icd10", "diag_02": "icd10", "bnf_code": "bnf"}


# --- age band ---------------------------------------------------------------------------------


def test_age_band_in_whole_years_at_the_reference_date(spark):
    # Ages at 2026-01-01: born 1986-01-01 -> 40 (birthday today); 1986-01-02 -> 39; 2026-01-01 -> 0;
    # 1936-01-01 -> 90 (open band); 1936-01-02 -> 89; after the reference date or unknown -> NULL.
    dobs = {
        "a": dt.date(1986, 1, 1), "b": dt.date(1986, 1, 2), "c": dt.date(2026, 1, 1),
        "d": dt.date(1936, 1, 1), "e": dt.date(1936, 1, 2), "f": dt.date(2026, 1, 2), "g": None,
    }
    df = spark.createDataFrame(list(dobs.items()), "id string, dob date")
    got = {r["id"]: r["band"] for r in df.select("id", S.age_band(df["dob"], RULES).alias("band")).collect()}
    assert got == {"a": "40-49", "b": "30-39", "c": "0-9", "d": "90+", "e": "80-89", "f": None, "g": None}


def test_age_band_rules_validate_and_list_labels():
    assert RULES.labels() == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+"]
    assert AgeBandRules(reference_date="2020-06-30", width=20, open_from=80).labels() == ["0-19", "20-39", "40-59", "60-79", "80+"]
    with pytest.raises(ValueError, match="multiple of width"):
        AgeBandRules(reference_date="2020-06-30", width=20, open_from=90)


def _dataset(**extra) -> DatasetConfig:
    base = {
        "name": "t",
        "source": {"path": "unused"},
        "record_id": "id",
        "columns": {"nhs_number": "nhs", "given_name": "given", "date_of_birth": "dob"},
        "event_columns": {"diag_01": "d1"},
        "age_band": {"reference_date": "2026-01-01"},
    }
    base.update(extra)
    return DatasetConfig.model_validate(base)


def test_standardise_derives_the_age_band_from_the_cleaned_date_of_birth(spark):
    cfg = _dataset()
    assert cfg.kept_columns() == ["diag_01", "age_band"]
    assert S.output_columns(cfg).index("age_band") == S.output_columns(cfg).index("diag_01") + 1
    rows = [("1", "1975-06-30", "I10X"), ("2", "1900-01-01", None), ("3", "junk", "E119")]
    df = spark.createDataFrame(rows, "id string, dob string, d1 string").selectExpr(
        "id", "CAST(NULL AS string) AS nhs", "'ANN' AS given", "dob", "d1"
    )
    out = {r["record_id"]: r for r in S.standardise(df, cfg, as_of=dt.date(2026, 1, 1)).collect()}
    # 1975-06-30 -> 50 at 2026-01-01; 1900-01-01 is a placeholder and junk unparseable: no band.
    assert (out["1"]["age_band"], out["1"]["diag_01"]) == ("50-59", "I10X")
    assert out["2"]["age_band"] is None and out["2"]["date_of_birth_flag"] == "placeholder"
    assert out["3"]["age_band"] is None and out["3"]["diag_01"] == "E119"


def test_age_band_cannot_be_an_event_column_name():
    with pytest.raises(ValueError, match="clash"):
        _dataset(event_columns={"age_band": "d1"})


# --- codes -> conditions ----------------------------------------------------------------------


RECORDS = T.StructType(
    [T.StructField(c, T.StringType()) for c in ("dataset", "record_id", "region", "age_band", "diag_01", "diag_02", "bnf_code")]
)


def test_codes_map_to_conditions_by_longest_prefix_and_ambiguity_is_kept(spark):
    rows = [
        # I10X -> hypertension (I10); E119 -> diabetes (E11); same condition twice counts once.
        ("hes", "h1", "LONDON", "60-69", "I10X", "E119", None),
        ("hes", "h2", "LONDON", "60-69", "I10X", "i10x", None),
        # J18x (pneumonia) is acute: unmatched.
        ("hes", "h3", "LONDON", "60-69", "J189", None, None),
        # 0301 bronchodilators: asthma or copd (ambiguous); 020602 -> hypertension only;
        # 0501 antibacterials: unmatched.
        ("rx", "r1", "LONDON", "60-69", None, None, "0301"),
        ("rx", "r2", "LONDON", "60-69", None, None, "020602"),
        ("rx", "r3", "LONDON", "60-69", None, None, "0501"),
    ]
    evidence, counts = cs.record_conditions(spark.createDataFrame(rows, RECORDS), CODES)
    got = sorted((r["record_id"], tuple(r["candidates"])) for r in evidence.collect())
    assert got == [
        ("h1", ("diabetes",)), ("h1", ("hypertension",)), ("h2", ("hypertension",)),
        ("r1", ("asthma", "copd")), ("r2", ("hypertension",)),
    ]
    # h2's two cells are one distinct code after upper-casing (per record and code).
    assert {(r["system"], r["outcome"]): r["codes"] for r in counts.collect()} == {
        ("icd10", "matched"): 3, ("icd10", "unmatched"): 1,
        ("bnf", "ambiguous"): 1, ("bnf", "matched"): 1, ("bnf", "unmatched"): 1,
    }


def test_a_problem_list_cell_holds_several_codes(spark):
    # A GP problem list: ';'-separated ICD-10 codes, spaces and case tolerated, empty parts skipped.
    rows = [("gp", "g1", "LONDON", "60-69", " i10;E11 ;;J45", None, None), ("gp", "g2", "LONDON", "60-69", None, None, None)]
    evidence, counts = cs.record_conditions(spark.createDataFrame(rows, RECORDS), CODES)
    got = sorted((r["record_id"], tuple(r["candidates"])) for r in evidence.collect())
    assert got == [("g1", ("asthma",)), ("g1", ("diabetes",)), ("g1", ("hypertension",))]
    assert {(r["system"], r["outcome"]): r["codes"] for r in counts.collect()} == {("icd10", "matched"): 3}


def test_condition_count_is_the_fewest_conditions_consistent_with_the_codes(spark):
    evidence = [
        ("A", ["hypertension"]), ("A", ["asthma", "copd"]),  # 1 sure + a disjoint set: 2
        ("B", ["asthma", "copd"]), ("B", ["asthma", "copd"]),  # one condition explains both: 1
        ("C", ["asthma", "copd"]), ("C", ["chd", "stroke"]),  # no common condition: 2
        ("D", ["hypertension"]), ("D", ["ckd", "heart_failure", "hypertension"]),  # covered by U: 1
        ("E", ["diabetes"]), ("E", ["hypertension"]), ("E", ["chd", "stroke"]),  # 2 sure + 1: 3
        ("F", ["asthma", "copd"]), ("F", ["chd", "copd"]), ("F", ["copd", "stroke"]),  # copd in all: 1
    ]
    df = spark.createDataFrame(evidence, "person string, candidates array<string>")
    got = {r["person"]: r["n_conditions"] for r in cs.condition_counts(df, "person").collect()}
    assert got == {"A": 2, "B": 1, "C": 2, "D": 1, "E": 3, "F": 1}


def test_persons_pool_records_and_take_the_most_frequent_band_and_known_region(spark):
    records = spark.createDataFrame(
        [
            ("p1", "hes", "h1", "LONDON", "60-69"),
            ("p1", "rx", "r1", "UNKNOWN", "60-69"),
            ("p1", "rx", "r2", "UNKNOWN", "50-59"),
            ("p2", "gp", "g1", "WALES", None),
        ],
        "pid string, dataset string, record_id string, region string, age_band string",
    )
    evidence = spark.createDataFrame(
        [("hes", "h1", ["hypertension"]), ("rx", "r1", ["diabetes"]), ("rx", "r2", ["diabetes"])],
        "dataset string, record_id string, candidates array<string>",
    )
    got = {r["pid"]: r.asDict() for r in cs.persons_from_records(records, evidence, "pid").collect()}
    # p1: band 60-69 (2 of 3 records); UNKNOWN is the commoner region but a known one wins.
    assert got["p1"] == {"pid": "p1", "age_band": "60-69", "region": "LONDON", "n_conditions": 2}
    assert got["p2"] == {"pid": "p2", "age_band": "UNKNOWN", "region": "WALES", "n_conditions": 0}


# --- prevalence and suppression -----------------------------------------------------------------


def test_prevalence_cube_and_small_cell_suppression(spark):
    persons = spark.createDataFrame(
        [("a", "60-69", "LONDON", 2), ("b", "60-69", "LONDON", 0), ("c", "60-69", "WALES", 3), ("d", "0-9", "WALES", 1)],
        "pid string, age_band string, region string, n_conditions int",
    )
    table = cs.prevalence(persons, "linked")
    got = {(r["level"], r["age_band"], r["region"]): (r["persons"], r["multimorbid"]) for r in table.collect()}
    # 4 persons, a and c have 2+; by band 60-69: 3 persons, 2; by region WALES: 2 persons, 1.
    assert got[("overall", "ALL", "ALL")] == (4, 2)
    assert got[("age_band", "60-69", "ALL")] == (3, 2)
    assert got[("age_band", "0-9", "ALL")] == (1, 0)
    assert got[("region", "ALL", "WALES")] == (2, 1)
    assert got[("age_band_region", "60-69", "LONDON")] == (2, 1)
    assert len(got) == 1 + 2 + 2 + 3
    overall = [r for r in table.collect() if r["level"] == "overall"][0]
    assert overall["prevalence"] == pytest.approx(0.5)

    hidden = {(r["level"], r["age_band"], r["region"]): r for r in cs.suppress(table, 3).collect()}
    # persons 4 and multimorbid 2: the count 2 is under 3, so withheld with the prevalence.
    assert hidden[("overall", "ALL", "ALL")]["persons"] == 4
    assert hidden[("overall", "ALL", "ALL")]["multimorbid"] is None
    assert hidden[("overall", "ALL", "ALL")]["prevalence"] is None
    assert hidden[("overall", "ALL", "ALL")]["suppressed"] is True
    # 0 is not a small count: 0-9 has persons 1 (withheld) and multimorbid 0 (kept as 0 but hidden
    # because persons is small).
    assert hidden[("age_band", "0-9", "ALL")]["persons"] is None
    assert cs.suppress(table, 0).collect() == table.collect()


def test_chart_spec_orders_bands_numerically_and_omits_suppressed_cells():
    rows = [
        {"method": "linked", "level": "age_band", "age_band": b, "region": "ALL", "prevalence": p}
        for b, p in (("10-19", 0.0), ("90+", 0.5), ("0-9", None), ("80-89", 0.4))
    ]
    spec = cs.prevalence_chart_spec(rows)
    assert spec["encoding"]["x"]["sort"] == ["10-19", "80-89", "90+"]
    assert [v["age_band"] for v in spec["data"]["values"]] == ["10-19", "90+", "80-89"]


def test_config_rejects_unknown_keys_and_coding_systems(tmp_path):
    bad = tmp_path / "cs.yaml"
    bad.write_text("code_columns: {diag_01: read_v2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="code_columns"):
        load_case_study_config(bad)
    bad.write_text("min_conditon: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="min_conditon"):
        load_case_study_config(bad)
    assert load_case_study_config(None).min_conditions == 2
