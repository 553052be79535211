"""Cost of the centre's checks on a token table, and of the provider's kept-column check.

    python benchmarks/bench_reader_checks.py [--rows 4000000] [--cores 2] [--reuse]

``--reuse`` keeps the table of an earlier run of the same size (it takes minutes to write).

A token table shaped like natlink's (``--rows`` records, bench_tokenise's default size: dataset,
record id, region, an event date and a code, the 18 ``tk_*`` token columns as 64 hex digits and the
2 Bloom filter columns of about 70 positions each), written once as Delta (partitioned by region)
and signed. Then, each timed on its own (the table read from disk every time, nothing cached):

* ``count``: a plain count (delta-spark answers it from the log), the floor;
* ``sample check (old)``: what the reader did before: token values checked on the first 10,000 rows;
* ``full scan (new)``: :func:`natlink.tokens.plaintext.scan_token_table`, every row, one job;
* ``content digest``: :func:`natlink.store.snapshot.content_digest`, every file's bytes hashed;
* ``read_token_tables``: all of the centre's checks together (signature, digest, count, scan);
* ``kept-column check``: the provider's :func:`natlink.tokens.plaintext.check_kept_columns` on a
  standardised frame of the same size (identifiers and the two kept columns), every row, one job.

Prints ONE table: seconds (wall), with the load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, bench_signing, load_avg, print_table, spark_session  # noqa: E402


def token_table(spark, rows: int):
    from pyspark.sql import functions as F

    from natlink.tokens import encode

    rid = F.col("id").cast("string")
    regions = F.array(*[F.lit(r) for r in ("LONDON", "NORTH_WEST", "NORTH_EAST", "MIDLANDS", "SOUTH_WEST", "EAST", "SOUTH_EAST", "WALES")])
    tokens = [F.sha2(F.concat(rid, F.lit(f"/{c}")), 256).alias(c) for c in encode.token_columns()]
    blooms = [
        F.array_sort(F.array_distinct(F.transform(F.sequence(F.lit(0), F.lit(69)), lambda i, c=c: (F.abs(F.xxhash64(rid, i, F.lit(c))) % 1024).cast("int")))).alias(c)
        for c in encode.bloom_columns()
    ]
    return spark.range(rows).select(
        F.lit("gp").alias("dataset"), rid.alias("record_id"), F.element_at(regions, (F.col("id") % 8 + 1).cast("int")).alias("region"),
        F.date_format(F.date_add(F.lit("2020-01-01"), (F.col("id") % 1000).cast("int")), "yyyy-MM-dd").alias("event_date"),
        F.concat(F.lit("E1"), (F.col("id") % 10).cast("string")).alias("code"),
        *tokens, *blooms,
    )


def standardised(spark, rows: int):
    from pyspark.sql import functions as F

    names = F.array(*[F.lit(n) for n in ("ANN", "BOB", "CAT", "DAN", "EVE", "FAY", "GUY", "HAL")])
    pick = lambda k: F.element_at(names, ((F.col("id") + k) % 8 + 1).cast("int"))  # noqa: E731
    return spark.range(rows).select(
        F.lit("gp").alias("dataset"), F.col("id").cast("string").alias("record_id"), F.lit("LONDON").alias("region"),
        F.lpad((F.col("id") + 4_000_000_000).cast("string"), 10, "0").alias("nhs_number"),
        pick(0).alias("given_name"), pick(3).alias("family_name"),
        F.date_add(F.lit("1950-01-01"), (F.col("id") % 20000).cast("int")).alias("date_of_birth"),
        F.date_format(F.date_add(F.lit("2020-01-01"), (F.col("id") % 1000).cast("int")), "yyyy-MM-dd").alias("event_date"),
        F.concat(F.lit("E1"), (F.col("id") % 10).cast("string")).alias("code"),
    )


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return round(time.perf_counter() - t, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="reuse (and keep) the table written by an earlier run")
    args = parser.parse_args()
    from pyspark.sql import functions as F

    from natlink.store import delta, snapshot
    from natlink.tokens.encode import SCHEMA_VERSION, bloom_columns, column_purposes
    from natlink.tokens.manifest import MANIFEST_KIND, TokenManifest
    from natlink.tokens.plaintext import TOKEN_PATTERN, check_kept_columns, scan_token_table
    from natlink.tokens.reader import read_token_tables

    load0 = load_avg()
    spark = spark_session(cores=args.cores, memory="4g")
    signer = bench_signing()
    work = DATA / f"_reader_checks_{args.rows}"
    if args.reuse and delta.exists(work / "gp", spark):
        written, write_s = delta.WriteResult(delta.BACKEND, delta.history(work / "gp", limit=1, spark=spark)[0]["version"], 0, delta.row_count(work / "gp", spark), True), "reused"
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t_write = time.perf_counter()
        written = delta.write(token_table(spark, args.rows), str(work / "gp"), mode="overwrite", partition_by=("region",))
        write_s = round(time.perf_counter() - t_write, 1)
    keep = ["dataset", "record_id", "region", "event_date", "code"]
    data = {
        "kind": MANIFEST_KIND, "manifest_version": 1, "schema_version": SCHEMA_VERSION, "dataset": "gp",
        "key_fingerprint": "f" * 32, "rows": written.rows, "table": "gp", "delta_version": written.version,
        "columns": {"keep": keep, "tokens": column_purposes(), "blooms": {c: {} for c in bloom_columns()}},
    }
    t_sign = time.perf_counter()
    manifest = TokenManifest(data).save(work / "gp.manifest.json", signer=signer, spark=spark)
    sign_s = round(time.perf_counter() - t_sign, 1)
    tokens = list(column_purposes())
    table = lambda: delta.read(spark, str(work / "gp"))  # noqa: E731

    def old_sample():
        bad = F.lit(0)
        for c in tokens:
            bad = bad + F.when(F.col(c).isNotNull() & ~F.col(c).rlike(TOKEN_PATTERN), 1).otherwise(0)
        table().limit(10_000).agg(F.sum(bad)).first()

    rows = [
        ["write the table (Delta)", write_s],
        ["sign (digest + Ed25519)", sign_s],
        ["count", timed(lambda: table().count())],
        ["sample check (old, 10,000 rows)", timed(old_sample)],
        ["full scan (new, every row)", timed(lambda: scan_token_table(table(), tokens=tokens, kept=keep, where="bench"))],
        ["content digest (every file's bytes)", timed(lambda: snapshot.content_digest(work / "gp", spark))],
        ["read_token_tables (all checks, lazy frame)", timed(lambda: read_token_tables(spark, [manifest]))],
        ["kept-column check (provider, every row)", timed(lambda: check_kept_columns(standardised(spark, args.rows), ["record_id", "event_date", "code"]))],
    ]
    size_mb = sum(f.stat().st_size for f in (work / "gp").rglob("*.parquet")) / 1e6
    print_table(["step", "seconds"], rows)
    print(f"rows={written.rows:,} parquet={size_mb:.0f} MB files={snapshot.content_digest(work / 'gp', spark).files} "
          f"cores={args.cores} load(1/5/15m) before {load0}, after {load_avg()}")
    spark.stop()
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
