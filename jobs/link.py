"""spark-submit entry point: link token tables into Delta outputs (clusters, edges, person_index, id_events, runs).

    spark-submit jobs/link.py --manifest gp.manifest.json --manifest hes.manifest.json \
        --model linkage_models/national.json --link-config conf/link.yaml --tables /data/natlink/tables --run-id 2026-11
"""

from __future__ import annotations

import argparse
import json
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", required=True, help="token table manifest (repeat)")
    parser.add_argument("--model", required=True, help="trained model JSON (sidecar beside it)")
    parser.add_argument("--link-config", required=True, help="link settings YAML")
    parser.add_argument("--tables", required=True, help="output tables folder")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--mode", choices=["auto", "full", "incremental"], default=None)
    parser.add_argument("--environment", default=None, help="environment YAML (e.g. conf/environments/cluster.yaml): confs, checkpoint dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from natlink import commands

    summary = commands.link(args.manifest, args.model, args.tables, args.run_id, link_config=args.link_config, mode=args.mode, environment=args.environment)
    print(json.dumps({"run_id": summary.run_id, "status": summary.status, "mode": summary.mode, "counts": summary.counts, "timings": summary.timings}, default=int))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
