"""Issue 18: how large blocks of a prediction rule are best split (link.split_large_blocks), on the
salted tokens of a bench_national run, against the truth. Prints one table.

    python benchmarks/bench_national.py --persons 3000000          # makes the tokens (once)
    python benchmarks/bench_block_splits.py --persons 1000000 3000000 \
        --rules tk_dob,tk_given_name:tk_postcode_district tk_family_name,tk_dob:tk_given_initial --above 4 6 8

Per size and limit (``none``: unsplit, as without split_large_blocks; else every rule of --rules
split above it): comparisons per record per prediction rule and of all rules (pairs of each rule's
key groups / records, as the engine's budget counts them), the blocks split, the pairs not
compared, and blocking recall against the truth: the share of true pairs (two records of one
person) that some prediction rule still makes. Everything runs
on the same token tables, as natlink's engine reads them (``natlink.linkage.block_splits``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import reduce
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, load_avg, print_table, spark_session  # noqa: E402

DATASETS = ("gp", "hes")


def measure(spark, persons: int, seed: int, split_rules: list[tuple[list[str], list[str]]], limits: list[int | None]) -> list[dict]:
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink.config.link import BlockSplit
    from natlink.linkage import block_splits, blocking
    from natlink.outputs import blocking_report
    from natlink.spark.scratch import Scratch
    from natlink.store import delta
    from natlink.tokens.salted import SaltedScheme

    out = DATA / "national" / f"p{persons}_s{seed}" / "out"
    manifests = [json.loads((out / "tokens" / f"{d}.manifest.json").read_text()) for d in DATASETS]
    settings = json.loads((out / "model.json").read_text())
    rules = blocking.rules_from_settings(settings, SaltedScheme.from_manifest(manifests[0]))
    indices = [next(i for i, r in enumerate(rules) if list(r.model_keys) == rule) for rule, _by in split_rules]
    by_cols = [rules[i].column(b) for i, (_rule, by) in zip(indices, split_rules) for b in by]
    keys = list(dict.fromkeys([k for r in rules for k in r.keys] + by_cols))
    scratch = Scratch(spark)
    tables = [delta.read(spark, str(out / "tokens" / m["table"])).select(C.DATASET, C.RECORD_ID, *keys) for m in manifests]
    tokens = reduce(lambda a, b: a.unionByName(b), tables)
    truth = spark.read.parquet(str(DATA / f"p{persons}_s{seed}" / "truth"))
    records = scratch.materialise(
        # Tokens compare by equality only: 64-bit hashes, as the engine compacts them (nulls kept).
        tokens.select(C.DATASET, C.RECORD_ID, *[F.when(F.col(k).isNotNull(), F.xxhash64(k)).alias(k) for k in keys])
        .join(truth, [C.DATASET, C.RECORD_ID], "inner")
        .withColumn(C.NODE_ID, F.monotonically_increasing_id()),
        "records",
    )
    n = records.count()

    # Per limit: every split rule's key under that limit (column k_<limit>_<rule>; `none`: unsplit).
    tag = {}
    keyed = records
    # Block sizes as with_keys gives them at the smallest limit: every block over it (NULL within), so
    # exact for the blocks over any limit.
    smallest = min((limit for limit in limits if limit is not None), default=None)
    for limit in limits:
        if limit is None:
            for i in indices:
                tag[(limit, i)] = rules[i].keys[0]
            continue
        plan = block_splits.plan(rules, [BlockSplit(rule=r, above=limit, by=by) for r, by in split_rules])
        keyed = block_splits.with_keys(keyed, plan, scratch)
        for sp in plan:
            tag[(limit, sp.index)] = f"k_{limit}_{sp.index}"
            keyed = keyed.withColumnRenamed(sp.key_column, tag[(limit, sp.index)])
            size = f"size_{sp.index}"
            keyed = keyed.withColumnRenamed(sp.size_column, size) if limit == smallest else keyed.drop(sp.size_column)
    keyed = scratch.materialise(keyed, "keyed")

    # True pairs, each once, with both sides' keys; per limit, those the union of the rules makes.
    pairs = blocking_report.true_pairs(keyed, list(dict.fromkeys([*keys, *tag.values()])), scratch)

    def rules_at(limit):
        return [blocking.Rule((tag[(limit, i)],)) if i in indices else r for i, r in enumerate(rules)]

    recall = {limit: blocking_report.pair_recall(pairs, rules_at(limit), None) for limit in limits}

    rows = []
    for limit in limits:
        counts = blocking.count_comparisons(keyed, rules_at(limit))
        row = {"persons": persons, "records": n, "above": limit, "per_rule": [c / n for c in counts], "all_per_record": sum(counts) / n,
               "union_recall": recall[limit]["union"] / recall[limit]["true_pairs"], "true_pairs": recall[limit]["true_pairs"], "not_compared": 0, "blocks_split": 0}
        if limit is not None:
            for i in indices:
                large = keyed.where(F.col(f"size_{i}") > limit)
                agg = large.agg(F.sum(1.0 / F.col(f"size_{i}")).alias("blocks"), F.sum((F.col(f"size_{i}") - 1) / 2.0).alias("before")).first()
                after = blocking.count_comparisons(large, [blocking.Rule((tag[(limit, i)],))])[0]
                row["blocks_split"] += round(agg["blocks"] or 0)
                row["not_compared"] += round(agg["before"] or 0) - after
        rows.append(row)
    scratch.release()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rules", nargs="+", default=["tk_dob,tk_given_name:tk_postcode_district", "tk_family_name,tk_dob:tk_given_initial"],
                        help="the prediction rules split, each as its columns:the columns it is split by (comma-separated), all at each limit")
    parser.add_argument("--above", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()
    spark = spark_session(memory=args.driver_memory)
    load_start, t = load_avg(), time.perf_counter()
    rows = []
    for persons in args.persons:
        rows += measure(spark, persons, args.seed, [(r.split(":")[0].split(","), r.split(":")[1].split(",")) for r in args.rules], [None, *args.above])
    print(f"\nbench_block_splits: rules split (rule:by) {args.rules}; load average at start {load_start}, at end {load_avg()}; "
          f"{time.perf_counter() - t:.0f} s")
    headers = ["persons", "records", "split above", "comparisons/record per rule", "all rules/record", "blocks split",
               "pairs not compared/record", "union recall", "true pairs"]
    print_table(headers, [[
        f"{r['persons']:,}", f"{r['records']:,}", r["above"] or "none", " / ".join(f"{c:.3f}" for c in r["per_rule"]),
        f"{r['all_per_record']:.3f}", f"{r['blocks_split']:,}", f"{r['not_compared'] / r['records']:.3f}", f"{r['union_recall']:.5f}",
        f"{r['true_pairs']:,}",
    ] for r in rows])

if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
