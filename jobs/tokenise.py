"""spark-submit entry: tokenise one dataset at a data provider.

    spark-submit jobs/tokenise.py --dataset conf/datasets/gp.yaml --key env:NATLINK_KEY \
        --data-dir /data/extract --out /data/outbox [--project NAME] [--signing-key file:/path] \
        [--model-config conf/model.yaml] [--run-id ID]

Writes ``OUT/<dataset>`` (Delta token table), ``OUT/quarantine`` and ``OUT/<dataset>.manifest.json``,
signed with the provider's signing key (``--signing-key``, else ``$NATLINK_SIGNING_KEY``). The
tokens are made for the model the centre will train (``--model-config``, default ``conf/model.yaml``:
block-salted tokens for its rules).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from natlink import commands
    from natlink.errors import NatlinkError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset config (YAML)")
    parser.add_argument("--key", required=True, help="key reference, e.g. env:NATLINK_KEY or file:/path")
    parser.add_argument("--out", required=True, help="output folder (token table, quarantine, manifest)")
    parser.add_argument("--data-dir", default=None, help="fills {data_dir} in the dataset's source path")
    parser.add_argument("--environment", default="conf/environments/local.yaml")
    parser.add_argument("--project", default=None, help="derive every subkey for this project")
    parser.add_argument("--signing-key", default=None, help="manifest signing key reference (default: $NATLINK_SIGNING_KEY)")
    parser.add_argument("--model-config", default="conf/model.yaml", help="the model the tokens are made for (YAML)")
    parser.add_argument("--run-id", default=None, help="run id (default: derived from the delivery; a rerun replaces its own quarantine rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        manifest = commands.tokenise(args.dataset, args.key, args.out, data_dir=args.data_dir, environment=args.environment, project=args.project,
                                     run_id=args.run_id, signing_key=args.signing_key, model_config=args.model_config)
    except NatlinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(manifest.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
