"""Exact u from value frequencies equals a brute-force count over every pair, and Splink's own
u when Splink is made to look at every pair; it does not depend on sampling.

The data are synthetic tokens (opaque strings or integers, no identifiers).
"""

from __future__ import annotations

import itertools
import logging
import random

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.config.model import ModelConfig
from natlink.errors import SchemaError
from natlink.linkage.settings import splink_settings
from natlink.linkage.u_exact import exact_u

MODEL = ModelConfig.model_validate({
    "name": "u-exact-test",
    "comparisons": [
        # nested equality levels (a name implies its initial), as in conf/model_deterministic.yaml
        {"name": "given_name", "levels": [{"exact": "tk_given_name"}, {"exact": "tk_given_initial"}]},
        # an equality level, a cross-column level (not exact: None), then one after it (None too)
        {"name": "date_of_birth", "levels": [
            {"exact": "tk_dob"}, {"sql": "tk_dob_swapped_l = tk_dob_r"}, {"exact": "tk_dob_year"}]},
        # levels that are NOT nested (agreeing on one says nothing of the other): inclusion-exclusion
        {"name": "place", "null_when": ["tk_a"], "levels": [{"exact": "tk_a"}, {"exact": "tk_b"}]},
    ],
    "blocking_rules_for_prediction": [["tk_dob"]],
    "training": {"em_blocking_rules": [["tk_dob"], ["tk_given_name"]]},
})
SCHEMA = T.StructType([T.StructField(c, T.StringType()) for c in
                       (C.UNIQUE_ID, "tk_given_name", "tk_given_initial", "tk_dob", "tk_dob_swapped", "tk_dob_year", "tk_a", "tk_b")])


def _rows(n: int = 60, seed: int = 3) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = rng.choice(["ann", "anna", "bob", "ben", "cy", None])
        dob = rng.choice(["1990-01-02", "1990-02-01", "1990-03-04", "1991-01-02", None])
        swapped = None if dob is None else f"{dob[:4]}-{dob[8:]}-{dob[5:7]}"
        a = rng.choice(["x", "y", "z", None])
        b = rng.choice(["p", "q", None])
        tok = lambda v, kind: None if v is None else f"tk-{kind}-{v}"  # opaque stand-ins for tokens
        rows.append((f"r{i:03d}", tok(name, "g"), tok(name and name[0], "i"), tok(dob, "d"), tok(swapped, "d"),
                     tok(dob and dob[:4], "y"), tok(a, "a"), tok(b, "b")))
    return rows


def _brute_force(rows: list[tuple]) -> dict[str, list[float | None]]:
    """Every unordered pair of distinct records put in its first matching level, as Splink does."""
    idx = {f.name: i for i, f in enumerate(SCHEMA.fields)}
    eq = lambda col: (lambda l, r: l[idx[col]] is not None and l[idx[col]] == r[idx[col]])
    swapped = lambda l, r: l[idx["tk_dob_swapped"]] is not None and l[idx["tk_dob_swapped"]] == r[idx["tk_dob"]]
    comparisons = {
        "given_name": ("tk_given_name", [eq("tk_given_name"), eq("tk_given_initial")]),
        "date_of_birth": ("tk_dob", [eq("tk_dob"), swapped, eq("tk_dob_year")]),
        "place": ("tk_a", [eq("tk_a"), eq("tk_b")]),
    }
    out = {}
    for name, (null_col, levels) in comparisons.items():
        counts = [0] * (len(levels) + 1)
        total = 0
        for l, r in itertools.combinations(sorted(rows), 2):  # l: the smaller unique id, as in Splink
            if l[idx[null_col]] is None or r[idx[null_col]] is None:
                continue
            total += 1
            counts[next((k for k, f in enumerate(levels) if f(l, r)), len(levels))] += 1
        out[name] = [None] + [c / total for c in counts]  # [null level, levels..., ELSE]
    return out


def test_exact_u_equals_a_brute_force_count_over_every_pair(spark):
    rows = _rows()
    df = spark.createDataFrame(rows, SCHEMA)
    got = exact_u(df, splink_settings(MODEL))
    want = _brute_force(rows)
    # given_name: every level (null, exact name, initial, ELSE) exact.
    assert got["given_name"] == pytest.approx(want["given_name"], abs=1e-12)
    assert got["given_name"][1] > 0 and got["given_name"][2] > 0
    # place: not nested, so "b and not a" needs inclusion-exclusion; ELSE as the rest.
    assert got["place"] == pytest.approx(want["place"], abs=1e-12)
    # date_of_birth: the exact level is exact; the swapped level, the level after it and ELSE are
    # left to sampling (None).
    assert got["date_of_birth"][0] is None and got["date_of_birth"][2:] == [None, None, None]
    assert got["date_of_birth"][1] == pytest.approx(want["date_of_birth"][1], abs=1e-12)
    assert want["date_of_birth"][2] > 0  # the data do have swapped pairs: None is not "none seen"


def test_exact_u_equals_splink_u_when_splink_samples_every_pair(spark):
    """Splink's sampling over all pairs (max_pairs above the pair count) is exact: same numbers."""
    from splink import DuckDBAPI, Linker

    rows = _rows(n=50, seed=11)
    df = spark.createDataFrame(rows, SCHEMA)
    settings = splink_settings(MODEL)
    linker = Linker(DuckDBAPI().register(df.toArrow()), settings, log_level=logging.WARNING)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1, min_count_per_level=None)
    splink_u = {c["output_column_name"]: [lv.get("u_probability") for lv in c["comparison_levels"]]
                for c in linker.misc.save_model_to_json()["comparisons"]}
    got = exact_u(df, settings)
    for name in ("given_name", "place"):
        assert got[name][1:] == pytest.approx(splink_u[name][1:], abs=1e-12), name
    assert got["date_of_birth"][1] == pytest.approx(splink_u["date_of_birth"][1], abs=1e-12)


def test_exact_u_link_only_counts_pairs_across_sources(spark):
    rows = [("a1", "A", "x"), ("a2", "A", "x"), ("a3", "A", "y"), ("b1", "B", "x"), ("b2", "B", "z")]
    df = spark.createDataFrame(rows, "unique_id string, source_dataset string, tk_a string")
    settings = {"link_type": "link_only", "comparisons": [{"output_column_name": "a", "comparison_levels": [
        {"sql_condition": "tk_a_l IS NULL OR tk_a_r IS NULL", "is_null_level": True},
        {"sql_condition": "tk_a_l = tk_a_r"}, {"sql_condition": "ELSE"}]}]}
    # 3 x 2 = 6 cross pairs; agreeing on x: a1-b1, a2-b1 -> 2 of 6.
    assert exact_u(df, settings)["a"] == pytest.approx([None, 2 / 6, 4 / 6])
    with pytest.raises(SchemaError, match="source_dataset"):
        exact_u(df.drop("source_dataset"), settings)


def test_exact_u_names_a_missing_column(spark):
    df = spark.createDataFrame([("r1", "g")], "unique_id string, tk_given_name string")
    with pytest.raises(SchemaError, match="tk_given_initial"):
        exact_u(df, {"comparisons": splink_settings(MODEL)["comparisons"][:1]})


def test_exact_nhs_level_does_not_depend_on_sampling(spark):
    """1M records, 40 pairs sharing an NHS token: u is exactly 2*40 / (N (N-1)) ordered pairs.

    Sampling 2e6 pairs (about 2,000 records of the million) meets such a pair with probability
    about 2e6 * 40 / 5e11 = 1.6e-4: Splink's sampled u would be "not observed"."""
    n, dupes = 1_000_000, 40
    df = (
        spark.range(n)
        # the last `dupes` records repeat the NHS token of records 0..dupes-1
        .withColumn("person", F.when(F.col("id") >= n - dupes, F.col("id") - (n - dupes)).otherwise(F.col("id")))
        .select(F.col("id").cast("string").alias(C.UNIQUE_ID), F.sha2(F.col("person").cast("string"), 256).alias("tk_nhs_number"))
    )
    settings = {"comparisons": [{"output_column_name": "nhs_number", "comparison_levels": [
        {"sql_condition": "tk_nhs_number_l IS NULL OR tk_nhs_number_r IS NULL", "is_null_level": True},
        {"sql_condition": "tk_nhs_number_l = tk_nhs_number_r"}, {"sql_condition": "ELSE"}]}]}
    u = exact_u(df, settings)["nhs_number"]
    assert u[1] == 2 * dupes / (n * (n - 1))
    assert u[2] == pytest.approx(1 - u[1], abs=1e-15)
