"""Incremental vs full link run on a new delivery: wall time, work done and agreement.

For each size, the synthetic gp + hes token tables (benchmarks/_common.prepare_tokens) are split:
delivery 1 holds hes without a share of its records (--delivery, default 2%), delivery 2 holds all
of them. A model is trained once (conf/model.yaml, TF on). Then, in one Spark session:

1. run r1 (full, engine as configured in conf/link.yaml) on delivery 1 into tables A, and copy A
   to B and C: all hold the same first run;
2. run r2 with mode incremental on delivery 2 into A (incremental runs on the Spark engine);
3. run r2 with mode full and the Spark engine on delivery 2 into B: the scheduled full rerun (it
   compares the whole population and maps its clusters to r1's person ids). It runs after 2, with
   a warmer JVM;
4. run r2 with mode full and the configured engine (auto: in process up to
   in_process_max_records) into C: what mode auto runs when the population fits in process.

Steps 2-4 are the ways of doing the same monthly rerun. It prints ONE table: seconds per run (link
run end to end: read, prepare, predict, cluster, ids, Delta writes), records affected, the pairwise
agreement of the incremental clusters with the Spark full rerun's (precision, recall), the share of
records given the same person id by both, the same share between the two full reruns, and F1
against truth; then each run's stage seconds. Each run starts with the reader's per-process scan
memory cleared, as a scheduled run in its own process would: a table an earlier run of the same
tables folder read (same signed content) is not value-scanned again, a changed one is (hes in steps
2 and 3). Before 2026-12-03 (fifth session) the runs shared one process's memory, so step 2 scanned
the changed hes and step 3 did not.

    python benchmarks/bench_incremental.py                      # 100k and 1M records
    python benchmarks/bench_incremental.py --records 100000 --delivery 0.05
    python benchmarks/bench_incremental.py --national 10000000 --driver-memory 16g

With ``--national PERSONS`` the token tables, the model and the link settings are those of
``benchmarks/bench_national.py``'s last run at that size (block-salted ``conf/model.yaml`` tokens,
its trained model, ``conf/link.yaml`` with the Spark engine and the large-block splits; run it
first). The model is not trained again: a monthly rerun reuses the model it has. Step 4 is left
out (at national sizes the configured engine is Spark, so it would repeat step 3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, ROOT, bench_signing, load_avg, prepare_tokens, print_table, spark_session  # noqa: E402


def _persons_for(records: int) -> int:
    return max(1000, round(records / 1.855))  # as benchmarks/bench_link.py


def national_inputs(persons: int, seed: int = 42) -> tuple[Path, Path, Path, Path]:
    """bench_national's run at ``persons``: (its token folder, model, link settings, truth)."""
    from bench_national import workdir

    work = workdir(persons, seed, "conf/model.yaml")
    out = work / "out"
    for need in (out / "tokens" / "gp.manifest.json", out / "tokens" / "hes.manifest.json", out / "model.json", work / "link.yaml"):
        if not need.exists():
            raise SystemExit(f"{need} is missing: run `python benchmarks/bench_national.py --persons {persons}` first")
    return out / "tokens", out / "model.json", work / "link.yaml", DATA / f"p{persons}_s{seed}" / "truth"


def run_size(records: int, delivery: float, national: int | None = None, memory: str = "8g") -> dict:
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.store import delta
    from natlink.outputs import evaluate
    from natlink.linkage import run as linkrun
    from natlink.linkage import train
    from natlink.tokens import reader
    from natlink.tokens.manifest import TokenManifest

    spark = spark_session(memory=memory)
    if national:
        bench_signing()
        tokens, model_path, link_yaml, truth_path = national_inputs(national)
        work = DATA / f"_incremental_national_{national}"
    else:
        out = prepare_tokens(spark, _persons_for(records))
        tokens, link_yaml, truth_path = out / "tokens", ROOT / "conf" / "link.yaml", out / "truth"
        work = DATA / f"_incremental_{records}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gp = TokenManifest.load(tokens / "gp.manifest.json")
    hes = TokenManifest.load(tokens / "hes.manifest.json")
    buckets = round(1 / delivery)
    hes_df = delta.read(spark, str(hes.table_path))
    held = F.xxhash64(F.col(C.RECORD_ID)) % buckets == 0
    v1_path = work / "hes_v1"
    written = delta.write(hes_df.where(~held), str(v1_path), mode="overwrite", partition_by=(C.REGION,))
    hes_v1 = TokenManifest({**hes.data, "table": str(v1_path), "rows": written.rows, "delta_version": written.version}).save(
        work / "hes_v1.manifest.json", signer=bench_signing()
    )

    lcfg = cfgmod.load(link_yaml, cfgmod.LinkConfig)
    if not national:
        mcfg = cfgmod.load(ROOT / "conf" / "model_deterministic.yaml", cfgmod.ModelConfig)
        model_path = train.train_job(spark, manifests=[gp, hes_v1], cfg=mcfg, out_path=work / "model.json", overwrite=True)

    def timed(cfg=lcfg, **kw):
        reader.forget_scans()  # each run scans what a new process would (tables an earlier run of the folder read are not)
        t = time.perf_counter()
        summary = linkrun.run(spark, model_path=model_path, link_cfg=cfg, **kw)
        return summary, time.perf_counter() - t

    on_spark = lcfg.model_copy(update={"engine": "spark"})
    r1, r1_s = timed(manifests=[gp, hes_v1], tables=work / "A", run_id="r1", mode="full")
    print(f"first run {r1_s:.0f} s", file=sys.stderr, flush=True)
    shutil.copytree(work / "A", work / "B")
    if not national:
        shutil.copytree(work / "A", work / "C")
    # Incremental first: the later run of a session gains from a warm JVM, so this order favours full.
    r2, r2_s = timed(manifests=[gp, hes], tables=work / "A", run_id="r2", mode="incremental")
    print(f"incremental run {r2_s:.0f} s", file=sys.stderr, flush=True)
    full, full_s = timed(on_spark, manifests=[gp, hes], tables=work / "B", run_id="r2", mode="full")
    print(f"full rerun {full_s:.0f} s", file=sys.stderr, flush=True)
    assert (full.mode, r2.mode) == ("full", "incremental"), (full.mode, r2.mode)
    # --national runs no step 4: its columns stay empty rather than repeat step 3's figures
    conf_full = None if national else timed(manifests=[gp, hes], tables=work / "C", run_id="r2", mode="full")
    assert conf_full is None or conf_full[0].mode == "full", conf_full[0].mode

    def clusters(where: str):
        return delta.read(spark, str(work / where / "clusters")).select(C.DATASET, C.RECORD_ID, C.PERSON_ID)

    def same_ids(a, b) -> float:
        joined = a.join(b.withColumnRenamed(C.PERSON_ID, "_other_id"), on=[C.DATASET, C.RECORD_ID], how="inner")
        return joined.agg(F.avg((F.col(C.PERSON_ID) == F.col("_other_id")).cast("double"))).first()[0]

    inc, ref = clusters("A"), clusters("B")
    agreement = evaluate.pairwise(inc, ref.withColumnRenamed(C.PERSON_ID, C.TRUE_PERSON_ID))
    same_id = same_ids(inc, ref)
    same_full = None if national else same_ids(clusters("C"), ref)
    truth = spark.read.parquet(str(truth_path))
    f1_inc = evaluate.pairwise(inc, truth).f1
    f1_full = evaluate.pairwise(ref, truth).f1
    status = r2.counts["records_by_status"]
    return {
        "records": full.counts["records"],
        "delivery": status.get("new", 0) + status.get("changed", 0),
        "first_run_s": round(r1_s, 1),
        "full_s": round(full_s, 1),
        "incremental_s": round(r2_s, 1),
        "speedup": round(full_s / r2_s, 2),
        "full_conf_s": "" if conf_full is None else round(conf_full[1], 1),
        "full_conf_engine": "" if conf_full is None else conf_full[0].counts["engine"],
        "same_id_fulls": "" if same_full is None else round(same_full, 6),
        "full_stages": json.dumps(full.timings),
        "full_conf_stages": "" if conf_full is None else json.dumps(conf_full[0].timings),
        "incremental_stages": json.dumps(r2.timings),
        "affected": r2.counts["affected_records"],
        "agree_p": round(agreement.precision, 6),
        "agree_r": round(agreement.recall, 6),
        "same_id": round(same_id, 6),
        "f1_full": round(f1_full, 4),
        "f1_incremental": round(f1_inc, 4),
        "load": load_avg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--delivery", type=float, default=0.02, help="share of hes records that arrive in delivery 2")
    parser.add_argument("--national", type=int, help="persons of bench_national's last run: use its tokens, model and link settings")
    parser.add_argument("--driver-memory", default="8g", help="spark.driver.memory (local mode: the one JVM)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_size(args.one, args.delivery, args.national, args.driver_memory)), flush=True)
        return
    rows = []
    for records in [args.national] if args.national else args.records:
        cmd = [sys.executable, __file__, "--one", str(records), "--delivery", str(args.delivery), "--driver-memory", args.driver_memory,
               *(["--national", str(args.national)] if args.national else [])]
        # stderr (Spark's log, the progress lines) goes where this process's goes
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            rows.append({"records": records, "error": f"exit code {proc.returncode}, no result (its stderr is above)"})
            continue
        rows.append(json.loads(lines[-1][len("RESULT "):]))
    headers = [
        "records", "delivery", "first_run_s", "full_s", "incremental_s", "speedup", "full_conf_s", "full_conf_engine", "same_id_fulls",
        "affected", "agree_p", "agree_r", "same_id", "f1_full", "f1_incremental", "load",
    ]
    print_table(headers, [[r.get(h, "") for h in headers] for r in rows])
    for r in rows:
        if "error" in r:
            print(f"{r['records']}: failed: {r['error']}")
    for r in rows:
        if "full_stages" in r:
            print(f"{r['records']}: full (spark) stages {r['full_stages']}; incremental stages {r['incremental_stages']}; "
                  f"full ({r['full_conf_engine']}) stages {r['full_conf_stages']}")


if __name__ == "__main__":
    main()
