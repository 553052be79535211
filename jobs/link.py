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

    from natlink import config
    from natlink.linkage import run as linkrun
    from natlink.spark.session import get_spark

    link_cfg = config.load(args.link_config, config.LinkConfig)
    env = config.load(args.environment, config.EnvironmentConfig) if args.environment else config.EnvironmentConfig(name="default")
    spark = get_spark("natlink-link", master=env.master, conf=env.spark_conf, checkpoint_dir=env.checkpoint_dir)
    summary = linkrun.run(spark, manifests=args.manifest, model_path=args.model, link_cfg=link_cfg, tables=args.tables, run_id=args.run_id, mode=args.mode)
    print(json.dumps({"run_id": summary.run_id, "status": summary.status, "mode": summary.mode, "counts": summary.counts, "timings": summary.timings}, default=int))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
