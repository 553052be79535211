"""Issue 15: deterministic vs block-salted tokens through natlink's own pipeline, in ONE table.

    python benchmarks/bench_salted.py                      # 53,908 persons: ~100k records (gp + hes)
    python benchmarks/bench_salted.py --persons 539084     # ~1M records

For one synthetic population (``_common.prepare_raw``: raw files and truth, cached under
benchmarks/data/), in one process, side by side:
* tokenise gp + hes both ways with ``natlink.commands.tokenise_delivery`` (deterministic: today's
  tokens and Bloom filters, ``conf/model_deterministic.yaml``; salted: ``conf/model.yaml``), records per second;
* train each with its model (``natlink.linkage.train.train_job``) and link with the engine the
  link config picks (in process up to 1M records), threshold 0.9;
* pairwise and cluster-level precision / recall / F1 against the truth;
* leakage of the gp token table to frequency (rank) alignment against the exact value
  distribution of the attacked records (an upper bound for aligning with public tables): every
  token column mapped to its field for the deterministic table; every rule slice of the salted
  table (a record counts when any slice gives its value away); and unique correct combinations.
The attack suite itself (``benchmarks/attacks/run.py``) runs the baseline; its assignment is
quadratic in distinct tokens, so on salted tables it runs at small sizes (RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import ROOT, bench_signing, load_avg, prepare_raw, print_table, spark_session  # noqa: E402
from bench_frequency_hiding import encodings_package  # noqa: E402

DATASETS = ("gp", "hes")
# Token column -> field of the truth, for the deterministic table and for each salted slice.
FIELDS = {"tk_given_name": "given_name", "tk_family_name": "family_name", "tk_dob_year": "dob_year", "tk_postcode_district": "postcode_district"}


def pct(x: float) -> str:
    return f"{100 * x:.2f}%" if x >= 0.001 or x == 0 else f"{100 * x:.3f}%"


def tokenise_all(spark, root: Path, out: Path, model, signer=None) -> tuple[list, float, int]:
    """Tokenise gp + hes of ``root`` into ``out`` (``model``: its salted encoding; None: deterministic),
    manifests signed by ``signer`` (default: the benchmarks' signer); (manifests, seconds, rows)."""
    from natlink import config as cfgmod
    from natlink.commands import tokenise_delivery
    from natlink.config import DatasetConfig
    from natlink.tokens.keys import KeyMaterial
    from _common import BENCH_KEY_HEX

    key = KeyMaterial("bench:not-secret", bytes.fromhex(BENCH_KEY_HEX))
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    made = []
    for name in DATASETS:
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        made.append(tokenise_delivery(spark, ds, key, data_dir=str(root), out=out, signer=signer or bench_signing(), model=model))
    return made, time.perf_counter() - t, sum(int(m.rows) for m in made)


def train_and_link(spark, manifests, cfg, model_path: Path, link_cfg=None):
    """Train ``cfg`` on ``manifests`` and link with ``link_cfg`` (default: threshold 0.9, the
    defaults of :class:`natlink.config.LinkConfig`); (clusters as pandas, timings and counts)."""
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink.config import LinkConfig
    from natlink.linkage import engine as link
    from natlink.linkage import model_store, train
    from natlink.linkage.salted_training import check_scheme
    from natlink.spark.scratch import Scratch
    from natlink.tokens.reader import as_manifests, load_tokens

    t = time.perf_counter()
    train.train_job(spark, manifests=manifests, cfg=cfg, out_path=model_path, overwrite=True)
    trained = time.perf_counter() - t
    loaded = as_manifests(manifests)
    tokens, fp = load_tokens(spark, loaded)
    settings, _ = model_store.load(model_path, key_fingerprint=fp)
    scratch = Scratch(spark)
    t = time.perf_counter()
    link_cfg = link_cfg or LinkConfig(threshold_match_probability=0.9)
    result = link.link(tokens, settings, link_cfg, scratch,
                       n_records=sum(int(m.rows) for m in loaded), scheme=check_scheme(loaded, settings))
    clusters = result.clusters.select(C.DATASET, C.RECORD_ID, F.col(C.CLUSTER_NODE).cast("string").alias(C.PERSON_ID)).toPandas()
    linked = time.perf_counter() - t
    info = {"train s": trained, "link s": linked, "edges": result.n_edges, "engine": result.engine,
            "comparisons": sum(result.comparisons_per_rule), "split": (result.cannot_link or {}).get("components_split", 0)}
    scratch.release()
    return clusters, info


def metrics(spark, clusters, truth_pd) -> dict:
    from natlink.outputs.evaluate import cluster_level, pairwise

    c = spark.createDataFrame(clusters)
    t = spark.createDataFrame(truth_pd)
    pw, cl = pairwise(c, t), cluster_level(c, t)
    return {"precision": pw.precision, "recall": pw.recall, "F1": pw.f1, "cluster precision": cl.precision, "cluster recall": cl.recall}


def gp_plaintext(spark, root: Path):
    """The gp records' normalised values, as the provider holds them (scoring only)."""
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.config import DatasetConfig
    from natlink.provider.onboard import onboard
    from natlink.tokens.normalise import normalise_identifiers, postcode_district

    ds = cfgmod.load(ROOT / "conf" / "datasets" / "gp.yaml", DatasetConfig)
    onboarded = onboard(spark, ds, data_dir=str(root), run_id="bench-salted-plain")
    try:
        clean = onboarded.clean
        ids = [c for c in C.IDENTIFIERS if c in clean.columns]
        plain = clean.select(C.RECORD_ID, *normalise_identifiers(clean, ids)).select(
            C.RECORD_ID, C.GIVEN_NAME, C.FAMILY_NAME, F.year(C.DATE_OF_BIRTH).alias("dob_year"),
            postcode_district(F.col(C.POSTCODE)).alias("postcode_district"),
        )
        return plain.toPandas()
    finally:
        onboarded.unpersist()


def leakage(spark, det_gp, sal_gp, scheme, plain, truth_pd) -> dict:
    import numpy as np

    encodings_package()
    import fh_encodings.leakage as lk

    from natlink import columns as C

    truth = plain.merge(truth_pd[truth_pd[C.DATASET] == "gp"][[C.RECORD_ID, C.TRUE_PERSON_ID]], on=C.RECORD_ID)
    det = det_gp.set_index(C.RECORD_ID).reindex(truth[C.RECORD_ID]).reset_index()
    sal = sal_gp.set_index(C.RECORD_ID).reindex(truth[C.RECORD_ID]).reset_index()
    out = {}
    ok = {"det": {}, "sal": {}}
    for col, field in FIELDS.items():
        t = truth[field].astype(object).where(truth[field].notna(), None)
        ref = t.value_counts()
        ok["det"][field] = lk.rank_attack(det[col], t, ref)
        hit = np.zeros(len(truth), dtype=bool)
        for i in range(len(scheme.rules)):
            hit |= lk.rank_attack(sal[scheme.rule_columns(i)[col]], t, ref)
        ok["sal"][field] = hit
        out[f"{field} recovered (gp)"] = {k: float(ok[k][field].mean()) for k in ok}
    parts = list(FIELDS.values())
    truth = truth.rename(columns={C.TRUE_PERSON_ID: "true_person_id"})
    out["re-identified: given+family+year+district correct and unique"] = {k: lk.reidentified(ok[k], truth, parts) for k in ok}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=53_908)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reuse", action="store_true", help="reuse this benchmark's token tables and tokenise timings")
    parser.add_argument("--reuse-det", action="store_true", help="reuse only the deterministic token tables and timing")
    parser.add_argument("--salted-model", default="conf/model.yaml", help="the salted model (its own token tables)")
    args = parser.parse_args(argv)

    from natlink import columns as C
    from natlink.config import ModelConfig, load
    from natlink.store import delta
    from natlink.tokens.salted import SaltedScheme

    load_start = load_avg()
    bench_signing()  # trusts the benchmarks' signer: cached token tables (--reuse) are verified against it
    spark = spark_session(memory="8g", conf={"spark.sql.shuffle.partitions": "8"})
    root = prepare_raw(spark, args.persons, args.seed)
    det_cfg = load(ROOT / "conf" / "model_deterministic.yaml", ModelConfig)
    sal_cfg = load(ROOT / args.salted_model, ModelConfig)
    work = root / "bench_salted"
    # Salted tables depend on the model's rules: one folder (and timing) per scheme.
    sal_dir = work / f"sal_{SaltedScheme.from_model(sal_cfg).fingerprint[7:19]}"
    saved = work / "tokenise.json"
    times = json.loads(saved.read_text()) if saved.is_file() else {}
    from natlink.tokens.manifest import TokenManifest

    if (args.reuse or args.reuse_det) and "det_s" in times:  # an earlier run's deterministic tables and timing
        det_made = [TokenManifest.load(work / "det" / "tokens" / f"{d}.manifest.json") for d in DATASETS]
        det_s, n = times["det_s"], sum(int(m.rows) for m in det_made)
    else:
        det_made, det_s, n = tokenise_all(spark, root, work / "det", None)
        times.update(det_s=det_s, det_load=load_avg())
    if args.reuse and sal_dir.name in times:
        sal_made = [TokenManifest.load(sal_dir / "tokens" / f"{d}.manifest.json") for d in DATASETS]
        sal_s, n_sal = times[sal_dir.name], sum(int(m.rows) for m in sal_made)
    else:
        sal_made, sal_s, n_sal = tokenise_all(spark, root, sal_dir, sal_cfg)
        times.update({sal_dir.name: sal_s, f"{sal_dir.name}_load": load_avg()})
    saved.write_text(json.dumps(times))
    assert n == n_sal, (n, n_sal)
    truth_pd = spark.read.parquet(str(root / "truth")).select(C.DATASET, C.RECORD_ID, C.TRUE_PERSON_ID).toPandas()
    det_clusters, det_info = train_and_link(spark, det_made, det_cfg, work / "det_model.json")
    sal_clusters, sal_info = train_and_link(spark, sal_made, sal_cfg, work / "sal_model.json")
    det_m, sal_m = metrics(spark, det_clusters, truth_pd), metrics(spark, sal_clusters, truth_pd)
    scheme = SaltedScheme.from_model(sal_cfg)
    gp_det = delta.read(spark, str(work / "det" / "tokens" / "gp")).select(C.RECORD_ID, *FIELDS).toPandas()
    gp_sal = delta.read(spark, str(sal_dir / "tokens" / "gp")).select(C.RECORD_ID, *scheme.columns).toPandas()
    leaks = leakage(spark, gp_det, gp_sal, scheme, gp_plaintext(spark, root), truth_pd)
    load_end = load_avg()

    rows = [
        ["records", n, n_sal],
        ["tokenise s (gp + hes, onboarding included)", f"{det_s:.1f}", f"{sal_s:.1f}"],
        ["tokenise records/s", f"{n / det_s:,.0f}", f"{n / sal_s:,.0f}"],
        ["token columns per record", len(det_made[0].data["columns"]["tokens"]) + len(det_made[0].data["columns"]["blooms"]), len(scheme.columns)],
        ["train s", f"{det_info['train s']:.1f}", f"{sal_info['train s']:.1f}"],
        ["link s (" + det_info["engine"] + ")", f"{det_info['link s']:.1f}", f"{sal_info['link s']:.1f}"],
        ["pairs compared", det_info["comparisons"], sal_info["comparisons"]],
        ["edges >= 0.9", det_info["edges"], sal_info["edges"]],
        ["components split by cannot-link", det_info["split"], sal_info["split"]],
    ]
    for k in ("precision", "recall", "F1", "cluster precision", "cluster recall"):
        rows.append([f"pairwise {k}" if "cluster" not in k else k, f"{det_m[k]:.4f}", f"{sal_m[k]:.4f}"])
    rows.append(["F1 salted - deterministic", "", f"{sal_m['F1'] - det_m['F1']:+.4f}"])
    for k, v in leaks.items():
        rows.append([f"rank alignment: {k}", pct(v["det"]), pct(v["sal"])])
    print(f"\nbench_salted: {args.persons:,} persons, seed {args.seed}; load average at start {load_start}, at end {load_end}")
    print_table(["measure", "deterministic (conf/model_deterministic.yaml)", f"salted ({args.salted_model})"], rows)


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
