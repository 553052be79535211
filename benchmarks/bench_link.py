"""End-to-end linkage benchmark: natlink vs Splink on DuckDB vs plain Splink-on-Spark.

For each size (records) and engine, a fresh subprocess trains the same model settings
(conf/model.yaml) on the same token records, predicts at the configured threshold and clusters.
``natlink`` runs as configured (``conf/link.yaml``: engine auto scores a population of up to
``in_process_max_records`` in process); ``natlink-spark`` forces natlink's Spark engine, as used
above that bound. It prints ONE table: wall time (train, predict+cluster, total; Spark start-up excluded and shown
apart), peak memory of the process tree (Python + JVM), comparisons per record, edges, clusters,
pairwise F1 against the synthetic truth, and the load average while it ran.

    python benchmarks/bench_link.py                      # 100k and 1M records, all engines
    python benchmarks/bench_link.py --records 100000 --engines natlink duckdb
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
from _common import DATA, PeakMemory, ROOT, load_avg, prepare_tokens, print_table, spark_session  # noqa: E402

# natlink: as configured (conf/link.yaml, engine auto: in process up to in_process_max_records);
# natlink-spark: natlink's Spark engine forced, as it runs above that bound.
ENGINES = ("natlink", "natlink-spark", "duckdb", "splink-spark")


def _persons_for(records: int) -> int:
    return max(1000, round(records / 1.855))  # gp + hes: ~1.855 records per person (conf/synth.yaml)


def _token_frame(spark, out: Path):
    from natlink.store import delta
    from natlink.tokens import reader

    frames = [delta.read(spark, str(out / "tokens" / n)) for n in ("gp", "hes")]
    return reader.with_unique_id(frames[0].unionByName(frames[1], allowMissingColumns=True))


def _evaluate(spark, out: Path, clusters) -> float:
    from natlink.outputs import evaluate

    truth = spark.read.parquet(str(out / "truth"))
    return evaluate.pairwise(clusters, truth).f1


def run_engine(engine: str, records: int) -> dict:
    from pyspark.sql import functions as F

    from natlink import config as cfgmod
    from natlink import columns as C
    from natlink.linkage import engine as link
    from natlink.linkage import settings as model_settings
    from natlink.linkage import train
    from natlink.config import LinkConfig, ModelConfig
    from natlink.spark.scratch import Scratch

    t0 = time.perf_counter()
    spark = spark_session()
    startup = time.perf_counter() - t0
    out = prepare_tokens(spark, _persons_for(records))
    tokens = _token_frame(spark, out).cache()
    n = tokens.count()
    mcfg = cfgmod.load(ROOT / "conf" / "model_deterministic.yaml", ModelConfig)
    lcfg = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig)
    result: dict = {"engine": engine, "records": n, "spark_startup_s": round(startup, 1)}
    scratch = Scratch(spark)  # this process's intermediate files; it ends with the run

    with PeakMemory() as mem:
        t = time.perf_counter()
        if engine.startswith("natlink"):
            trained = train.train(tokens, mcfg).settings
            result["train_s"] = time.perf_counter() - t
            t = time.perf_counter()
            run_cfg = lcfg.model_copy(update={"engine": "spark"}) if engine == "natlink-spark" else lcfg
            res = link.link(tokens, trained, run_cfg, scratch)
            result["link_engine"] = res.engine
            clusters = res.clusters.select(C.DATASET, C.RECORD_ID, F.col(link.CLUSTER_NODE).cast("string").alias(C.PERSON_ID))
            n_edges = res.n_edges
            result["predict_cluster_s"] = time.perf_counter() - t
            result["comparisons"] = sum(res.comparisons_per_rule)
        else:
            from splink import DuckDBAPI, Linker
            from splink.backends.spark import SparkAPI

            settings = model_settings.splink_settings(mcfg)
            tr = mcfg.training
            if engine == "duckdb":
                slim = tokens.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, *sorted(model_settings.required_columns(settings))).toArrow()
                db = DuckDBAPI()
                linker = Linker(db.register(slim), settings, log_level=40)
            else:
                db = SparkAPI(spark_session=spark)
                linker = Linker(db.register(tokens), settings, log_level=40)
            linker.training.estimate_probability_two_random_records_match([model_settings.rule_sql(r) for r in tr.deterministic_rules], recall=tr.deterministic_recall)
            linker.training.estimate_u_using_random_sampling(max_pairs=tr.u_max_pairs, seed=tr.seed)
            for rule in tr.em_blocking_rules:
                linker.training.estimate_parameters_using_expectation_maximisation(model_settings.rule_sql(rule))
            result["train_s"] = time.perf_counter() - t
            t = time.perf_counter()
            pred = linker.inference.predict(threshold_match_probability=lcfg.threshold_match_probability)
            clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=lcfg.threshold_match_probability)
            if engine == "duckdb":
                cl = clustered.as_pyarrow_table() if hasattr(clustered, "as_pyarrow_table") else clustered.as_pandas_dataframe()
                n_edges = pred.as_duckdbpyrelation().count("*").fetchall()[0][0]  # duckdb 2: no fetchone()
                result["predict_cluster_s"] = time.perf_counter() - t
                cdf = spark.createDataFrame(cl if not hasattr(cl, "to_pandas") else cl.to_pandas())
            else:
                cdf = clustered.as_spark_dataframe()
                n_edges = pred.as_spark_dataframe().count()
                cdf.count()
                result["predict_cluster_s"] = time.perf_counter() - t
            clusters = cdf.select(C.DATASET, C.RECORD_ID, F.col("cluster_id").cast("string").alias(C.PERSON_ID))
    result["total_s"] = result["train_s"] + result["predict_cluster_s"]
    result["peak_mem_mb"] = round(mem.peak)
    result["edges"] = n_edges
    result["f1"] = round(_evaluate(spark, out, clusters), 4)
    if "comparisons" not in result:
        # Same measure as natlink's budget check: per prediction rule, sum over key groups of n choose 2.
        from natlink.linkage import blocking
        from natlink.linkage import scoring

        settings = model_settings.splink_settings(mcfg)
        rules = blocking.rules_from_settings(settings)
        recs = link.prepare_records(tokens, scoring.compile_model(settings), rules, scratch)
        result["comparisons"] = sum(blocking.count_comparisons(recs, rules))
    result["comparisons_per_record"] = round(result["comparisons"] / n, 2)
    result["load"] = load_avg()
    for k in ("train_s", "predict_cluster_s", "total_s"):
        result[k] = round(result[k], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "RECORDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_engine(args.one[0], int(args.one[1]))), flush=True)
        return
    DATA.mkdir(parents=True, exist_ok=True)
    rows = []
    for records in args.records:
        # Prepare the data once, outside any timing.
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from _common import *; prepare_tokens(spark_session(), {_persons_for(records)})"], check=True, capture_output=True)
        for engine in args.engines:
            proc = subprocess.run([sys.executable, __file__, "--one", engine, str(records)], capture_output=True, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
            lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                rows.append({"engine": engine, "records": records, "error": (proc.stderr or "")[-300:].replace("\n", " ")})
                continue
            rows.append(json.loads(lines[-1][len("RESULT "):]))
    headers = ["engine", "link_engine", "records", "train_s", "predict_cluster_s", "total_s", "spark_startup_s", "peak_mem_mb", "comparisons_per_record", "edges", "f1", "load"]
    print_table(headers, [[r.get(h, r.get("error", "")) if h != "engine" else r["engine"] for h in headers] for r in rows])


if __name__ == "__main__":
    main()
