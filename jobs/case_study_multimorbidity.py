"""spark-submit entry point: multimorbidity prevalence by age band and region, linked vs unlinked
(and, on synthetic data, vs perfect linkage and the generator's truth).

    spark-submit jobs/case_study_multimorbidity.py --tables output/multimorbidity/tables \
        --manifest output/multimorbidity/tokens/gp.manifest.json --manifest .../hes.manifest.json \
        --manifest .../prescriptions.manifest.json --manifest .../registry.manifest.json \
        --truth output/multimorbidity --out output/multimorbidity/case_study

Writes OUT/prevalence (Delta) and OUT/summary.json; prints one line per method with the
overall prevalence.
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", required=True, help="the link run's tables folder (holds clusters)")
    parser.add_argument("--manifest", action="append", required=True, help="token table manifest (repeat)")
    parser.add_argument("--truth", default=None, help="synthetic generator output folder (truth, truth_persons, truth_conditions)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", default=None, help="case study YAML (default: built-in, as conf/case_study.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from natlink import commands

    result = commands.case_study(args.tables, args.manifest, args.out, truth=args.truth, config=args.config, chart=False)
    for line in result.summary_lines():
        print(line)
    print(f"table={result.table_path} summary={result.summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
