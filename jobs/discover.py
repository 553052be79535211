"""spark-submit entry point: which datasets hold a person (from tokens only).

    spark-submit jobs/discover.py --tables /data/natlink/tables --manifest gp.manifest.json ... \
        --token-column tk_nhs_number --token <token>
    spark-submit jobs/discover.py ... --probe person_tokens.json --model linkage_models/national.json --link-config conf/link.yaml
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--manifest", action="append", required=True)
    parser.add_argument("--token-column")
    parser.add_argument("--token")
    parser.add_argument("--probe", help="JSON object of one person's tk_* tokens")
    parser.add_argument("--model")
    parser.add_argument("--link-config")
    args = parser.parse_args(argv)

    from natlink import commands

    if not ((args.token_column and args.token) or (args.probe and args.model and args.link_config)):
        parser.error("give --token-column and --token, or --probe, --model and --link-config")
    found = commands.discover(
        args.tables, args.manifest, token_column=args.token_column, token=args.token, probe=args.probe,
        model_path=args.model, link_config=args.link_config or "conf/link.yaml",
    )
    print(json.dumps([{"person_id": d.person_id, "match_probability": d.match_probability, "datasets": d.datasets} for d in found]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
