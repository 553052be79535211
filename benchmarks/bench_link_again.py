"""Link a bench_national size again, alone: `natlink link` on the token tables and model that
bench_national.py left (Spark engine, its link.yaml), into a fresh tables folder. For timing a
change to the link step without tokenising and training again; pair two checkouts with farm-bench:

    python benchmarks/bench_national.py --persons 1000000          # once: tokens + model
    farm-bench -n 2 --warmup 0 --timeout 3000 \
        --vs "env PYTHONPATH=/old/src python benchmarks/bench_link_again.py --persons 1000000" \
        -- python benchmarks/bench_link_again.py --persons 1000000

Prints one table: the link's step timings (s), comparisons per rule and edges, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, bench_signing, load_avg, print_table, spark_session  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()

    from natlink.commands import link

    bench_signing()
    work = DATA / "national" / f"p{args.persons}_s{args.seed}"
    out = work / "out"
    tables = work / "link_again"
    shutil.rmtree(tables, ignore_errors=True)
    load_start, t = load_avg(), time.perf_counter()
    spark_session(memory=args.driver_memory, conf={"spark.sql.shuffle.partitions": "16"})
    manifests = [out / "tokens" / f"{d}.manifest.json" for d in ("gp", "hes")]
    summary = link(manifests, out / "model.json", tables, "again", link_config=work / "link.yaml")
    wall = time.perf_counter() - t
    shutil.rmtree(tables, ignore_errors=True)
    counts = summary.counts
    print(f"bench_link_again: {args.persons:,} persons, {counts['records']:,} records; load average at start {load_start}, at end {load_avg()}")
    print_table(["step", "s"], [[k, f"{v:.1f}"] for k, v in summary.timings.items()] + [["process wall", f"{wall:.1f}"]])
    print(json.dumps({"comparisons_per_rule": counts["comparisons_per_rule"], "edges": counts["edges"]}))


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
