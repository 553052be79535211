"""Issue 18: the production path at national sizes, natlink on Spark beside Splink on DuckDB, in ONE table.

    python benchmarks/bench_national.py --persons 100000
    python benchmarks/bench_national.py --persons 1000000 3000000 10000000 --duckdb-max-persons 3000000

For each size, in fresh subprocesses (one JVM per size, none for DuckDB):

* generate: the synthetic population (gp + hes raw CSV and truth; ``_common.prepare_raw``, cached
  under benchmarks/data, its seconds shown when made in this run);
* natlink: ``natlink.commands.run`` (what ``natlink run`` runs), in ONE Spark application: tokenise
  gp, tokenise hes (onboarding included, block-salted ``conf/model.yaml``), train, link on the Spark
  engine (``conf/link.yaml`` with ``engine: spark``) into Delta, evaluate against the truth. Per
  step: wall seconds, peak RSS of the driver's Python and of Python + JVM (sampled every 0.5 s),
  shuffle spill (memory and disk bytes of the step's tasks, from Spark's event log); the JVM heap
  peak (stage executor metrics of the event log);
* duckdb: Splink on DuckDB, no Spark, on the same token tables (read with delta-rs) and the model
  natlink trained (salted tokens hide value frequencies, so Splink cannot sample u from them: the
  u-probabilities are the providers', as in natlink): Splink's ``predict`` per prediction rule on
  that rule's salted columns (each pair once, by the first rule that meets it: natlink's
  ``inprocess.Engine``, a thin wrapper of Splink's DuckDB linker) and Splink's
  ``cluster_pairwise_predictions_at_threshold`` (no cannot-link guard), DuckDB capped at
  ``--duckdb-memory``. Its failure (an out-of-memory error, the process killed) is a row of the table.

Comparisons per record are per prediction rule (pairs the rule generates / records). Accuracy is
pairwise and cluster-level (a cluster is right when it equals a true person's records exactly).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, ROOT, PeakMemory, bench_signing, load_avg, prepare_raw, print_table, spark_session, tree_rss_mb  # noqa: E402

DATASETS = ("gp", "hes")
RESULTS = DATA / "national" / "results.jsonl"


class StepMemory:
    """Peak RSS (MB) per step of this Python process alone and of its process tree (+ the JVM)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.step = "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self.starts: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def begin(self, label: str) -> None:
        self.step = label
        self.starts.append((label, time.time()))

    def _run(self) -> None:
        pid, page = os.getpid(), os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open(f"/proc/{pid}/statm") as fh:
                own = int(fh.read().split()[1]) * page / 1e6
            peak = self.peaks.setdefault(self.step, {"python": 0.0, "tree": 0.0})
            peak["python"], peak["tree"] = max(peak["python"], own), max(peak["tree"], tree_rss_mb(pid))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def event_log_metrics(folder: Path, windows: list[tuple[str, float, float]]) -> tuple[dict[str, dict[str, float]], float]:
    """Spilled bytes (memory, disk) per step window (by task finish time) and the JVM heap peak, in MB."""
    spill = {name: {"spill_mem": 0.0, "spill_disk": 0.0} for name, _, _ in windows}
    heap = 0.0
    for log in sorted(p for p in folder.rglob("*") if p.is_file()):  # Spark 4: a rolling eventlog_v2_<app> folder
        with open(log) as fh:
            for line in fh:
                if '"SparkListenerTaskEnd"' in line:
                    ev = json.loads(line)
                    metrics, finish = ev.get("Task Metrics") or {}, ev["Task Info"]["Finish Time"] / 1000
                    for name, start, end in windows:
                        if start <= finish <= end:
                            spill[name]["spill_mem"] += metrics.get("Memory Bytes Spilled", 0) / 1e6
                            spill[name]["spill_disk"] += metrics.get("Disk Bytes Spilled", 0) / 1e6
                elif '"JVMHeapMemory"' in line:
                    ev = json.loads(line)
                    heap = max(heap, (ev.get("Executor Metrics") or {}).get("JVMHeapMemory", 0) / 1e6)
    return spill, heap


def workdir(persons: int, seed: int, model: str) -> Path:
    """This size's folder (one per model: the salted tokens depend on its rules)."""
    tag = "" if model == "conf/model.yaml" else "_" + Path(model).stem
    return DATA / "national" / f"p{persons}_s{seed}{tag}"


def link_config(work: Path) -> Path:
    """conf/link.yaml with the Spark engine forced (at these sizes ``auto`` would pick in process up to 1M)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "conf" / "link.yaml").read_text())
    cfg["engine"] = "spark"
    path = work / "link.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_natlink(persons: int, seed: int, memory: str, report: bool, model: str = "conf/model.yaml") -> dict:
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink.commands import run as natlink_run
    from natlink.config import RunConfig
    from natlink.linkage.runs import completed_view
    from natlink.tokens import keys

    bench_signing()
    work = workdir(persons, seed, model)
    shutil.rmtree(work, ignore_errors=True)
    (work / "eventlog").mkdir(parents=True)
    key = keys.create_key_file(work / "keys" / "token.key")  # a fresh random key per benchmark run
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": (work / "eventlog").as_uri(), "spark.eventLog.compress": "false",
            "spark.eventLog.logStageExecutorMetrics": "true", "spark.sql.shuffle.partitions": "16"}
    t = time.perf_counter()
    spark = spark_session(memory=memory, conf=conf)
    startup = time.perf_counter() - t
    raw = prepare_raw(spark, persons, seed)
    cfg = RunConfig(output_dir=str(work / "out"), data_dir=str(raw), key=key, datasets=[f"conf/datasets/{d}.yaml" for d in DATASETS],
                    link=str(link_config(work)), truth=str(raw / "truth"), report=report, model=model)
    app_id = spark.sparkContext.applicationId
    with StepMemory() as mem:
        result = natlink_run(cfg, spark=spark, progress=lambda _msg: mem.begin(f"step{len(mem.starts)}"))
        mem.begin("end")
        clusters = completed_view(spark, work / "out" / "tables", result.link.run_id).table("clusters", this_run_only=True)
        largest = clusters.groupBy(C.PERSON_ID).agg(F.count(F.lit(1)).alias("n")).agg(F.max("n")).first()[0]
    spark.stop()
    steps = list(result.timings)  # the order the steps ran (the progress calls above)
    windows = [(steps[i], mem.starts[i][1], mem.starts[i + 1][1]) for i in range(len(steps))]
    spill, heap = event_log_metrics(work / "eventlog", windows)
    counts = result.link.counts
    records = counts["records"]
    per_step = {
        name: {"s": result.timings[name], "python_mb": mem.peaks.get(f"step{i}", {}).get("python", 0.0),
               "tree_mb": mem.peaks.get(f"step{i}", {}).get("tree", 0.0), **spill[name]}
        for i, name in enumerate(steps)
    }
    return {
        "engine": "natlink (Spark)", "model": model, "persons": persons, "records": records, "app_ids": sorted(set(result.applications.values()) | {app_id}),
        "records_by_dataset": counts["records_by_dataset"], "spark_startup_s": round(startup, 1), "steps": per_step,
        "jvm_heap_peak_mb": heap, "comparisons_per_rule": counts["comparisons_per_rule"], "edges": counts["edges"],
        "largest_cluster": int(largest), "cannot_link": counts.get("cannot_link"), "block_splits": counts.get("block_splits"),
        "link_timings": result.link.timings,
        "pairwise": result.pairwise.as_dict(), "cluster": result.cluster.as_dict(), "load": load_avg(),
    }


def run_duckdb(persons: int, seed: int, memory_limit: str, model: str = "conf/model.yaml") -> dict:
    """Splink on DuckDB, no Spark: the same token tables and trained model as the natlink run."""
    import pyarrow as pa
    import yaml
    from deltalake import DeltaTable
    from splink import DuckDBAPI
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.config import LinkConfig
    from natlink.linkage import block_splits, blocking, inprocess, scoring
    from natlink.tokens.salted import SaltedScheme

    work = workdir(persons, seed, model)
    out = work / "out"
    manifests = [json.loads((out / "tokens" / f"{d}.manifest.json").read_text()) for d in DATASETS]
    settings = json.loads((out / "model.json").read_text())
    threshold = float(yaml.safe_load((work / "link.yaml").read_text())["threshold_match_probability"])
    rules = blocking.rules_from_settings(settings, SaltedScheme.from_manifest(manifests[0]))
    columns = scoring.compile_model(settings).columns
    needed = blocking.physical_columns(rules, columns)
    # natlink's link.split_large_blocks, in DuckDB SQL: the same split keys (block_splits.with_keys).
    splits = block_splits.plan(rules, cfgmod.load(work / "link.yaml", LinkConfig).split_large_blocks)
    rules = block_splits.split_rules(rules, splits)
    steps: dict[str, dict[str, float]] = {}
    with PeakMemory(interval=0.5) as mem:
        t = time.perf_counter()
        parts = []
        for m in manifests:
            tbl = DeltaTable(str(out / "tokens" / m["table"])).to_pyarrow_table(columns=[C.DATASET, C.RECORD_ID, *needed])
            uid = pa.compute.binary_join_element_wise(tbl.column(C.DATASET), tbl.column(C.RECORD_ID), ":")
            parts.append(tbl.append_column(C.UNIQUE_ID, uid))
        spill = work / "duckdb_spill"
        spill.mkdir(exist_ok=True)
        with inprocess.Engine(spill_parent=str(spill)) as engine:
            engine.con.execute(f"SET memory_limit = '{memory_limit}'")
            engine.con.execute("SET threads = 2")
            # Tokens compare by equality only: DuckDB's 64-bit hash of each (as natlink's engines
            # compact them) keeps the blocked pairs small; as strings, 100k persons took 8.8 GB.
            engine.con.register("bench_raw", pa.concat_tables(parts))
            hashed = ", ".join(f"CASE WHEN {c} IS NOT NULL THEN hash({c}) END AS {c}" for c in needed)
            for sp in splits:
                key = ", ".join(sp.rule.keys)
                present = " AND ".join(f"{k} IS NOT NULL" for k in sp.rule.keys)
                hashed += (f", CASE WHEN {present} THEN CASE WHEN count(*) OVER (PARTITION BY {key}) > {sp.above} "
                           f"THEN hash({key}, 1, {', '.join(sp.by)}) ELSE hash({key}) END END AS {sp.key_column}")
            slim = engine.con.execute(f"SELECT {C.UNIQUE_ID}, {C.DATASET}, {C.RECORD_ID}, {hashed} FROM bench_raw").to_arrow_table()
            engine.con.unregister("bench_raw")
            del parts
            steps["read tokens (delta-rs)"] = {"s": time.perf_counter() - t}
            t = time.perf_counter()
            records = engine.load(slim)
            counts = engine.count_comparisons(rules)
            edges = engine.predict(settings, scoring.probability_to_weight(threshold), columns, rules)
            steps["predict"] = {"s": time.perf_counter() - t}
            print(f"duckdb: predict {steps['predict']['s']:.1f} s, {edges.num_rows} edges", file=sys.stderr, flush=True)
            t = time.perf_counter()
            db = DuckDBAPI(connection=engine.con)
            nodes = records.select([C.NODE_ID, C.DATASET, C.RECORD_ID])
            clustered = cluster_pairwise_predictions_at_threshold(
                nodes, edges, db, node_id_column_name=C.NODE_ID, edge_id_column_name_left=f"{C.NODE_ID}_l",
                edge_id_column_name_right=f"{C.NODE_ID}_r", threshold_match_probability=threshold,
            )
            engine.con.register("bench_nodes", nodes)
            engine.con.execute(
                f"CREATE TABLE bench_clusters AS SELECT n.{C.DATASET}, n.{C.RECORD_ID}, c.cluster_id "
                f"FROM {clustered.physical_name} c JOIN bench_nodes n USING ({C.NODE_ID})"
            )
            steps["cluster"] = {"s": time.perf_counter() - t}
            print(f"duckdb: cluster {steps['cluster']['s']:.1f} s", file=sys.stderr, flush=True)
            metrics = duckdb_metrics(engine.con, "bench_clusters", DATA / f"p{persons}_s{seed}" / "truth")
    spill_mb = sum(f.stat().st_size for f in spill.rglob("*") if f.is_file()) / 1e6
    shutil.rmtree(spill, ignore_errors=True)
    return {
        "engine": "Splink on DuckDB", "model": model, "persons": persons, "records": slim.num_rows, "steps": steps, "tree_peak_mb": mem.peak,
        "comparisons_per_rule": counts, "edges": edges.num_rows, "largest_cluster": metrics.pop("largest"), **metrics,
        "spill_left_mb": spill_mb, "load": load_avg(),
    }


def duckdb_metrics(con, clusters: str, truth: Path) -> dict:
    """Pairwise and cluster-level precision / recall / F1 of ``clusters`` (dataset, record_id, cluster_id) against truth."""
    import pyarrow.dataset as ds

    predicted = con.execute(f"SELECT dataset, record_id, cluster_id FROM {clusters}").df()
    true = ds.dataset(str(truth), format="parquet").to_table(columns=["dataset", "record_id", "true_person_id"]).to_pandas()
    return frame_metrics(predicted, true)


def frame_metrics(predicted, true) -> dict:
    """Pairwise and cluster-level precision / recall / F1 of ``predicted`` (pandas: dataset, record_id,
    cluster_id) against ``true`` (dataset, record_id, true_person_id), over the records in both; and
    the largest predicted cluster. A cluster is right when it equals a true person's records exactly."""
    joined = predicted.merge(true, on=["dataset", "record_id"], how="inner")
    pairs = lambda s: float((s * (s - 1) / 2).sum())  # noqa: E731
    both = joined.groupby(["cluster_id", "true_person_id"]).size()
    by_p, by_t = joined.groupby("cluster_id").size(), joined.groupby("true_person_id").size()
    tp, pp, tt = pairs(both), pairs(by_p), pairs(by_t)
    exact = sum(1 for (p, t), n in both.items() if n == by_p[p] and n == by_t[t])
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0  # noqa: E731
    pp_, pr_ = tp / pp if pp else 1.0, tp / tt if tt else 1.0
    cp_, cr_ = exact / len(by_p), exact / len(by_t)
    return {"pairwise": {"precision": pp_, "recall": pr_, "f1": f1(pp_, pr_), "true_positive_pairs": tp, "predicted_pairs": pp, "true_pairs": tt},
            "cluster": {"precision": cp_, "recall": cr_, "f1": f1(cp_, cr_)}, "largest": int(by_p.max())}


def _child(args: list[str], label: str, rows: list[dict], persons: int, rss_cap_mb: float | None = None) -> dict | None:
    """Run one step in a fresh process; with ``rss_cap_mb``, kill it once its process tree holds more."""
    started, peak = time.perf_counter(), 0.0
    with subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYSPARK_PYTHON": sys.executable}) as proc:
        out_err: list[str] = []
        reader = threading.Thread(target=lambda: out_err.extend(proc.communicate()), daemon=True)
        reader.start()
        while reader.is_alive():
            peak = max(peak, tree_rss_mb(proc.pid))
            if rss_cap_mb is not None and peak > rss_cap_mb:
                proc.kill()
                break
            reader.join(0.5)
        reader.join()
    stdout, stderr = (out_err + ["", ""])[:2]
    found = [json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        if rss_cap_mb is not None and peak > rss_cap_mb:
            why = f"killed at {peak / 1e3:.1f} GB resident, over the {rss_cap_mb / 1e3:.1f} GB cap (--duckdb-rss-cap)"
        elif proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}"
        else:
            why = (stderr or "")[-400:].replace("\n", " ")
        rows.append({"engine": label, "persons": persons, "error": why, "wall_s": time.perf_counter() - started, "load": load_avg()})
        return None
    print("RESULT " + json.dumps(found[-1]), file=sys.stderr, flush=True)
    with open(RESULTS, "a") as fh:  # every measured point, for benchmarks/project_national.py --national
        fh.write(json.dumps(found[-1]) + "\n")
    rows.append(found[-1])
    return found[-1]


def last_natlink_row(persons: int, model: str) -> dict | None:
    """This size's latest natlink row in the results file (for --duckdb-only)."""
    found = None
    for line in RESULTS.read_text().splitlines() if RESULTS.exists() else []:
        row = json.loads(line)
        if row.get("engine", "").startswith("natlink") and row["persons"] == persons and row.get("model", "conf/model.yaml") == model:
            found = row
    return found


def _f(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    headers = ["persons", "engine", "records", "steps: wall s (peak RSS Python / +JVM GB; spill MB)", "path s", "JVM heap peak MB",
               "comparisons/record per rule", "edges", "largest cluster", "pairwise P / R / F1", "cluster P / R / F1", "load"]
    out = []
    for r in rows:
        if "error" in r:
            out.append([f"{r['persons']:,}", r["engine"], "-", f"FAILED after {r['wall_s']:.0f} s: {r['error']}", *["-"] * 7, r["load"]])
            continue
        steps = []
        for name, s in r["steps"].items():
            mem = f" ({s['python_mb'] / 1e3:.1f} / {s['tree_mb'] / 1e3:.1f} GB" if "tree_mb" in s else ""
            spill = f"; {(s['spill_mem'] + s['spill_disk']):,.0f}" if s.get("spill_mem") or s.get("spill_disk") else ""
            steps.append(f"{name} {s['s']:.0f}{mem}{spill}{')' if mem else ''}")
        if "tree_peak_mb" in r:
            steps.append(f"peak RSS {r['tree_peak_mb'] / 1e3:.1f} GB")
        n = r["records"]
        pw, cl = r["pairwise"], r["cluster"]
        out.append([
            f"{r['persons']:,}", r["engine"], f"{n:,}", "; ".join(steps), f"{sum(s['s'] for k, s in r['steps'].items() if k not in ('generate', 'evaluate')):.0f}",
            f"{r['jvm_heap_peak_mb']:,.0f}" if "jvm_heap_peak_mb" in r else "-",
            " / ".join(f"{c / n:.2f}" for c in r["comparisons_per_rule"]) + f" (sum {sum(r['comparisons_per_rule']) / n:.2f})"
            + "".join(f"; split {b['rule']} above {b['above']}: {b['blocks_split']:,} blocks, {b['pairs_not_compared'] / n:.2f}/record not compared"
                      for b in r.get("block_splits") or []),
            f"{r['edges']:,}", r["largest_cluster"], " / ".join(_f(pw[k]) for k in ("precision", "recall", "f1")),
            " / ".join(_f(cl[k]) for k in ("precision", "recall", "f1")), r["load"],
        ])
    return headers, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, nargs="+", default=[100_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--driver-memory", default="8g", help="spark.driver.memory (local mode: the one JVM)")
    parser.add_argument("--duckdb-max-persons", type=int, default=None, help="skip Splink on DuckDB above this size")
    parser.add_argument("--duckdb-memory", default="4GB", help="DuckDB memory_limit (it spills beyond it)")
    parser.add_argument("--duckdb-rss-cap", type=float, default=8.0, help="GB: Splink on DuckDB is stopped above this (a failure row)")
    parser.add_argument("--model", default="conf/model.yaml", help="the model (tokens are salted for its rules)")
    parser.add_argument("--report", action="store_true", help="also write the run's HTML report (a step of its own)")
    parser.add_argument("--duckdb-only", action="store_true", help="reuse this size's last natlink run (its row in the results file)")
    parser.add_argument("--step", choices=["generate", "natlink", "duckdb"], help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "generate":
        t = time.perf_counter()
        out = DATA / f"p{args.one}_s{args.seed}"
        made = not ((out / "_READY_raw").exists() or (out / "_READY_signed").exists())
        prepare_raw(spark_session(memory=args.driver_memory), args.one, args.seed)
        print("RESULT " + json.dumps({"generate_s": time.perf_counter() - t if made else None}), flush=True)
        return
    if args.step == "natlink":
        result = run_natlink(args.one, args.seed, args.driver_memory, args.report, args.model)
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return
    if args.step == "duckdb":
        print("RESULT " + json.dumps(run_duckdb(args.one, args.seed, args.duckdb_memory, args.model), default=str), flush=True)
        return

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load_start, rows = load_avg(), []
    for persons in args.persons:
        common = ["--one", str(persons), "--seed", str(args.seed), "--driver-memory", args.driver_memory, "--model", args.model]
        if args.duckdb_only:
            natlink, made = last_natlink_row(persons, args.model), None
            rows += [natlink] if natlink else []
        else:
            made = _child(["--step", "generate", *common], "generate", [], persons)
            natlink = _child(["--step", "natlink", *common, *(["--report"] if args.report else [])], "natlink (Spark)", rows, persons)
        if natlink is not None and made and made.get("generate_s"):
            natlink["steps"] = {"generate": {"s": made["generate_s"]}, **natlink["steps"]}
        if natlink is not None and (args.duckdb_max_persons is None or persons <= args.duckdb_max_persons):
            _child(["--step", "duckdb", *common, "--duckdb-memory", args.duckdb_memory], "Splink on DuckDB", rows, persons, args.duckdb_rss_cap * 1e3)
    print(f"\nbench_national: {args.model}, seed {args.seed}, driver memory {args.driver_memory}, DuckDB memory_limit {args.duckdb_memory} "
          f"(process cap {args.duckdb_rss_cap} GB); "
          f"load average at start {load_start}, at end {load_avg()}")
    print_table(*table_rows(rows))


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
