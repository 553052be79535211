"""Issue 17: accuracy of federated tokens (inner tokens from the key service) against local ones,
on the generator's truth, in ONE table.

    python benchmarks/bench_keyservice_accuracy.py                     # 53,908 persons: ~100k records
    python benchmarks/bench_keyservice_accuracy.py --persons 539084    # ~1M records (long: say so)

For one synthetic population (``_common.prepare_raw``), in one process, side by side:
* tokenise gp + hes with the block-salted default model (``conf/model.yaml``) twice:
  centralised (local HMAC inner tokens under the benchmark key) and federated (inner tokens from
  ``natlink keyservice serve`` on 127.0.0.1, in its own process, fresh random master key; block
  keys and salted tokens under ``service_encoding_key`` of the same benchmark key), both with
  ``tokenise_configured`` as ``natlink tokenise`` runs it (onboarding included);
* train each with the same model and link it (``bench_salted.train_and_link``, threshold 0.9);
* pairwise and cluster-level precision / recall / F1 against the truth, and how many records end
  in the same cluster partition in both modes (identical equality structure of the tokens gives
  identical clusters: the tokens themselves differ).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import BENCH_KEY_HEX, ROOT, bench_signing, load_avg, prepare_raw, print_table, spark_session  # noqa: E402
from bench_keyservice import setup_keys, start_service, stop_service  # noqa: E402
from bench_salted import DATASETS, metrics, train_and_link  # noqa: E402


def tokenise_mode(spark, root: Path, out: Path, model, client_path: Path | None) -> tuple[list, float, int]:
    """gp + hes tokenised into ``out/tokens`` (local inner tokens, or the service's)."""
    from natlink import config as cfgmod
    from natlink.commands import salted_encoding
    from natlink.config import DatasetConfig
    from natlink.keyservice import manage
    from natlink.tokens.keys import KeyMaterial
    from natlink.tokens.tokenise import tokenise_configured

    key = KeyMaterial("bench:not-secret", bytes.fromhex(BENCH_KEY_HEX))
    encoding = salted_encoding(model)
    if client_path is not None:
        key, encoding = manage.federated_encoding(client_path, key, encoding, project=None)
    shutil.rmtree(out, ignore_errors=True)
    made = []
    t = time.perf_counter()
    with manage.named_failures():
        for name in DATASETS:
            ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
            made.append(tokenise_configured(spark, ds, key, data_dir=str(root), out_dir=out / "tokens",
                                            quarantine_table=out / "tables" / "quarantine", signer=bench_signing(), encoding=encoding))
    return made, time.perf_counter() - t, sum(int(m.rows) for m in made)


def same_partition(a, b) -> int:
    """Records whose cluster (as a set of records) is the same in both clusterings."""
    from natlink import columns as C

    def members(frame):
        key = frame[C.DATASET] + "/" + frame[C.RECORD_ID].astype(str)
        groups = key.groupby(frame[C.PERSON_ID]).agg(lambda s: frozenset(s))
        return dict(zip(key, frame[C.PERSON_ID].map(groups)))

    ma, mb = members(a), members(b)
    return sum(1 for k, v in ma.items() if mb.get(k) == v)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=53_908)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=2000, help="values per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per Spark task")
    args = parser.parse_args(argv)

    import yaml

    from natlink import columns as C
    from natlink.config import ModelConfig, load

    load_start = load_avg()
    bench_signing()
    spark = spark_session(memory="5g", conf={"spark.sql.shuffle.partitions": "8"})
    root = prepare_raw(spark, args.persons, args.seed)
    model = load(ROOT / "conf" / "model.yaml", ModelConfig)
    work = root / "bench_keyservice_accuracy"
    folder = Path(tempfile.mkdtemp(prefix="natlink-bench-ks-acc-"))
    os.chmod(folder, 0o700)
    proc = None
    results = {}
    try:
        config, client_cfg, _ = setup_keys(folder, args.batch, args.concurrency)
        client_path = folder / "keyservice_client.yaml"
        client_path.write_text(yaml.safe_dump(client_cfg.model_dump(mode="json")))
        proc = start_service(config)
        audit = folder / "audit.jsonl"
        truth_pd = spark.read.parquet(str(root / "truth")).select(C.DATASET, C.RECORD_ID, C.TRUE_PERSON_ID).toPandas()
        for mode, path in (("local", None), ("federated", client_path)):
            made, seconds, n = tokenise_mode(spark, root, work / mode, model, path)
            tokenise_load = load_avg()
            lines = [json.loads(x) for x in audit.read_text().splitlines()] if audit.exists() else []
            evaluations = sum(x["count"] for x in lines if x["outcome"] == "ok")
            clusters, info = train_and_link(spark, made, model, work / mode / "model.json")
            results[mode] = {"n": n, "s": seconds, "load": tokenise_load, "evals": evaluations, "info": info,
                             "m": metrics(spark, clusters, truth_pd), "clusters": clusters, "fp": made[0].key_fingerprint}
            if mode == "local":
                audit_before = evaluations
        results["federated"]["evals"] -= audit_before
    finally:
        if proc is not None:
            stop_service(proc)
        shutil.rmtree(folder, ignore_errors=True)
    loc, fed = results["local"], results["federated"]
    same = same_partition(loc["clusters"], fed["clusters"])
    rows = [
        ["records (gp + hes)", f"{loc['n']:,}", f"{fed['n']:,}"],
        ["key fingerprint (manifest)", loc["fp"][:19], fed["fp"][:19]],
        ["tokenise s (onboarding included)", f"{loc['s']:.1f}", f"{fed['s']:.1f}"],
        ["tokenise records/s (load at end)", f"{loc['n'] / loc['s']:,.0f} ({loc['load']})", f"{fed['n'] / fed['s']:,.0f} ({fed['load']})"],
        ["OPRF evaluations (audit log)", "0", f"{fed['evals']:,} ({fed['evals'] / fed['n']:.2f} per record)"],
        ["train s", f"{loc['info']['train s']:.1f}", f"{fed['info']['train s']:.1f}"],
        ["link s (" + loc["info"]["engine"] + ")", f"{loc['info']['link s']:.1f}", f"{fed['info']['link s']:.1f}"],
        ["pairs compared", f"{loc['info']['comparisons']:,}", f"{fed['info']['comparisons']:,}"],
        ["edges >= 0.9", f"{loc['info']['edges']:,}", f"{fed['info']['edges']:,}"],
    ]
    for k in ("precision", "recall", "F1", "cluster precision", "cluster recall"):
        rows.append([f"pairwise {k}" if "cluster" not in k else k, f"{loc['m'][k]:.4f}", f"{fed['m'][k]:.4f}"])
    rows.append(["F1 federated - local", "", f"{fed['m']['F1'] - loc['m']['F1']:+.6f}"])
    rows.append(["records in the same cluster in both modes", "", f"{same:,} of {len(loc['clusters']):,}"])
    print(f"\nbench_keyservice_accuracy: {args.persons:,} persons, seed {args.seed}; batch {args.batch}, "
          f"{args.concurrency} requests in flight per task; load average at start {load_start}, at end {load_avg()}")
    print_table(["measure", "local (centralised HMAC)", "federated (key service, 127.0.0.1)"], rows)


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
