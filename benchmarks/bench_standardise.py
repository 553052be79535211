"""Standardisation throughput on Spark local mode (default 2 cores, 1M rows); prints one table.

    python benchmarks/bench_standardise.py [--rows 1000000] [--master local[2]] [--work DIR]

1. (untimed) writes a synthetic GP-style CSV extract of --rows rows with natlink.synth.generate
   (realistic names, typos, missing values) under --work, reused on reruns;
2. ``standardise``: the transform alone, from the raw rows cached in memory to a no-op sink
   (best of two runs: the first also warms the JIT);
3. ``onboard``: everything a delivery goes through - CSV read and parse, row checks,
   standardise, duplicate detection (a shuffle by record id), quarantine, counts and their
   reconciliation - then the clean rows to a no-op sink.

Timings on a shared machine are noisy: the 1-minute load average before and after each step is
printed with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", default="/tmp/natlink-bench-standardise")
    parser.add_argument("--fresh", action="store_true", help="regenerate the input even if present")
    parser.add_argument("--single-file", action="store_true", help="onboard one CSV file (the parts concatenated)")
    parser.add_argument("--csv-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark CSV reader option for onboard, e.g. multiLine=false (repeatable)")
    args = parser.parse_args()

    from natlink.provider import standardise as S
    from natlink.synth import generate as synth
    from natlink.config.datasets import DatasetConfig
    from natlink.provider.onboard import onboard
    from natlink.spark.session import get_spark

    spark = get_spark(
        "natlink-bench-standardise",
        master=args.master,
        conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "4g"},
    )
    work = Path(args.work)
    synth_dir = work / f"synth-gp-{args.rows}"
    raw_dir = synth_dir / "raw" / "gp"
    if args.fresh and synth_dir.exists():
        shutil.rmtree(synth_dir)
    if not raw_dir.exists():
        # The generator's GP list holds about one registration per person (a few have two).
        synth.generate(spark, synth_dir, persons=args.rows, seed=7, datasets=["gp"])

    source_dir = raw_dir
    if args.single_file:
        # One file: multiLine CSV cannot split a file, so this is where its cost shows.
        source_dir = synth_dir / "raw" / "gp_single"
        if not source_dir.exists():
            source_dir.mkdir(parents=True)
            parts = sorted(p for p in raw_dir.iterdir() if p.name.endswith(".csv"))
            with open(source_dir / "gp.csv", "wb") as out:
                for i, part in enumerate(parts):
                    data = part.read_bytes()
                    out.write(data if i == 0 else data.split(b"\n", 1)[1])
    options = dict(o.split("=", 1) for o in args.csv_option)
    cfg = DatasetConfig.model_validate(
        {
            "name": "bench",
            "source": {"path": str(source_dir), "format": "csv", **({"options": options} if options else {})},
            "record_id": "patient_ref",
            "columns": {
                "nhs_number": "nhs_no", "given_name": "forename", "family_name": "surname",
                "date_of_birth": "birth_date", "sex": "gender", "postcode": "postcode",
            },
            "date_formats": ["yyyy-MM-dd", "d/M/yyyy"],
            "nhs_number": {"allow_test_range": True},
            "schema_checks": {"unexpected_columns": "ignore"},
        }
    )
    results = []

    raw = spark.read.option("header", True).csv(str(raw_dir)).cache()
    rows = raw.count()
    best = None
    for _ in range(2):
        before = _load()
        t = time.perf_counter()
        S.standardise(raw, cfg).write.format("noop").mode("overwrite").save()
        seconds = time.perf_counter() - t
        if best is None or seconds < best[0]:
            best = (seconds, before, _load())
    results.append(("standardise (cached raw -> noop)", rows, *best))
    raw.unpersist()

    before = _load()
    t = time.perf_counter()
    result = onboard(spark, cfg, run_id="bench", as_of=None)
    result.clean.write.format("noop").mode("overwrite").save()
    result.quarantine.write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - t
    result.unpersist()
    assert result.counts.rows_in == rows
    results.append(("onboard (csv -> clean + quarantine + counts)", rows, seconds, before, _load()))

    cores = spark.sparkContext.defaultParallelism
    files = len(list(source_dir.iterdir()))
    print(f"\nnatlink standardisation throughput  master={args.master}  defaultParallelism={cores}  "
          f"cpu_count={os.cpu_count()}  rows_out={result.counts.rows_out}  quarantined={result.counts.quarantined}  "
          f"source files={files}  csv options={options or 'defaults'}")
    print(f"{'step':<48} {'rows':>10} {'seconds':>9} {'rows/s':>10} {'load before':>12} {'load after':>11}")
    for name, n, seconds, before, after in results:
        print(f"{name:<48} {n:>10} {seconds:>9.1f} {n / seconds:>10.0f} {before:>12} {after:>11}")



if __name__ == "__main__":
    main()
