"""spark-submit entry point: a self-contained, offline HTML report of one link run (counts only).

    spark-submit jobs/report.py --tables /data/natlink/tables --run-id 2026-11 --out /reports/2026-11.html \
        [--model linkage_models/national.json] [--truth truth_table]
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", required=True, help="folder of the link run's Delta tables")
    parser.add_argument("--run-id", required=True, help="run to report on ('latest': the last completed run)")
    parser.add_argument("--out", default=None, help="HTML file (default: <tables>/../reports/RUN_ID.html)")
    parser.add_argument("--model", default=None, help="model JSON (default: the one the run recorded)")
    parser.add_argument("--truth", default=None, help="truth table (Delta or Parquet: dataset, record_id, true_person_id)")
    parser.add_argument("--threshold", type=float, action="append", default=None, help="threshold to judge at (repeat)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from natlink import commands

    path = commands.report(args.run_id, args.tables, out=args.out, model_path=args.model, truth=args.truth, thresholds=args.threshold)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
