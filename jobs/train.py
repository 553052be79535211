"""spark-submit entry point: train a Splink model on token tables and save it with its sidecar.

    spark-submit jobs/train.py --manifest gp.manifest.json --manifest hes.manifest.json \
        --model-config conf/model.yaml --out linkage_models/national.json
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", required=True, help="token table manifest (repeat)")
    parser.add_argument("--model-config", required=True, help="model settings YAML")
    parser.add_argument("--out", required=True, help="model JSON to write")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--environment", default=None, help="environment YAML (e.g. conf/environments/cluster.yaml): confs, checkpoint dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from natlink import commands

    path = commands.train(args.manifest, args.model_config, args.out, overwrite=args.overwrite, environment=args.environment)
    print(f"model={path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
