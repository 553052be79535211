"""Training's peak memory and time at 100k + 100k records, with and without natlink's bounds.

Issue 16 measured 11.2 GB in the driver's Python process for training at 100k + 100k records:
Splink's EM runs in DuckDB inside the Python process, bounded neither by Spark's driver memory
nor by anything natlink set. Each variant below trains conf/model.yaml (with the training keys
shown changed) on the same token tables (gp + hes of ~108k synthetic persons, ~200k records) in
a fresh process, and the script prints ONE table:

* python_peak_mb: peak resident memory of the Python process (DuckDB, Arrow, Splink): the figure
  the issue's target (under 3 GB) is about;
* tree_peak_mb: peak of the process tree, Python + the Spark JVM (whose heap grows towards
  spark.driver.memory, 8g here, independently of training);
* seconds per step (u_exact, sample, lambda, u sampling, EM) and in all;
* em_pairs: pairs of the three EM sessions (after the em_max_pairs cap);
* max_dweight: the largest difference in any level's match weight from the first variant;
* f1 (with --f1): pairwise F1 against the generator's truth, linked with the trained model.

    python benchmarks/bench_train_memory.py               # all variants
    python benchmarks/bench_train_memory.py --f1          # also link and score each model
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, ROOT, load_avg, prepare_tokens, print_table, spark_session  # noqa: E402

PERSONS = 107_817  # gp + hes: ~1.855 records per person -> ~200k records (100k + 100k)
# Training keys changed from conf/model.yaml, per variant. "before": as natlink trained before
# issue 16 (every u sampled, no EM pair cap, DuckDB unbounded).
VARIANTS: dict[str, dict] = {
    "before": {"u_exact": False, "em_max_pairs": None, "duckdb_memory_limit": None},
    "exact_u_unbounded": {"u_exact": True, "em_max_pairs": None, "duckdb_memory_limit": None},
    "defaults": {},
    "em_1e6_1GB": {"em_max_pairs": 1e6, "duckdb_memory_limit": "1GB"},
    # The shipped EM rules give at most 8e5 pairs here. A rule a user might write gives far more:
    # postcode district 7.5e6 pairs, family name 5.7e7 (not run unbounded: it would need many GB
    # on a shared machine).
    "district_unbounded": {"em_blocking_rules": [["tk_nhs_number"], ["tk_dob"], ["tk_postcode_district"]],
                           "em_max_pairs": None, "duckdb_memory_limit": None},
    "district_defaults": {"em_blocking_rules": [["tk_nhs_number"], ["tk_dob"], ["tk_postcode_district"]]},
    "surname_defaults": {"em_blocking_rules": [["tk_nhs_number"], ["tk_dob"], ["tk_family_name"]]},
}


def run_variant(name: str, f1: bool) -> dict:
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.config import LinkConfig, ModelConfig
    from natlink.linkage import engine as link
    from natlink.linkage import train
    from natlink.outputs import evaluate
    from natlink.spark.scratch import Scratch
    from natlink.store import delta
    from natlink.tokens import reader

    spark = spark_session()
    out = prepare_tokens(spark, PERSONS)
    frames = [delta.read(spark, str(out / "tokens" / n)) for n in ("gp", "hes")]
    tokens = reader.with_unique_id(frames[0].unionByName(frames[1], allowMissingColumns=True)).cache()
    n = tokens.count()
    base = cfgmod.load(ROOT / "conf" / "model_deterministic.yaml", ModelConfig)
    cfg = base.model_copy(update={"training": base.training.model_copy(update=VARIANTS[name])})
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with PeakMemory() as mem:
        t = time.perf_counter()
        trained = train.train(tokens, cfg)
        seconds = time.perf_counter() - t
    fit = trained.diagnostics
    result = {
        "variant": name, "records": n, "train_s": round(seconds, 1),
        "python_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "python_before_mb": round(before_kb / 1024), "tree_peak_mb": round(mem.peak),
        "steps_s": {k.removesuffix("_seconds"): round(v, 1) for k, v in fit["timings"].items()},
        "em_pairs": list(fit["em_pairs"].values()),
        "weights": {f"{r['comparison']}/{r['level']}": r["match_weight"] for r in fit["parameters"]},
        "u_sources": sorted({r["u_source"] for r in fit["parameters"]}), "floors": len(fit["floors"]),
    }
    if f1:
        res = link.link(tokens, trained.settings, cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig), Scratch(spark))
        clusters = res.clusters.select(C.DATASET, C.RECORD_ID, F.col(link.CLUSTER_NODE).cast("string").alias(C.PERSON_ID))
        result["f1"] = round(evaluate.pairwise(clusters, spark.read.parquet(str(out / "truth"))).f1, 4)
    result["load"] = load_avg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--f1", action="store_true", help="also link with each model and score it against truth")
    parser.add_argument("--one", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_variant(args.one, args.f1)), flush=True)
        return
    # The token tables are made once, outside any measurement.
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    f"from _common import *; prepare_tokens(spark_session(), {PERSONS})"], check=True, capture_output=True)
    rows = []
    for name in args.variants:
        cmd = [sys.executable, __file__, "--one", name, *(["--f1"] if args.f1 else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            rows.append({"variant": name, "error": (proc.stderr or "")[-400:].replace("\n", " ")})
            continue
        rows.append(json.loads(lines[-1][len("RESULT "):]))
    first = next((r["weights"] for r in rows if "weights" in r), {})
    for r in rows:
        if "weights" in r:
            diffs = [abs(w - first[k]) for k, w in r["weights"].items() if w is not None and first.get(k) is not None]
            r["max_dweight"] = round(max(diffs), 2) if diffs else None
            r["steps_s"] = " ".join(f"{k}={v}" for k, v in r["steps_s"].items())
            r["em_pairs"] = "/".join(f"{p:.2g}" for p in r["em_pairs"])
    print("training keys per variant (changed from conf/model.yaml):", json.dumps(VARIANTS))
    headers = ["variant", "records", "python_peak_mb", "tree_peak_mb", "train_s", "steps_s", "em_pairs", "max_dweight", "floors", "f1", "load"]
    print_table(headers, [[r.get(h, r.get("error", "")) if h != "variant" else r["variant"] for h in headers] for r in rows])


if __name__ == "__main__":
    main()
