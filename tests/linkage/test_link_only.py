"""``link_type: link_only``: only pairs of records from different datasets are made, counted,
scored and trained on, on both engines, in the incremental pairs and in training;
``link_and_dedupe`` is read as ``dedupe_only`` (the same pairs over one union).

The population is built by hand so every pair count is worked out in the comments. Token values
are stand-ins (labelled strings or integers made from a record number), no identifiers.
"""

from __future__ import annotations

import itertools
import math

import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config import LinkConfig, load
from natlink.config.model import ModelConfig
from natlink.errors import BlockingBudgetError, ConfigError, TrainingError
from natlink.linkage import blocking, scoring
from natlink.linkage import engine as link
from natlink.linkage.settings import splink_settings
from natlink.linkage.train import train
from natlink.spark.scratch import Scratch
from natlink.tokens import reader

# Three datasets A, B, C. Rule 0 blocks on tk_a, rule 1 on tk_c; every pair a rule makes agrees
# on tk_b, so every pair scored is an edge (weight log2(0.1/0.9) + log2(0.9/0.01) = +3.3, p 0.91).
#   tk_a = x: a1 a2 | b1            dedupe: 3 pairs   link_only: 2 (a1-b1, a2-b1)
#   tk_a = y: a3 a4 | b2 b3 b4 | c1 dedupe: 15        link_only: (6^2 - 2^2 - 3^2 - 1^2) / 2 = 11
#   tk_c = k: a5 a6 | c2            dedupe: 3         link_only: 2 (a5-c2, a6-c2)
#   (a5, a6, c2 have tk_a w1, w2, w3: no rule-0 pair; b5 is alone)
ROWS = [
    ("A", "a1", "x", "p", None), ("A", "a2", "x", "p", None), ("B", "b1", "x", "p", None),
    ("A", "a3", "y", "q", None), ("A", "a4", "y", "q", None), ("B", "b2", "y", "q", None),
    ("B", "b3", "y", "q", None), ("B", "b4", "y", "q", None), ("C", "c1", "y", "q", None),
    ("A", "a5", "w1", "r", "k"), ("A", "a6", "w2", "r", "k"), ("C", "c2", "w3", "r", "k"),
    ("B", "b5", "z", "s", None),
]
DEDUPE_COUNTS, LINK_ONLY_COUNTS = [18, 3], [13, 2]


def _tokens(spark):
    schema = f"{C.DATASET} string, {C.RECORD_ID} string, tk_a string, tk_b string, tk_c string"
    return reader.with_unique_id(spark.createDataFrame(ROWS, schema).withColumn(C.REGION, F.lit("R1")))


def _settings(link_type: str) -> dict:
    def exact(col: str) -> list[dict]:
        return [
            {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL", "label_for_charts": "null", "is_null_level": True},
            {"sql_condition": f"{col}_l = {col}_r", "label_for_charts": "exact", "m_probability": 0.9, "u_probability": 0.01},
            {"sql_condition": "ELSE", "label_for_charts": "other", "m_probability": 0.1, "u_probability": 0.99},
        ]

    return {
        "link_type": link_type,
        "unique_id_column_name": C.UNIQUE_ID,
        "probability_two_random_records_match": 0.1,
        "comparisons": [{"output_column_name": "b", "comparison_levels": exact("tk_b")}],
        "blocking_rules_to_generate_predictions": ["l.tk_a = r.tk_a", "l.tk_c = r.tk_c"],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": [],
    }


def _all_pairs(cross: bool) -> set[tuple[str, str]]:
    """Every pair the two rules make, by hand from ROWS (``cross``: of two datasets only)."""
    out = set()
    for (d1, r1, a1, _, c1), (d2, r2, a2, _, c2) in itertools.combinations(ROWS, 2):
        if (a1 == a2 or (c1 is not None and c1 == c2)) and not (cross and d1 == d2):
            out.add(tuple(sorted((f"{d1}:{r1}", f"{d2}:{r2}"))))
    return out


def _link(spark, link_type: str, engine: str, budget: float = 5e8):
    cfg = LinkConfig(threshold_match_probability=0.5, engine=engine, max_comparisons_per_rule=budget, cannot_link={"enabled": False})
    with Scratch(spark) as scratch:
        result = link.link(_tokens(spark), _settings(link_type), cfg, scratch, n_records=len(ROWS))
        rows = result.edges.select("unique_id_l", "unique_id_r", "node_id_l", "node_id_r", "match_weight").collect()
    return result, rows


@pytest.mark.parametrize("engine", ["spark", "in_process"])
def test_link_only_scores_only_pairs_of_two_datasets_on_both_engines(spark, engine):
    dedupe, dedupe_edges = _link(spark, "dedupe_only", engine)
    only, only_edges = _link(spark, "link_only", engine)
    assert dedupe.engine == only.engine == engine
    # dedupe_only links a1-a2, a3-a4 and a5-a6 (one dataset each); link_only must not.
    assert {(r[0], r[1]) for r in dedupe_edges} == _all_pairs(cross=False) and len(dedupe_edges) == 21
    assert {(r[0], r[1]) for r in only_edges} == _all_pairs(cross=True) and len(only_edges) == 15
    assert not any(r[0].split(":")[0] == r[1].split(":")[0] for r in only_edges)
    # Pairs come out ordered as everywhere (smaller node id left; node ids in unique-id order).
    assert all(r[2] < r[3] and r[0] < r[1] for r in only_edges)
    weight = math.log2(0.1 / 0.9) + math.log2(0.9 / 0.01)
    assert all(r[4] == pytest.approx(weight) for r in only_edges)
    # The comparisons counted are the pairs scored.
    assert dedupe.comparisons_per_rule == DEDUPE_COUNTS and only.comparisons_per_rule == LINK_ONLY_COUNTS


@pytest.mark.parametrize("engine", ["spark", "in_process"])
def test_the_budget_counts_only_pairs_link_only_will_score(spark, engine):
    """A budget of 13 pairs a rule admits link_only's 13 (rule 0) and refuses dedupe_only's 18."""
    only, _ = _link(spark, "link_only", engine, budget=13)
    assert only.comparisons_per_rule == LINK_ONLY_COUNTS
    with pytest.raises(BlockingBudgetError, match="18 comparisons"):
        _link(spark, "dedupe_only", engine, budget=13)


@pytest.mark.parametrize("engine", ["spark", "in_process"])
def test_link_and_dedupe_links_exactly_as_dedupe_only(spark, engine):
    """A model JSON that says link_and_dedupe (Splink's name for every pair of several datasets)."""
    both, both_edges = _link(spark, "link_and_dedupe", engine)
    dedupe, dedupe_edges = _link(spark, "dedupe_only", engine)
    assert sorted(both_edges) == sorted(dedupe_edges) and len(both_edges) == 21
    assert both.comparisons_per_rule == dedupe.comparisons_per_rule == DEDUPE_COUNTS


def test_incremental_pairs_of_a_delivery_are_across_datasets_only(spark):
    """The pairs an incremental run scores for a delivery of b1, c1 and a6 (link_only): b1's with
    a1 and a2 (x), c1's with a3, a4, b2, b3, b4 (y), a6's with c2 (k): 8, each as the full
    candidate pairs have it. dedupe_only adds a5-a6 (both A)."""
    settings = _settings("link_only")
    model, rules = scoring.compile_model(settings), blocking.rules_from_settings(settings)
    columns = [C.UNIQUE_ID, *model.pair_columns]
    with Scratch(spark) as scratch:
        records = link.prepare_records(_tokens(spark), model, rules, scratch)
        arrivals = records.where(F.col(C.RECORD_ID).isin("b1", "c1", "a6"))
        touching = blocking.pairs_touching(records, arrivals, rules, columns, scratch, cross_source=True)
        got = {(r[0], r[1], r[2]) for r in touching.select("unique_id_l", "unique_id_r", "match_key").collect()}
        full = blocking.candidate_pairs(records, rules, columns, cross_source=True)
        want = {(r[0], r[1], r[2]) for r in full.select("unique_id_l", "unique_id_r", "match_key").collect()}
        dedupe = blocking.pairs_touching(records, arrivals, rules, columns, scratch)
        n_dedupe = dedupe.count()
    touched = {p for p in want if {p[0], p[1]} & {"B:b1", "C:c1", "A:a6"}}
    assert got == touched and len(got) == 2 + 5 + 1
    assert ("A:a6", "C:c2", 1) in got and not any(p[0].split(":")[0] == p[1].split(":")[0] for p in got)
    assert n_dedupe == len(got) + 1  # + a5-a6


def test_an_incremental_link_only_run_adds_only_pairs_across_datasets(spark, tmp_path):
    """Run 1 links ROWS without b1, c1 and a6 (link_only, 7 edges: a3/a4 x b2/b3/b4 and a5-c2;
    a1-a2 are both A); the delivery brings them: 8 new edges (b1-a1, b1-a2, c1 with a3, a4, b2,
    b3, b4, a6-c2), 15 in all, as a full link_only run has them."""
    import json

    from natlink.linkage import incremental
    from natlink.store import delta

    def hashed(df):
        return df.withColumn(C.RECORD_HASH, F.xxhash64(*[F.col(c) for c in sorted(df.columns) if c.startswith("tk_")]))

    settings = _settings("link_only")
    model, rules = scoring.compile_model(settings), blocking.rules_from_settings(settings)
    cfg = LinkConfig(threshold_match_probability=0.5, engine="spark", cannot_link={"enabled": False})
    tables = tmp_path / "tables"
    with Scratch(spark) as scratch:
        everyone = hashed(_tokens(spark))
        first = everyone.where(~F.col(C.RECORD_ID).isin("b1", "c1", "a6"))
        run1 = link.link(first, settings, cfg, scratch, n_records=len(ROWS) - 3)
        assert run1.n_edges == 7
        clusters = run1.clusters.join(first.select(C.UNIQUE_ID, C.RECORD_HASH), on=C.UNIQUE_ID, how="inner")
        clusters = clusters.withColumn(C.PERSON_ID, F.concat(F.lit("P"), F.col(link.CLUSTER_NODE).cast("string")))
        versions = {
            "clusters": delta.write(clusters.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, C.RECORD_HASH, C.PERSON_ID),
                                    str(tables / "clusters"), mode="overwrite").version,
            "edges": delta.write(run1.edges.select(*incremental.EDGE_COLUMNS), str(tables / "edges"), mode="overwrite").version,
        }
        records = link.prepare_records(everyone, model, rules, scratch, extra=[C.RECORD_HASH])
        _out, edges, _events, counts = incremental.link_incremental(
            spark, records, model, rules, cfg, tables, {"versions": json.dumps(versions)}, "r2", {}, scratch
        )
        got = {(r[0], r[1]) for r in edges.select("unique_id_l", "unique_id_r").collect()}
    assert counts["records_by_status"] == {"new": 3, "same": 10}
    assert counts["new_edges"] == 8 and counts["edges"] == 15
    assert got == _all_pairs(cross=True)


def _model(link_type: str) -> ModelConfig:
    return ModelConfig.model_validate({
        "name": "link-only-test",
        "link_type": link_type,
        "comparisons": [
            {"name": "nhs_number", "levels": [{"exact": "tk_nhs_number"}]},
            {"name": "given_name", "levels": [{"exact": "tk_given_name"}]},
            {"name": "date_of_birth", "levels": [{"exact": "tk_dob"}]},
        ],
        "blocking_rules_for_prediction": [["tk_nhs_number"], ["tk_dob"]],
        "training": {"deterministic_rules": [["tk_nhs_number", "tk_dob"]], "deterministic_recall": 0.8,
                     "em_blocking_rules": [["tk_nhs_number"], ["tk_dob"]],
                     # A person's date of birth never differs here, so its m below agreement is 0.
                     "allow_unobserved": {"date_of_birth": ["all other comparisons"]}},
    })


def _two_datasets(spark):
    """A: persons 0..1999 once and persons 0..199 twice more (2,200 records); B: persons 0..999
    (1,000 records). A person's NHS token and date of birth are the same on every record, and so
    is the given name but on B's records of every tenth person (pseudo-random per person; names
    and dates repeat across persons)."""
    a = spark.range(2200).select(F.lit("A").alias(C.DATASET), F.col("id").alias("rec"), (F.col("id") % 2000).alias("person"))
    b = spark.range(1000).select(F.lit("B").alias(C.DATASET), F.col("id").alias("rec"), F.col("id").alias("person"))
    h = lambda salt, m: F.abs(F.xxhash64(F.col("person"), F.lit(salt))) % m  # noqa: E731 - a pseudo-random value per person
    return a.unionByName(b).select(
        C.DATASET,
        F.col("rec").cast("string").alias(C.RECORD_ID),
        F.concat_ws(":", C.DATASET, F.col("rec").cast("string")).alias(C.UNIQUE_ID),
        (F.col("person") + 1_000_000_000).alias("tk_nhs_number"),
        (h("n", 3000) + F.when((F.col(C.DATASET) == "B") & (F.col("person") % 10 == 0), 3000).otherwise(0)).alias("tk_given_name"),
        h("d", 36500).alias("tk_dob"),
    )


def test_training_a_link_only_model_counts_pairs_across_datasets(spark):
    df = _two_datasets(spark).cache()
    trained = train(df, _model("link_only"))
    cross = 2200 * 1000
    # NHS agreement across A and B: persons 0..199 have two A records and one B record (2 pairs
    # each), persons 200..999 one of each (1 pair): 400 + 800 = 1,200 of the 2.2M pairs across.
    # (dedupe_only would count 3 x 200 + 800 = 1,400 of 3,200 x 3,199 / 2 pairs.)
    nhs = next(r for r in trained.diagnostics["parameters"] if r["comparison"] == "nhs_number" and r["level"] == "exact tk_nhs_number")
    assert nhs["u"] == 1200 / cross and nhs["u_source"] == "exact"
    assert trained.diagnostics["sample"]["pairs"] == cross
    # Lambda: the same 1,200 pairs meet [nhs, dob], over recall 0.8 and the pairs across.
    assert trained.settings["probability_two_random_records_match"] == pytest.approx(1200 / 0.8 / cross, rel=1e-12)
    # EM's pairs: across datasets only (dob: counted here per value as n_A x n_B).
    by_dob = df.groupBy("tk_dob").agg(*[F.sum(F.when(F.col(C.DATASET) == d, 1).otherwise(0)).alias(d) for d in "AB"])
    dob_pairs = by_dob.agg(F.sum(F.col("A") * F.col("B"))).first()[0]
    assert trained.diagnostics["em_pairs"] == {"l.tk_nhs_number = r.tk_nhs_number": 1200, "l.tk_dob = r.tk_dob": dob_pairs}
    assert trained.settings["link_type"] == "link_only" and trained.settings["source_dataset_column_name"] == C.DATASET
    assert nhs["m"] > 0.9
    # Training on one dataset cannot give a link_only model.
    with pytest.raises(TrainingError, match="link_only.*1 dataset"):
        train(df.where(F.col(C.DATASET) == "A"), _model("link_only"))
    df.unpersist()


def test_link_and_dedupe_is_read_as_dedupe_only_and_other_link_types_are_refused_at_load(tmp_path):
    both, dedupe = _model("link_and_dedupe"), _model("dedupe_only")
    assert both.link_type == "dedupe_only" and splink_settings(both) == splink_settings(dedupe)
    assert splink_settings(_model("link_only"))["source_dataset_column_name"] == C.DATASET
    bad = tmp_path / "model.yaml"
    bad.write_text("name: m\nlink_type: link_and_dedup\ncomparisons: [{name: a, levels: [{exact: tk_a}]}]\n"
                   "blocking_rules_for_prediction: [[tk_a]]\ntraining: {em_blocking_rules: [[tk_a], [tk_b]]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"link_type.*'dedupe_only', 'link_only' or 'link_and_dedupe'"):
        load(bad, ModelConfig)
