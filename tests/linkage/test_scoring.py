"""natlink's native scoring equals Splink's predict, with term-frequency adjustments on.

The data are synthetic tokens (opaque strings, no identifiers): a skewed surname distribution
so that term frequencies matter, and duplicates with known truth.
"""

from __future__ import annotations

import math
import random

import pytest

from natlink import columns as C
from natlink.linkage import engine as link
from natlink.linkage import scoring
from natlink.spark.scratch import Scratch
from natlink.tokens import reader

N_PERSONS = 300


def _settings(tf: bool) -> dict:
    def level(col: str, m: float, u: float, label: str) -> dict:
        out = {"sql_condition": f"{col}_l = {col}_r", "label_for_charts": label, "m_probability": m, "u_probability": u}
        if tf:
            out["tf_adjustment_column"] = col
            out["tf_adjustment_weight"] = 1.0
        return out

    def null(col: str) -> dict:
        return {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL", "label_for_charts": "null", "is_null_level": True}

    def other(m: float, u: float) -> dict:
        return {"sql_condition": "ELSE", "label_for_charts": "other", "m_probability": m, "u_probability": u}

    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": C.UNIQUE_ID,
        "probability_two_random_records_match": 0.002,
        "comparisons": [
            {"output_column_name": "family_name", "comparison_levels": [null("tk_family_name"), level("tk_family_name", 0.95, 0.02, "exact"), other(0.05, 0.98)]},
            {"output_column_name": "dob", "comparison_levels": [null("tk_dob"), {"sql_condition": "tk_dob_l = tk_dob_r", "label_for_charts": "exact", "m_probability": 0.97, "u_probability": 0.001}, other(0.03, 0.999)]},
            {"output_column_name": "postcode", "comparison_levels": [null("tk_postcode"), level("tk_postcode", 0.8, 0.01, "exact"), other(0.2, 0.99)]},
        ],
        "blocking_rules_to_generate_predictions": ["l.tk_family_name = r.tk_family_name", "l.tk_dob = r.tk_dob"],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": [],
    }


def _records() -> list[dict]:
    rng = random.Random(7)
    # Zipf-like surname tokens: a handful are very common, most are rare.
    surnames = [f"tk-fam-{i:03d}" for i in range(120)]
    weights = [1.0 / (i + 1) ** 1.2 for i in range(len(surnames))]
    rows = []
    for p in range(N_PERSONS):
        fam = rng.choices(surnames, weights)[0]
        dob = f"tk-dob-{rng.randrange(400):03d}"
        pc = f"tk-pc-{rng.randrange(200):03d}"
        for copy in range(rng.choice([1, 2, 2, 3])):
            rows.append(
                {
                    C.DATASET: "gp" if copy % 2 == 0 else "hes",
                    C.RECORD_ID: f"p{p}-{copy}",
                    C.REGION: "R1",
                    "tk_family_name": None if rng.random() < 0.03 else fam,
                    "tk_dob": dob if rng.random() > 0.05 else f"tk-dob-{rng.randrange(400):03d}",
                    "tk_postcode": pc if rng.random() > 0.2 else None,
                }
            )
    return rows


@pytest.fixture(scope="module")
def tokens(spark):
    schema = f"{C.DATASET} string, {C.RECORD_ID} string, {C.REGION} string, tk_family_name string, tk_dob string, tk_postcode string"
    return reader.with_unique_id(spark.createDataFrame(_records(), schema))


def _splink_scores(tokens, settings) -> dict[tuple[str, str], float]:
    from splink import DuckDBAPI, Linker

    db = DuckDBAPI()
    linker = Linker(db.register(tokens.toArrow()), settings)
    out = linker.inference.predict().as_pandas_dataframe()
    return {tuple(sorted((a, b))): w for a, b, w in zip(out["unique_id_l"], out["unique_id_r"], out["match_weight"])}


def _natlink_scores(tokens, settings) -> dict[tuple[str, str], float]:
    from natlink.linkage import blocking

    model = scoring.compile_model(settings)
    rules = blocking.rules_from_settings(settings)
    with Scratch(tokens.sparkSession) as scratch:
        records = link.prepare_records(tokens, model, rules, scratch)
        # threshold ~0 probability: every candidate pair, as Splink's predict returns them
        rows = link.predict(records, model, rules, threshold=1e-12).select("unique_id_l", "unique_id_r", "match_weight").collect()
    return {tuple(sorted((r[0], r[1]))): r[2] for r in rows}


@pytest.mark.parametrize("tf", [False, True], ids=["no-tf", "tf"])
def test_native_scores_equal_splink_predict(spark, tokens, tf):
    settings = _settings(tf)
    model = scoring.compile_model(settings)
    assert model.tf_columns == (["tk_family_name", "tk_postcode"] if tf else [])
    theirs = _splink_scores(tokens, settings)
    ours = _natlink_scores(tokens, settings)
    assert len(theirs) > 500
    assert set(ours) == set(theirs)
    worst = max(abs(ours[k] - theirs[k]) for k in theirs)
    assert worst < 1e-9, worst


def test_term_frequencies_reward_rare_agreement(spark, tokens):
    """With TF on, agreeing on a common surname is worth less than agreeing on a rare one; without, the same."""
    rows = tokens.collect()
    counts: dict[str, int] = {}
    for r in rows:
        if r["tk_family_name"] is not None:
            counts[r["tk_family_name"]] = counts.get(r["tk_family_name"], 0) + 1
    total = sum(counts.values())
    common = max(counts, key=counts.get)
    rare = min(counts, key=counts.get)

    def pair_weight(tf: bool, fam: str) -> float:
        # Two records agreeing on fam and nothing else known (dob differs, postcode null).
        pair = [
            {C.DATASET: "gp", C.RECORD_ID: "x1", C.REGION: "R1", "tk_family_name": fam, "tk_dob": "tk-dob-x1", "tk_postcode": None},
            {C.DATASET: "gp", C.RECORD_ID: "x2", C.REGION: "R1", "tk_family_name": fam, "tk_dob": "tk-dob-x2", "tk_postcode": None},
        ]
        extra = spark.createDataFrame(pair, tokens.drop(C.UNIQUE_ID).schema)
        both = tokens.unionByName(reader.with_unique_id(extra))
        scores = _natlink_scores(both, _settings(tf))
        return scores[("gp:x1", "gp:x2")]

    base = math.log2(0.002 / 0.998) + math.log2(0.03 / 0.999)
    assert pair_weight(False, common) == pytest.approx(base + math.log2(0.95 / 0.02))
    assert pair_weight(False, rare) == pytest.approx(base + math.log2(0.95 / 0.02))
    # Splink's TF: the level's u is replaced by the value's frequency (u_tf = count / total).
    for fam in (common, rare):
        u_tf = (counts[fam] + 2) / (total + 2)
        assert pair_weight(True, fam) == pytest.approx(base + math.log2(0.95 / u_tf), abs=1e-9)
    assert pair_weight(True, rare) > pair_weight(True, common) + 3


def test_model_config_term_frequency_switch():
    from natlink import config as cfgmod
    from natlink.errors import ConfigError
    from natlink.linkage.settings import splink_settings

    cfg = cfgmod.load("conf/model_deterministic.yaml", cfgmod.ModelConfig, base_dir=cfgmod.project_root())
    assert cfg.tf_columns == ["tk_given_name", "tk_family_name", "tk_postcode"]
    off = cfg.with_term_frequencies(())
    assert off.tf_columns == []
    only = cfg.with_term_frequencies(["tk_family_name"])
    assert only.tf_columns == ["tk_family_name"]
    levels = [lv for c in splink_settings(only)["comparisons"] for lv in c["comparison_levels"] if "tf_adjustment_column" in lv]
    assert [(lv["tf_adjustment_column"], lv["tf_adjustment_weight"]) for lv in levels] == [("tk_family_name", 1.0)]
    with pytest.raises(ConfigError, match=r"no exact-agreement level on \['tk_nope'\]"):
        cfg.with_term_frequencies(["tk_nope"])
