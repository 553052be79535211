"""Link runs end to end: stable ids, incremental vs full, idempotence, kill-and-rerun, discovery."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink import config as cfgmod
from natlink.store import delta
from natlink.outputs import discover
from natlink.tokens import encode
from natlink.outputs import evaluate
from natlink.tokens import keys
from natlink.linkage import engine as link
from natlink.linkage import incremental
from natlink.linkage import run as linkrun
from natlink.spark.session import local_dir
from natlink.linkage import model_store
from natlink.linkage import train
from natlink.synth import generate as synth
from natlink.synth.population import population as synthetic_population
from natlink.config import DatasetConfig, LinkConfig, ModelConfig, project_root
from natlink.config.link import BlockSplit
from natlink.errors import BlockingBudgetError, FingerprintMismatchError
from natlink.commands import tokenise_delivery
from natlink.tokens import signing
from natlink.tokens.manifest import TokenManifest

# Obviously fake key, for tests only.
FAKE_KEY_HEX = b"test-key-not-secret-linkrun-0000".hex()
PERSONS, SEED = 900, 23
# The Spark engine, as at national scale; the in-process engine is checked against it below.
LINK = LinkConfig(threshold_match_probability=0.9, engine="spark")


def _write_tokens(df, path: Path, template: TokenManifest) -> TokenManifest:
    """A derived token table (a later delivery) with a manifest like the provider's, signed with the
    suite's provider key (NATLINK_SIGNING_KEY, tests/conftest.py)."""
    written = delta.write(df, str(path), mode="overwrite", partition_by=(C.REGION,))
    data = {**template.data, "table": str(path), "rows": written.rows, "delta_version": written.version}
    return TokenManifest(data).save(path.parent / f"{path.name}.manifest.json", signer=signing.load_signer())


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    os.environ["NATLINK_TEST_KEY"] = FAKE_KEY_HEX
    key = keys.resolve("env:NATLINK_TEST_KEY")
    base = tmp_path_factory.mktemp("linkrun")
    root = project_root()
    generated = synth.generate(spark, base, persons=PERSONS, seed=SEED, datasets=["gp", "hes"])
    for name in ("gp", "hes"):
        ds = cfgmod.load(root / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        tokenise_delivery(spark, ds, key, data_dir=str(base), out=base)
    gp = delta.read(spark, str(base / "tokens" / "gp")).cache()
    hes = delta.read(spark, str(base / "tokens" / "hes")).cache()
    truth = spark.read.parquet(generated.truth).cache()

    # v1: hes without ~1 in 7 of its records (they arrive in v2).
    held = F.xxhash64(F.col(C.RECORD_ID)) % 7 == 0
    tk_cols = [c for c in hes.columns if C.is_token(c) and dict(hes.dtypes)[c] == "string"]
    gp_m = TokenManifest.load(base / "tokens" / "gp.manifest.json")
    hes_m = TokenManifest.load(base / "tokens" / "hes.manifest.json")
    tables = {
        "gp": gp_m,
        "hes_v1": _write_tokens(hes.where(~held), base / "in" / "hes_v1", hes_m),
    }
    model_cfg = cfgmod.load(root / "conf" / "model_deterministic.yaml", ModelConfig)
    model_path = train.train_job(spark, manifests=[tables["gp"], tables["hes_v1"]], cfg=model_cfg, out_path=base / "model.json")
    a, b = base / "A", base / "B"
    runs = {"r1": linkrun.run(spark, manifests=[tables["gp"], tables["hes_v1"]], model_path=model_path, link_cfg=LINK, tables=a, run_id="r1")}
    # At run 1's version: a cached plan over the table's current version is recomputed (Spark's
    # cache manager refreshes it) once run 2 overwrites the table.
    r1 = delta.read(spark, str(a / "clusters"), version=runs["r1"].versions["clusters"]).select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.PERSON_ID).cache()
    runs["r1_clusters"] = r1
    sizes = r1.groupBy(C.PERSON_ID).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum((F.col(C.DATASET) == "hes").cast("int")).alias("n_hes"),
        F.sort_array(F.collect_list(F.when(F.col(C.DATASET) == "hes", F.col(C.RECORD_ID)))).alias("hes_recs"),
        F.min(F.when(F.col(C.DATASET) == "gp", F.col(C.RECORD_ID))).alias("gp_rec"),
    ).cache()
    # v2 edits, chosen from run 1's clusters so the expected id events are known:
    # split: two hes records of a 5+-record cluster take on one new person's values.
    big = sizes.where("n >= 5 AND n_hes >= 2").orderBy(C.PERSON_ID).first()
    split_recs = big["hes_recs"][:2]
    first = hes.where(F.col(C.RECORD_ID) == split_recs[0]).select(*tk_cols).first().asDict()
    moved = {c: (hashlib.sha256((v + "|moved").encode()).hexdigest() if v is not None else None) for c, v in first.items()}
    # merge: a hes record that is a cluster on its own becomes a copy of a 2+-record person's gp record.
    merge_rec = sizes.where("n = 1 AND n_hes = 1").orderBy(C.PERSON_ID).first()["hes_recs"][0]
    donor_gp = sizes.where("n >= 2 AND gp_rec IS NOT NULL AND n < 5").orderBy(C.PERSON_ID).first()["gp_rec"]
    donor = gp.where(F.col(C.RECORD_ID) == donor_gp).select(*tk_cols).first().asDict()

    hes_v2 = hes
    for c in [c for c in hes.columns if c.startswith("bf_")]:
        # Bloom filters follow the edit: none for the moved records, the donor's for the copy.
        donor_bf = gp.where(F.col(C.RECORD_ID) == donor_gp).select(c)
        hes_v2 = hes_v2.crossJoin(F.broadcast(donor_bf.withColumnRenamed(c, "_donor_bf"))).withColumn(
            c,
            F.when(F.col(C.RECORD_ID).isin(split_recs), F.lit(None))
            .when(F.col(C.RECORD_ID) == merge_rec, F.col("_donor_bf"))
            .otherwise(F.col(c)),
        ).drop("_donor_bf")
    for c in tk_cols:
        hes_v2 = hes_v2.withColumn(
            c,
            F.when(F.col(C.RECORD_ID).isin(split_recs), F.lit(moved[c]).cast("string"))
            .when(F.col(C.RECORD_ID) == merge_rec, F.lit(donor[c]).cast("string"))
            .otherwise(F.col(c)),
        )
    tables["hes_v2"] = _write_tokens(hes_v2, base / "in" / "hes_v2", hes_m)
    tables["hes_v2_shuffled"] = _write_tokens(hes_v2.orderBy(F.rand(5)).repartition(3), base / "in" / "hes_v2s", hes_m)
    tables["gp_shuffled"] = _write_tokens(gp.orderBy(F.rand(6)).repartition(5), base / "in" / "gp_s", gp_m)
    runs["r2"] = linkrun.run(spark, manifests=[tables["gp"], tables["hes_v2"]], model_path=model_path, link_cfg=LINK, tables=a, run_id="r2")
    runs["full"] = linkrun.run(spark, manifests=[tables["gp"], tables["hes_v2"]], model_path=model_path, link_cfg=LINK, tables=b, run_id="full", mode="full")
    return {
        "base": base, "tables": tables, "model": model_path, "truth": truth, "runs": runs, "a": a, "b": b,
        "split_recs": split_recs, "merge_rec": merge_rec, "donor_gp": donor_gp, "key": key, "seed": SEED,
    }


def _clusters(spark, path: Path, version=None):
    return delta.read(spark, str(path / "clusters"), version=version)


def test_incremental_agrees_with_full_rerun_and_is_accurate(spark, world):
    r2, full = world["runs"]["r2"], world["runs"]["full"]
    assert r2.mode == "incremental" and full.mode == "full"
    assert r2.counts["records_by_status"]["new"] > 50
    assert r2.counts["records_by_status"]["changed"] == 3
    assert r2.counts["affected_records"] < r2.counts["records"] / 2
    inc = _clusters(spark, world["a"]).select(C.DATASET, C.RECORD_ID, C.PERSON_ID)
    ref = _clusters(spark, world["b"]).select(C.DATASET, C.RECORD_ID, F.col(C.PERSON_ID).alias(C.TRUE_PERSON_ID))
    agreement = evaluate.pairwise(inc, ref)
    # conf/model_deterministic.yaml adjusts for term frequencies, which drift as the population grows: every
    # incremental link is a full-run link (kept pairs are rescored), but a pair of unchanged
    # records that rose over the threshold is only found by a full run.
    print(f"incremental vs full: precision {agreement.precision:.6f} recall {agreement.recall:.6f}; "
          f"seconds incremental {sum(r2.timings.values()):.1f} {r2.timings} full {sum(full.timings.values()):.1f} {full.timings}")
    assert agreement.precision == 1.0, agreement
    assert agreement.recall >= 0.995, agreement
    assert inc.count() == ref.count() == full.counts["records"]
    accuracy = evaluate.pairwise(ref.withColumnRenamed(C.TRUE_PERSON_ID, C.PERSON_ID), world["truth"])
    assert accuracy.f1 >= 0.95, accuracy


def test_split_and_merge_recorded_as_id_events(spark, world):
    events = delta.read(spark, str(world["a"] / "id_events")).where(F.col(C.RUN_ID) == "r2").collect()
    r1 = {r[C.UNIQUE_ID]: r[C.PERSON_ID] for r in world["runs"]["r1_clusters"].collect()}
    now = {r[C.UNIQUE_ID]: r[C.PERSON_ID] for r in _clusters(spark, world["a"]).collect()}
    split_uids = [f"hes:{r}" for r in world["split_recs"]]
    original = r1[split_uids[0]]
    splits = [e for e in events if e["event"] == "split"]
    assert [(list(e["old_ids"]), e["new_id"], e["records"]) for e in splits] == [([original], now[split_uids[0]], 2)]
    assert now[split_uids[0]] == now[split_uids[1]] != original
    merged_from = r1[f"hes:{world['merge_rec']}"]
    kept = r1[f"gp:{world['donor_gp']}"]
    merges = [e for e in events if e["event"] == "merge"]
    assert [(sorted(e["old_ids"]), e["new_id"]) for e in merges] == [(sorted([kept, merged_from]), kept)]
    assert now[f"hes:{world['merge_rec']}"] == kept


def test_ids_stable_across_rerun_with_shuffled_input(spark, world):
    t = world["tables"]
    # B's last run was a full run of the same records in file order; rerun them shuffled.
    before = {r[C.UNIQUE_ID]: r[C.PERSON_ID] for r in _clusters(spark, world["b"]).collect()}
    summary = linkrun.run(spark, manifests=[t["gp_shuffled"], t["hes_v2_shuffled"]], model_path=world["model"], link_cfg=LINK, tables=world["b"], run_id="r3", mode="full")
    after = {r[C.UNIQUE_ID]: r[C.PERSON_ID] for r in _clusters(spark, world["b"]).collect()}
    assert summary.mode == "full"
    assert after == before
    assert summary.counts["id_events"] == {}


def test_rerun_with_same_run_id_changes_nothing(spark, world):
    a = world["a"]
    versions = {name: delta.read(spark, str(a / name)).count() for name in linkrun.TABLES}
    from deltalake import DeltaTable

    log_versions = {name: DeltaTable(str(a / name)).version() for name in linkrun.TABLES}
    again = linkrun.run(spark, manifests=[world["tables"]["gp"], world["tables"]["hes_v2"]], model_path=world["model"], link_cfg=LINK, tables=a, run_id="r2")
    assert again.status == "already-completed"
    assert {name: DeltaTable(str(a / name)).version() for name in linkrun.TABLES} == log_versions
    assert {name: delta.read(spark, str(a / name)).count() for name in linkrun.TABLES} == versions
    # Every completed run leaves each table keeping retention_days of history (docs/delta.md).
    for name in linkrun.TABLES:
        props = DeltaTable(str(a / name)).metadata().configuration
        assert props["delta.deletedFileRetentionDuration"] == props["delta.logRetentionDuration"] == f"interval {LINK.retention_days} days"


def _run_and_crash(world, tables: Path, run_id: str, manifests: list[dict], crash_after: str) -> int:
    script = f"""
import json, os, sys
sys.path.insert(0, {str(project_root() / 'src')!r})
os.environ['NATLINK_TEST_KEY'] = {FAKE_KEY_HEX!r}
from natlink.spark.session import get_spark
from natlink.linkage import run as linkrun
from natlink.config import LinkConfig
spark = get_spark('crash', master='local[2]', conf={{'spark.driver.memory': '2g'}})
linkrun.run(spark, manifests={[str(m.path) for m in manifests]!r}, model_path={str(world['model'])!r},
            link_cfg=LinkConfig(threshold_match_probability=0.9, engine='spark'), tables={str(tables)!r}, run_id={run_id!r},
            crash_after={crash_after!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=600, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    return proc.returncode
@pytest.mark.slow
def test_killed_runs_rerun_without_loss_or_duplication(spark, world):
    t, c = world["tables"], world["base"] / "C"
    assert _run_and_crash(world, c, "r1", [t["gp"], t["hes_v1"]], "clusters") == 137
    assert not delta.exists(str(c / "runs"))
    first = linkrun.run(spark, manifests=[t["gp"], t["hes_v1"]], model_path=world["model"], link_cfg=LINK, tables=c, run_id="r1")
    assert first.status == "completed"
    assert _run_and_crash(world, c, "r2", [t["gp"], t["hes_v2"]], "id_events") == 137
    second = linkrun.run(spark, manifests=[t["gp"], t["hes_v2"]], model_path=world["model"], link_cfg=LINK, tables=c, run_id="r2")
    assert second.status == "completed" and second.mode == "incremental"
    a = world["a"]
    # Exactly the rows of the uninterrupted run A (same inputs, same run ids): nothing lost, nothing twice.
    for name in ("clusters", "edges", "person_index"):
        assert delta.read(spark, str(c / name)).count() == delta.read(spark, str(a / name), version=world["runs"]["r2"].versions[name]).count()
    ev_c = sorted(tuple(r) for r in delta.read(spark, str(c / "id_events")).drop(C.REASON).collect())
    ev_a = sorted(tuple(r) for r in delta.read(spark, str(a / "id_events")).where(F.col(C.RUN_ID).isin("r1", "r2")).drop(C.REASON).collect())
    assert ev_c == ev_a
    runs = delta.read(spark, str(c / "runs")).select(C.RUN_ID).collect()
    assert sorted(r[0] for r in runs) == ["r1", "r2"]


def test_mixed_key_fingerprints_are_refused(spark, world, tmp_path, manifest_signer):
    t = world["tables"]

    def signed(m: TokenManifest, fingerprint: str) -> TokenManifest:
        # Signed by a trusted provider: tables honestly made under another key (an edited,
        # unsigned fingerprint is refused earlier: tests/tokens/test_signing.py).
        data = {**m.data, "key_fingerprint": fingerprint, "table": str(m.table_path)}
        return TokenManifest(data).save(tmp_path / f"{m.dataset}-{fingerprint[:1]}.manifest.json", signer=manifest_signer)

    other = signed(t["hes_v2"], "0" * 32)
    with pytest.raises(FingerprintMismatchError, match="different keys"):
        linkrun.run(spark, manifests=[t["gp"], other], model_path=world["model"], link_cfg=LINK, tables=world["base"] / "D", run_id="x")
    wrong = [signed(m, "1" * 32) for m in (t["gp"], t["hes_v2"])]
    with pytest.raises(FingerprintMismatchError, match="trained on data under key fingerprint"):
        linkrun.run(spark, manifests=wrong, model_path=world["model"], link_cfg=LINK, tables=world["base"] / "D", run_id="x")


@pytest.mark.parametrize("engine", ["spark", "in_process"])
def test_exploding_blocking_rule_is_refused(spark, world, engine):
    t = world["tables"]
    tight = LinkConfig(threshold_match_probability=0.9, max_comparisons_per_rule=100, engine=engine)
    where = world["base"] / f"E_{engine}"
    with pytest.raises(BlockingBudgetError, match="over the budget of 100"):
        linkrun.run(spark, manifests=[t["gp"], t["hes_v2"]], model_path=world["model"], link_cfg=tight, tables=where, run_id="x")
    assert not delta.exists(str(where / "clusters"))


def test_in_process_engine_gives_the_spark_engines_tables(spark, world):
    """The default engine at this size (auto: in process) against the Spark engine's runs.

    A first run must give A's r1 exactly (same person ids: they are minted from the run id and the
    cluster's smallest member). A second run with a delivery relinks whole (auto: the population
    fits in process) and must give B's full Spark run's edges, pairs per rule and persons.
    """
    import glob
    import tempfile

    t, d = world["tables"], world["base"] / "D_in_process"
    auto = LinkConfig(threshold_match_probability=0.9)
    assert auto.engine == "auto" and auto.in_process_max_records >= world["runs"]["full"].counts["records"]
    r1 = linkrun.run(spark, manifests=[t["gp"], t["hes_v1"]], model_path=world["model"], link_cfg=auto, tables=d, run_id="r1")
    assert r1.counts["engine"] == "in_process" and world["runs"]["r1"].counts["engine"] == "spark"
    cols = [C.DATASET, C.RECORD_ID, C.REGION, C.PERSON_ID]
    spark_r1 = _clusters(spark, world["a"], version=world["runs"]["r1"].versions["clusters"]).select(*cols)
    assert sorted(_clusters(spark, d).select(*cols).collect()) == sorted(spark_r1.collect())

    r2 = linkrun.run(spark, manifests=[t["gp"], t["hes_v2"]], model_path=world["model"], link_cfg=auto, tables=d, run_id="r2")
    full = world["runs"]["full"]
    assert (r2.mode, r2.counts["engine"]) == ("full", "in_process")
    assert r2.counts["comparisons_per_rule"] == full.counts["comparisons_per_rule"]
    assert r2.counts["edges"] == full.counts["edges"] > 1000
    # The cannot-link split (on by default: different NHS tokens) made the same cuts on both engines.
    assert r2.counts["cannot_link"] == full.counts["cannot_link"]
    assert set(full.counts["cannot_link"]) == {"components_split", "edges_dropped", "records_in_split_components", "persons_added"}

    def edges(where):
        rows = delta.read(spark, str(where / "edges")).select("unique_id_l", "unique_id_r", "match_key", "match_weight", "match_probability").collect()
        return {(r[0], r[1]): r for r in rows}

    mine, theirs = edges(d), edges(world["b"])
    assert mine.keys() == theirs.keys()
    assert all(mine[k][2] == theirs[k][2] for k in mine)  # the same rule found each pair
    assert max(abs(mine[k][3] - theirs[k][3]) for k in mine) < 1e-9
    assert max(abs(mine[k][4] - theirs[k][4]) for k in mine) < 1e-12
    same = evaluate.pairwise(
        _clusters(spark, d).select(C.DATASET, C.RECORD_ID, C.PERSON_ID),
        _clusters(spark, world["b"]).select(C.DATASET, C.RECORD_ID, F.col(C.PERSON_ID).alias(C.TRUE_PERSON_ID)),
    )
    assert (same.precision, same.recall) == (1.0, 1.0), same
    # Ids carry over from r1 as in any full rerun; the split and the merge are recorded.
    assert set(r2.counts["id_events"]) >= {"split", "merge"}
    spill_parent = local_dir(spark) or tempfile.gettempdir()
    assert Path(spill_parent).is_dir()
    assert not glob.glob(str(Path(spill_parent) / "natlink-duckdb-*")), "DuckDB spill directory left behind"
def test_large_blocks_split_counted_alike_on_both_engines_and_incrementally(spark, world):
    """link.split_large_blocks: blocks of [tk_family_name, tk_dob_year] with more than 2 records
    compared only within postcode districts. The counts equal a count by hand over the token
    tables; Spark (a first run, then an incremental delivery) and the in-process engine (a full
    run) count alike; the split only removes that rule's pairs, never adds an edge."""
    t = world["tables"]
    split = [BlockSplit(rule=["tk_family_name", "tk_dob_year"], above=2, by=["tk_postcode_district"])]
    on_spark = LINK.model_copy(update={"split_large_blocks": split})
    where = world["base"] / "S_split"
    linkrun.run(spark, manifests=[t["gp"], t["hes_v1"]], model_path=world["model"], link_cfg=on_spark, tables=where, run_id="r1")
    inc = linkrun.run(spark, manifests=[t["gp"], t["hes_v2"]], model_path=world["model"], link_cfg=on_spark, tables=where, run_id="r2")
    assert inc.mode == "incremental"
    auto = LinkConfig(threshold_match_probability=0.9, split_large_blocks=split)
    full = linkrun.run(spark, manifests=[t["gp"], t["hes_v2"]], model_path=world["model"], link_cfg=auto, tables=where / "full", run_id="f")
    assert (full.mode, full.counts["engine"]) == ("full", "in_process")

    rows = [r.asDict() for m in (t["gp"], t["hes_v2"]) for r in delta.read(spark, str(m.table_path)).select(
        "tk_family_name", "tk_dob_year", "tk_postcode_district").collect()]
    blocks: dict = {}
    for r in rows:
        if r["tk_family_name"] is not None and r["tk_dob_year"] is not None:
            blocks.setdefault((r["tk_family_name"], r["tk_dob_year"]), []).append(r["tk_postcode_district"])
    large = [d for d in blocks.values() if len(d) > 2]
    after = sum(sum(1 for _ in itertools.combinations([x for x in d if x == v], 2)) for d in large for v in set(d))
    before = sum(len(d) * (len(d) - 1) // 2 for d in large)
    expected = {"rule": "[tk_family_name, tk_dob_year]", "above": 2, "by": ["tk_postcode_district"], "blocks_split": len(large),
                "records_in_them": sum(map(len, large)), "largest_block": max(map(len, large)), "pairs_before": before,
                "pairs_after": after, "pairs_not_compared": before - after}
    assert full.counts["block_splits"] == inc.counts["block_splits"] == [expected]
    assert len(large) > 20 and before - after > 20

    unsplit = world["runs"]["full"]
    want = list(unsplit.counts["comparisons_per_rule"])
    want[2] -= before - after
    assert full.counts["comparisons_per_rule"] == want

    def edges(path):
        return {(r[0], r[1]): r[2] for r in delta.read(spark, str(path / "edges")).select("unique_id_l", "unique_id_r", "match_weight").collect()}

    mine, theirs = edges(where / "full"), edges(world["b"])
    assert mine.keys() <= theirs.keys() and all(abs(w - theirs[k]) < 1e-9 for k, w in mine.items())
    agreement = evaluate.pairwise(
        _clusters(spark, where).select(C.DATASET, C.RECORD_ID, C.PERSON_ID),
        _clusters(spark, where / "full").select(C.DATASET, C.RECORD_ID, F.col(C.PERSON_ID).alias(C.TRUE_PERSON_ID)),
    )
    assert agreement.precision == 1.0 and agreement.recall >= 0.99, agreement
    accuracy = evaluate.pairwise(_clusters(spark, where / "full").select(C.DATASET, C.RECORD_ID, C.PERSON_ID), world["truth"])
    assert accuracy.f1 >= 0.95, accuracy


@pytest.mark.slow
def test_discovery_returns_exactly_the_datasets_truth_says(spark, world):
    b, truth = world["b"], world["truth"]
    clusters = _clusters(spark, b)
    # Persons whose linked cluster equals their true record set: discovery must be exact for them.
    joined = clusters.join(truth, on=[C.DATASET, C.RECORD_ID])
    exact = (
        joined.groupBy(C.TRUE_PERSON_ID).agg(F.countDistinct(C.PERSON_ID).alias("k"), F.first(C.PERSON_ID).alias("pid"))
        .where("k = 1")
        .join(joined.groupBy(C.PERSON_ID).agg(F.countDistinct(C.TRUE_PERSON_ID).alias("t")).where("t = 1"), F.col("pid") == F.col(C.PERSON_ID))
        .select(C.TRUE_PERSON_ID)
        .orderBy(C.TRUE_PERSON_ID)
        .limit(8)
        .collect()
    )
    chosen = [r[0] for r in exact]
    assert len(chosen) == 8
    people = synthetic_population(spark, PERSONS, world["seed"]).where(F.col(C.TRUE_PERSON_ID).isin(chosen))
    probes = people.select(
        C.TRUE_PERSON_ID,
        F.lit("probe").alias(C.DATASET),
        F.col(C.TRUE_PERSON_ID).alias(C.RECORD_ID),
        F.col("nhs_number").alias(C.NHS_NUMBER),
        F.col("given_name").alias(C.GIVEN_NAME),
        F.col("family_name").alias(C.FAMILY_NAME),
        F.col("dob").alias(C.DATE_OF_BIRTH),
        F.col("sex").alias(C.SEX),
        F.col("postcode").alias(C.POSTCODE),
    )
    tokens = encode.tokenise(probes, world["key"], keep=[C.TRUE_PERSON_ID, C.DATASET, C.RECORD_ID]).collect()
    population = discover.load_population(spark, [world["tables"]["gp"], world["tables"]["hes_v2"]])
    settings, _ = model_store.load(world["model"])
    prepared = discover.prepare(population, settings)  # once for all probes
    expected_counts = {
        (r[C.TRUE_PERSON_ID], r[C.DATASET]): r["n"]
        for r in truth.where(F.col(C.TRUE_PERSON_ID).isin(chosen)).groupBy(C.TRUE_PERSON_ID, C.DATASET).agg(F.count(F.lit(1)).alias("n")).collect()
    }
    for row in tokens:
        person = row[C.TRUE_PERSON_ID]
        probe = discover.probe_frame(spark, {k: v for k, v in row.asDict().items() if C.is_token(k)})
        found = discover.by_probe(spark, tables=b, population=prepared, probe=probe, threshold=0.9)
        expected = {ds: n for (p, ds), n in expected_counts.items() if p == person}
        assert found.datasets == expected, person
        by_nhs = discover.by_token(spark, tables=b, population=population, column="tk_nhs_number", value=row["tk_nhs_number"])
        assert [d.person_id for d in by_nhs] == [found.person_id]
    prepared.release()
    # Token tables straight in (prepared for the one probe), as the CLI calls it: the same answer.
    last = discover.by_probe(spark, tables=b, population=population, probe=probe, settings=settings, threshold=0.9)
    assert last == found


def test_term_frequencies_are_used_but_never_leave_the_run(spark, world):
    """conf/model_deterministic.yaml adjusts names and postcode for term frequency; the frequencies stay inside.

    They are computed from the population at scoring time. The model JSON, its sidecar and every
    output table hold no frequency column and no token value of a TF-adjusted column (frequency
    tables of tokens would invite a frequency attack), and the run's intermediates are deleted.
    """
    import json

    from natlink.linkage.scoring import compile_model

    settings, meta = model_store.load(world["model"])
    tf_columns = compile_model(settings).tf_columns
    assert set(tf_columns) == {"tk_given_name", "tk_family_name", "tk_postcode"}
    t = world["tables"]
    tokens = discover.load_population(spark, [t["gp"], t["hes_v2"]])
    values = {
        v for c in tf_columns for (v,) in tokens.select(c).where(F.col(c).isNotNull()).distinct().collect()
    }
    assert len(values) > 1000
    model_text = Path(world["model"]).read_text() + json.dumps(meta)
    assert not [v for v in values if v in model_text]
    def keys(node):
        if isinstance(node, dict):
            for k, v in node.items():
                yield k
                yield from keys(v)
        elif isinstance(node, list):
            for v in node:
                yield from keys(v)

    tf_keys = {k for k in keys([settings, meta]) if "tf" in k.lower() or "frequenc" in k.lower()}
    allowed = {"tf_adjustment_column", "tf_adjustment_weight", "tf_minimum_u_value", "term_frequency_adjustment_column_prefix"}
    assert tf_keys <= allowed, tf_keys  # settings only: no frequency table rides along
    for tables in (world["a"], world["b"]):
        for name in linkrun.TABLES:
            df = delta.read(spark, str(tables / name))
            assert not [c for c in df.columns if c.startswith("tf_") or C.is_token(c)], (name, df.columns)
            strings = [c for c, kind in df.dtypes if kind == "string"]
            cells = {v for row in df.select(*strings).collect() for v in row if v is not None}
            assert not (cells & values), name
    checkpoints = Path(spark.sparkContext._jsc.sc().getCheckpointDir().get().replace("file:", ""))
    assert not list(checkpoints.glob("natlink-*")), "intermediates of the link runs were not deleted"


def test_auto_mode_runs_full_once_term_frequencies_drift_too_far():
    from natlink.linkage.scoring import CompiledModel

    def compiled(tf):
        return CompiledModel(part_exprs=[], match_weight_expr="0", match_probability_expr="0", columns=[], tf_columns=tf, link_type="dedupe_only")

    history = [
        {"mode": "full", "counts": '{"records": 1000}'},
        {"mode": "incremental", "counts": '{"records": 1100}'},
    ]
    cfg = LinkConfig(max_incremental_growth=0.2)
    assert incremental.tf_drift_ok(history, 1150, compiled(["tk_family_name"]), cfg)
    assert not incremental.tf_drift_ok(history, 1201, compiled(["tk_family_name"]), cfg)
    assert not incremental.tf_drift_ok(history, 790, compiled(["tk_family_name"]), cfg)
    assert incremental.tf_drift_ok(history, 5000, compiled([]), cfg)  # no TF: incremental is exact
    assert not incremental.tf_drift_ok(history[1:], 1100, compiled(["tk_family_name"]), cfg)  # no full run to measure from
