"""What authenticated, encrypted RPC costs in local mode (spark/session.py turns it on with I/O encryption).

Spark encrypts shuffle and spill files (``spark.io.encryption.enabled``) in every natlink session;
their keys travel by RPC, and without ``spark.authenticate`` + ``spark.network.crypto.enabled``
Spark warns at every start that the keys "will be visible on the wire". In local mode the driver
and the executor share one JVM, so RPC crosses no network. This runs the same Spark work (tokens
hashed with sha2, a shuffle aggregate, a join, a Python round trip through Arrow) in fresh local
sessions, alternating RPC encryption on and off, and prints ONE table: median, min and max
seconds per setting, and the load average.

    python benchmarks/bench_local_rpc_encryption.py [--rows 2000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_avg, print_table  # noqa: E402

SETTINGS = {
    "on (natlink's local default)": {},
    "off": {"spark.authenticate": "false", "spark.network.crypto.enabled": "false"},
}


def run_once(setting: str, rows: int) -> float:
    from pyspark.sql import functions as F

    from natlink.spark.session import get_spark

    spark = get_spark("bench-rpc", master="local[2]", conf={"spark.sql.shuffle.partitions": "8", **SETTINGS[setting]})
    assert spark.conf.get("spark.io.encryption.enabled") == "true"
    t = time.perf_counter()
    df = spark.range(rows).select((F.col("id") % 100_003).alias("k"), F.sha2(F.col("id").cast("string"), 256).alias("v"))
    counts = df.groupBy("k").agg(F.count("v").alias("n"))
    counts.join(df.limit(rows // 10), "k", "inner").agg(F.sum("n")).first()
    spark.range(rows // 10).toArrow()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_once(args.one, args.rows)), flush=True)
        return
    seconds: dict[str, list[float]] = {s: [] for s in SETTINGS}
    loads = []
    for _ in range(args.repeats):
        for setting in SETTINGS:  # alternated, so load drifts hit both alike
            proc = subprocess.run([sys.executable, __file__, "--one", setting, "--rows", str(args.rows)],
                                  capture_output=True, text=True, check=True)
            seconds[setting].append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
            loads.append(load_avg())
    rows = [[s, args.rows, args.repeats, f"{statistics.median(v):.1f}", f"{min(v):.1f}", f"{max(v):.1f}"] for s, v in seconds.items()]
    print_table(["rpc encryption", "rows", "repeats", "median_s", "min_s", "max_s"], rows)
    print(f"load average during the runs: {loads[0]} ... {loads[-1]}")


if __name__ == "__main__":
    main()
