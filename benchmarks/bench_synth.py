"""Throughput of the synthetic population generator, and determinism of its truth tables.

    python benchmarks/bench_synth.py --persons 1000000
    python benchmarks/bench_synth.py --persons 10000000 --output /tmp/bench_synth

Generates every configured dataset once (timed), then regenerates the truth tables alone with
the same seed in a fresh Spark session on ONE core (``local[1]``, a different partition count
and thread count) and compares the truth files byte for byte. Prints one table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("part-*")):
        h.update(f.name.split("-")[1].encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run(args: argparse.Namespace, out: Path, master: str, truth_only: bool) -> dict:
    """One generation in a fresh Python + JVM, so sessions and caches cannot leak between runs."""
    code = f"""
import json, time
from natlink.synth import generate as synth
from natlink.spark.session import get_spark
from natlink.config.synth import load_synth_config
spark = get_spark("bench-synth", master={master!r}, conf={{"spark.driver.memory": {args.driver_memory!r},
    "spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods"}})
cfg = load_synth_config({str(ROOT / args.config)!r})
t = time.perf_counter()
r = synth.generate(spark, {str(out)!r}, persons={args.persons}, seed={args.seed}, config=cfg, truth_only={truth_only})
print("RESULT " + json.dumps({{"records": r.records, "seconds": time.perf_counter() - t, "steps": r.steps}}))
"""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, NATLINK_SPARK_LOG_LEVEL="ERROR")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"generation failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--config", default="conf/synth.yaml")
    parser.add_argument("--output", default="output/bench_synth")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--skip-check", action="store_true", help="skip the determinism re-run")
    args = parser.parse_args()
    out = Path(args.output).resolve()
    load_before = os.getloadavg()
    first = run(args, out / "a", args.master, truth_only=False)
    load_after = os.getloadavg()
    records = sum(first["records"].values())
    identical = "skipped"
    if not args.skip_check:
        second = run(args, out / "b", "local[1]", truth_only=True)
        tables = ("truth", "truth_persons", "truth_conditions")
        identical = all(digest(out / "a" / t) == digest(out / "b" / t) for t in tables)
        identical = "yes" if identical and second["records"] == first["records"] else "NO"
    print("| persons | records | seconds | records/s | truth byte-identical (local[1] rerun) | load 1-min before/after |")
    print("|---:|---:|---:|---:|---|---|")
    print(
        f"| {args.persons:,} | {records:,} | {first['seconds']:.0f} | {records / first['seconds']:,.0f} | {identical} "
        f"| {load_before[0]:.1f} / {load_after[0]:.1f} |"
    )
    print(f"records by dataset: {first['records']}; step seconds: {first['steps']}", file=sys.stderr)


if __name__ == "__main__":
    main()
