"""Do clusters chain as the population grows? Largest cluster, impure clusters, accuracy.

For each population size, a fresh subprocess synthesises gp + hes + registry (death
registrations: one row per person), tokenises them (cached under benchmarks/data), trains the
shipped model (conf/model.yaml) on the tokens and links them through the one engine dispatch
(``natlink.linkage.engine.link``, conf/link.yaml: in process up to ``in_process_max_records``,
else Spark). It prints ONE table: persons, records, edges, the largest cluster, clusters holding
more than one true person (count and share of all clusters), pairwise and cluster-level
precision/recall/F1 against the generator's truth, and the load average; each with the chaining
guard off (plain connected components) and on (cannot-link rules: ``natlink.linkage.constraints``),
with how many components it split and how many edges it dropped.

    python benchmarks/bench_chaining.py                          # 10k, 100k, 300k persons
    python benchmarks/bench_chaining.py --persons 10000 --engine spark
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_KEY_HEX, DATA, ROOT, bench_signing, load_avg, print_table, spark_session  # noqa: E402

DATASETS = ("gp", "hes", "registry")


def prepare(spark, persons: int, seed: int) -> Path:
    """gp + hes + registry for ``persons`` people, tokenised with signed manifests (cached)."""
    from natlink import config as cfgmod
    from natlink.commands import tokenise_delivery
    from natlink.config import DatasetConfig
    from natlink.synth import generate as synth
    from natlink.tokens.keys import KeyMaterial

    signer = bench_signing()
    out = DATA / f"chain_p{persons}_s{seed}"
    done = out / "_READY"
    if done.exists():
        return out
    key = KeyMaterial("bench:not-secret", bytes.fromhex(BENCH_KEY_HEX))
    synth.generate(spark, out, persons=persons, seed=seed, datasets=list(DATASETS))
    for name in DATASETS:
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        tokenise_delivery(spark, ds, key, data_dir=str(out), out=out, signer=signer)
    done.write_text("ok")
    return out


def _tokens(spark, out: Path):
    from natlink.store import delta
    from natlink.tokens import reader

    frames = [delta.read(spark, str(out / "tokens" / n)) for n in DATASETS]
    union = frames[0]
    for f in frames[1:]:
        union = union.unionByName(f, allowMissingColumns=True)
    return reader.with_unique_id(union)


def _settings(out: Path, tokens, mcfg) -> dict:
    """The model trained on this population (cached beside its tokens, so every guard setting
    links with the same model)."""
    from natlink.linkage import train

    path = out / "model_settings.json"
    if not path.exists():
        path.write_text(json.dumps(train.train(tokens, mcfg).settings))
    return json.loads(path.read_text())


def chaining(clusters, truth) -> dict:
    """Largest cluster and clusters holding more than one true person (count, share of all)."""
    from pyspark.sql import functions as F

    from natlink import columns as C

    keys = [C.DATASET, C.RECORD_ID]
    joined = clusters.join(truth.select(*keys, C.TRUE_PERSON_ID), on=keys, how="inner")
    per = joined.groupBy(C.PERSON_ID).agg(F.count(F.lit(1)).alias("n"), F.countDistinct(C.TRUE_PERSON_ID).alias("t"))
    row = per.agg(
        F.count(F.lit(1)).alias("clusters"),
        F.max("n").alias("largest"),
        F.max("t").alias("most_persons"),
        F.sum((F.col("t") > 1).cast("long")).alias("impure"),
    ).first()
    persons = joined.select(C.TRUE_PERSON_ID).distinct().count()
    return {
        "persons": persons,
        "clusters": int(row["clusters"]),
        "largest_cluster": int(row["largest"]),
        "most_persons_in_a_cluster": int(row["most_persons"]),
        "impure_clusters": int(row["impure"]),
        "impure_share": round(int(row["impure"]) / max(int(row["clusters"]), 1), 6),
    }


def run_size(persons: int, seed: int, guards: list[str], engine: str) -> list[dict]:
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.config import LinkConfig, ModelConfig
    from natlink.linkage import engine as link
    from natlink.outputs import evaluate
    from natlink.spark.scratch import Scratch

    spark = spark_session(memory="6g")
    out = prepare(spark, persons, seed)
    tokens = _tokens(spark, out).cache()
    n = tokens.count()
    truth = spark.read.parquet(str(out / "truth")).cache()
    mcfg = cfgmod.load(ROOT / "conf" / "model_deterministic.yaml", ModelConfig)
    settings = _settings(out, tokens, mcfg)
    base = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig)
    if engine != "auto":
        base = base.model_copy(update={"engine": engine})
    rows = []
    for guard in guards:
        cfg = with_guard(base, guard)
        with Scratch(spark) as scratch:
            t = time.perf_counter()
            res = link.link(tokens, settings, cfg, scratch, n_records=n)
            clusters = res.clusters.select(C.DATASET, C.RECORD_ID, F.col(link.CLUSTER_NODE).cast("string").alias(C.PERSON_ID)).cache()
            clusters.count()
            seconds = time.perf_counter() - t
            pw = evaluate.pairwise(clusters, truth)
            cl = evaluate.cluster_level(clusters, truth)
            row = {
                "persons_generated": persons, "guard": guard, "engine": res.engine, "records": n, "edges": res.n_edges,
                **chaining(clusters, truth),
                "pair_p": round(pw.precision, 5), "pair_r": round(pw.recall, 5), "pair_f1": round(pw.f1, 5),
                "cl_p": round(cl.precision, 5), "cl_r": round(cl.recall, 5), "cl_f1": round(cl.f1, 5),
                "link_s": round(seconds, 1), "cluster_s": round(res.timings.get("cluster", 0.0), 2),
                "constraints": res.cannot_link, 
                "load": load_avg(),
            }
            clusters.unpersist()
        rows.append(row)
    return rows


def with_guard(cfg, guard: str):
    """``cfg`` with the chaining guard switched off (``off``: plain connected components, as before
    the guard) or as shipped (``on``: conf/link.yaml's cannot_link, plus the datasets whose
    conf/datasets file declares ``one_row_per_person``, i.e. registry)."""
    from natlink import config as cfgmod
    from natlink.config import DatasetConfig

    if guard == "off":
        return cfg.model_copy(update={"cannot_link": cfg.cannot_link.model_copy(update={"enabled": False})})
    datasets = [cfgmod.load(ROOT / "conf" / "datasets" / f"{n}.yaml", DatasetConfig) for n in DATASETS]
    return cfg.declaring(datasets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--guard", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--engine", default="auto", choices=["auto", "spark", "in_process"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        for row in run_size(args.one, args.seed, args.guard, args.engine):
            print("RESULT " + json.dumps(row), flush=True)
        return
    DATA.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for persons in args.persons:
        cmd = [sys.executable, __file__, "--one", str(persons), "--seed", str(args.seed), "--engine", args.engine, "--guard", *args.guard]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
        found = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            rows.append({"persons_generated": persons, "guard": " ".join(args.guard), "error": (proc.stderr or "")[-400:].replace("\n", " ")})
            continue
        rows += found
        for r in found:
            print("RESULT " + json.dumps(r), file=sys.stderr, flush=True)
    headers = [
        "persons", "guard", "engine", "records", "edges", "largest_cluster", "most_persons_in_a_cluster", "impure_clusters",
        "impure_share", "pair_p", "pair_r", "pair_f1", "cl_p", "cl_r", "cl_f1", "split", "dropped", "link_s", "cluster_s", "load",
    ]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["persons_generated"], r["guard"], "error: " + r["error"], *[""] * (len(headers) - 3)])
            continue
        c = r.get("constraints") or {}
        r = {**r, "split": c.get("components_split", "-"), "dropped": c.get("edges_dropped", "-")}
        table.append([r.get(h, "") for h in headers])
    print_table(headers, table)


if __name__ == "__main__":
    main()
