"""spark-submit entry point: generate a synthetic population with ground truth.

    spark-submit jobs/synth.py --config conf/synth.yaml --output /data/synth --persons 10000000 --seed 42

Thin by design: parse arguments, load the config by explicit path, call natlink.commands.synth.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="synth config YAML (e.g. conf/synth.yaml)")
    parser.add_argument("--output", required=True, help="output folder: raw/<dataset>, truth, truth_persons, truth_conditions")
    parser.add_argument("--persons", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--datasets", default=None, help="comma-separated subset of the configured datasets")
    args = parser.parse_args(argv)

    from natlink import commands
    from natlink.errors import NatlinkError

    try:
        datasets = args.datasets.split(",") if args.datasets else None
        result = commands.synth(args.persons, args.seed, args.output, config=args.config, datasets=datasets, environment=None)
    except NatlinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"persons": result.persons, "records": result.records, "seconds": round(result.seconds, 1),
                      "records_per_second": round(result.total_records / max(result.seconds, 1e-9)),
                      "truth": result.truth}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
