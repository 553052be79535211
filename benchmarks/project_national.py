"""Paper projection of a national link (default 60M people) on a Spark cluster, from measured rates.

Inputs, all measured here on 2 cores:
* per blocking rule, the comparisons it generates (sum over key groups of n choose 2) on the
  benchmark populations of 100k and 1M records (benchmarks/_common.prepare_tokens, the same data as
  bench_link.py); each rule's growth exponent between the two sizes extrapolates it;
* the Spark engine's wall time at both sizes (``--spark-seconds``, from bench_link.py's
  ``natlink-spark`` rows: train + predict + cluster), split through the two points into a fixed
  wall time (Spark's per-job cost, which more cores do not shorten) and a cost per comparison in
  core-seconds (2 cores). At these sizes the per-record cost is not separable from the two.

It prints ONE table: for each size, records, projected comparisons per rule and per record,
whether each rule stays within the configured budget (conf/link.yaml max_comparisons_per_rule),
and projected hours on the given core counts assuming linear scaling (a paper figure: shuffles,
skew and stragglers on a real cluster add to it).

    python benchmarks/project_national.py --spark-seconds 22.1 71.7
    python benchmarks/project_national.py --spark-seconds 22.1 71.7 --persons 60000000 --cores 64 256 1024
    python benchmarks/project_national.py --national      # from benchmarks/bench_national.py's measured points

With ``--national``, the inputs are bench_national.py's natlink rows (benchmarks/data/national/
results.jsonl): records, comparisons per rule and the train + link seconds of the production path on
the Spark engine at each measured size; the two largest sizes give the growth exponents and the cost
model, and every measured size is a row of the table; the providers' onboarding + tokenise is
projected from its core-seconds per record at the largest size.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, prepare_tokens, print_table, spark_session  # noqa: E402
from bench_link import _persons_for, _token_frame  # noqa: E402

RECORDS_PER_PERSON = 1.855  # gp + hes, conf/synth.yaml (as bench_link.py)
SIZES = (100_000, 1_000_000)


def _counts(spark, records: int) -> tuple[int, list[int], list[str]]:
    from natlink import config as cfgmod
    from natlink.linkage import blocking
    from natlink.linkage import inprocess
    from natlink.linkage import engine as link
    from natlink.linkage import settings as model_settings
    from natlink.config import ModelConfig

    rules = blocking.rules_from_settings(model_settings.splink_settings(cfgmod.load(ROOT / "conf" / "model.yaml", ModelConfig)))
    tokens = _token_frame(spark, prepare_tokens(spark, _persons_for(records)))
    keys = sorted({k for r in rules for k in r.keys})
    slim = tokens.select("unique_id", *link.compact_columns(tokens, keys)).toArrow()
    with inprocess.Engine() as engine:
        engine.load(slim)
        counts = engine.count_comparisons(rules)
    return slim.num_rows, counts, [r.sql for r in rules]


def _splits_of(rows: list[dict] | None) -> list[tuple]:
    """A run's (or conf/link.yaml's) block splits, comparable: (rule, above, by) sorted."""
    return sorted((r["rule"], r["above"], tuple(r["by"])) for r in rows or [])


def _national_points(path: Path, model: str, splits: list[tuple]) -> list[tuple[int, list[int], float, float]]:
    """(records, comparisons per rule, train + link seconds, tokenise seconds) per size measured by
    bench_national.py (the latest natlink row of each size run with ``splits``, conf/link.yaml's)."""
    import json

    points: dict[int, tuple[int, list[int], float, float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if (row.get("engine", "").startswith("natlink") and "comparisons_per_rule" in row and row.get("model", "conf/model.yaml") == model
                and _splits_of(row.get("block_splits")) == splits):
            seconds = row["steps"]["train"]["s"] + row["steps"]["link"]["s"]
            tokenise = sum(step["s"] for name, step in row["steps"].items() if name.startswith("tokenise"))
            points[row["records"]] = (row["records"], row["comparisons_per_rule"], seconds, tokenise)
    return [points[n] for n in sorted(points)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--national", nargs="?", const=str(ROOT / "benchmarks" / "data" / "national" / "results.jsonl"), default=None,
                        metavar="RESULTS", help="take the measured points from bench_national.py's results (default file)")
    parser.add_argument("--spark-seconds", type=float, nargs=2, metavar=("S_100K", "S_1M"),
                        help="natlink-spark total_s at 100k and 1M records (benchmarks/bench_link.py)")
    parser.add_argument("--model", default="conf/model.yaml", help="with --national: the model whose measured points to use")
    parser.add_argument("--measured-cores", type=int, default=2)
    parser.add_argument("--persons", type=int, nargs="+", default=[10_000_000, 60_000_000])
    parser.add_argument("--cores", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()

    from natlink import config as cfgmod
    from natlink.config import LinkConfig

    budget = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig).max_comparisons_per_rule
    measured: list[tuple[int, list[int]]] = []
    if args.national:
        from natlink.config import ModelConfig

        link_cfg = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig)
        splits = _splits_of([{"rule": "[" + ", ".join(b.rule) + "]", "above": b.above, "by": b.by} for b in link_cfg.split_large_blocks])
        points = _national_points(Path(args.national), args.model, splits)
        if len(points) < 2:
            parser.error(f"{args.national}: needs natlink rows at two sizes or more run with conf/link.yaml's split_large_blocks, has {len(points)}")
        model = cfgmod.load(ROOT / args.model, ModelConfig)
        names = [r if isinstance(r, str) else " AND ".join(f"l.{k} = r.{k}" for k in r) for r in model.blocking_rules_for_prediction]
        measured = [(n, c) for n, c, _, _ in points]
        (n1, c1, s1, _), (n2, c2, s2, t2) = points[-2], points[-1]
        args.spark_seconds = [s1, s2]
        tokenise_core_s = t2 * args.measured_cores / n2  # per record, at the largest measured size
    else:
        if args.spark_seconds is None:
            parser.error("give --spark-seconds S_100K S_1M, or --national")
        spark = spark_session()
        (n1, c1, names), (n2, c2, _) = (_counts(spark, s) for s in SIZES)
        measured = [(n1, c1), (n2, c2)]
    exponents = [math.log(b / a) / math.log(n2 / n1) if a and b else 1.0 for a, b in zip(c1, c2)]
    # wall = fixed + per_comparison * comparisons / cores, through both measured points.
    (s1, s2), k1, k2 = args.spark_seconds, sum(c1), sum(c2)
    per_comparison = (s2 - s1) * args.measured_cores / (k2 - k1)  # core-seconds
    fixed = s1 - per_comparison * k1 / args.measured_cores  # wall seconds

    headers = ["persons", "records", "comparisons_per_record", "rules_over_budget", "core_hours", *[f"hours_on_{c}_cores" for c in args.cores]]
    rows = []
    for label, n, counts in [("measured", n, c) for n, c in measured] + [
        ("projected", round(p * RECORDS_PER_PERSON), None) for p in args.persons
    ]:
        if counts is None:
            counts = [round(c * (n / n2) ** e) for c, e in zip(c2, exponents)]
        total = sum(counts)
        core_s = per_comparison * total
        over = [i for i, c in enumerate(counts) if c > budget]
        rows.append([
            f"{round(n / RECORDS_PER_PERSON):,} ({label})", f"{n:,}", round(total / n, 1),
            ",".join(str(i) for i in over) or "none", round(core_s / 3600, 2), *[round((fixed + core_s / c) / 3600, 3) for c in args.cores],
        ])
    print_table(headers, rows)
    print(f"cost model from the two measured points: {fixed:.1f} s fixed + {per_comparison * 1e6:.2f} core-us per comparison")
    for i, (name, e, a, b) in enumerate(zip(names, exponents, c1, c2)):
        print(f"rule {i} ({name}): {a:,} pairs at {n1:,} records, {b:,} at {n2:,}; growth exponent {e:.2f}")
    print(f"budget per rule (conf/link.yaml): {budget:,.0f} comparisons")
    if args.national:
        for p in args.persons:
            n = round(p * RECORDS_PER_PERSON)
            print(f"providers' onboarding + tokenise of {n:,} records at the rate measured at {n2:,} records "
                  f"({1e3 * tokenise_core_s:.2f} core-ms per record): {n * tokenise_core_s / 3600:,.0f} core-hours in all, "
                  "spread over the providers (federated)")


if __name__ == "__main__":
    main()
