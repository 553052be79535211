"""Issue 17: what the key service costs, in ONE table.

    python benchmarks/bench_keyservice.py                                  # 100,000 records
    python benchmarks/bench_keyservice.py --records 1000000 --elements 200000
    python benchmarks/bench_keyservice.py --raw benchmarks/data/p53908_s42 --records 200000 \
        --compare /path/to/other/src --rounds 2     # end to end only: this tree vs another, alternately

Figures (each with the load average when it was taken; the machine is shared):
1. service: OPRF evaluations per second on one core (``PurposeKey.evaluate``, batches of
   ``--batch`` blinded elements, batch DLEQ proof included), in process;
2. provider: blind + verify-and-unblind per second on one core (``oprf.blind`` + ``finalize``);
3. over HTTP on 127.0.0.1: one client thread against ``natlink keyservice serve`` in its own process;
4. end to end on 2 cores (Spark ``local[2]``): the block-salted encoding of gp + hes standardised
   records (onboarded once from the synthetic raw files, cached as Parquet), local HMAC inner
   tokens vs inner tokens from the key service (which runs on the same 2 cores), written to
   Spark's ``noop`` sink; distinct (purpose, value) pairs evaluated, from the service's audit log;
5. a projection for a 60M-person national run (111M records, ``benchmarks/project_national.py``).

``--compare SRC`` runs only figure 4, in child processes taking turns (A B A B ...): this tree's
``src`` and another natlink source tree (e.g. ``git archive`` of an earlier commit), the same
input, with the CPU seconds of the whole process tree (driver, Spark JVM, Python workers, the
service) beside the wall time: CPU time moves far less with the machine's load.

Keys: fresh random ones in a temporary folder (no labelled test keys), deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import BENCH_KEY_HEX, DATA, ROOT, load_avg, print_table, spark_session, tree_cpu_seconds  # noqa: E402

NATIONAL_RECORDS = 111_000_000  # 60M persons across the datasets (benchmarks/project_national.py)
PURPOSE = "salted:inner/field:family_name"
SRC = ROOT / "src"  # the natlink source tree measured (--src)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_keys(folder: Path, batch: int, concurrency: int):
    import yaml

    from natlink.config.keyservice import KeyServiceClientConfig
    from natlink.keyservice import manage

    from natlink.tokens import keys

    master = keys.create_key_file(folder / "master-v1.key")
    credential = manage.new_credential(folder / "bench.credential")
    port = free_port()
    service = {
        "host": "127.0.0.1", "port": port, "audit_log": str(folder / "audit.jsonl"), "keys": [{"version": 1, "key": master}],
        "rate_limit": {"evaluations": 10**12, "window_seconds": 86400}, "max_batch": 65535,
        "providers": {"bench": {"credential_sha256": credential.sha256}},
    }
    config = folder / "keyservice.yaml"
    config.write_text(yaml.safe_dump(service))
    client = KeyServiceClientConfig(
        url=f"http://127.0.0.1:{port}", provider="bench", credential=credential.reference, service="bench", key_version=1,
        public_keys=manage.public_keys(config), batch_size=batch, retries=3, concurrency=concurrency,
    )
    return config, client, master


def start_service(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "natlink.cli", "keyservice", "serve", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "listening" not in line:
        raise RuntimeError("the key service did not start")
    return proc


def stop_service(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def primitives(master_ref: str, n: int, batch: int) -> list[list]:
    from natlink.keyservice import oprf
    from natlink.tokens import keys

    key = oprf.PurposeKey(keys.resolve(master_ref), PURPOSE)
    values = [f"NAME{i:08d}" for i in range(n)]
    t = time.process_time()
    batches = [oprf.blind(values[i:i + batch]) for i in range(0, n, batch)]
    blind_s = time.process_time() - t
    t = time.process_time()
    answers = [key.evaluate(b.blinded) for b in batches]
    eval_s = time.process_time() - t
    t = time.process_time()
    for b, (evaluated, proof) in zip(batches, answers):
        b.finalize(evaluated, proof, key.public_key)
    fin_s = time.process_time() - t
    load = load_avg()
    return [
        ["service: evaluate + batch proof, 1 core", f"{n / eval_s:,.0f} evaluations/s", f"{n:,} values, batches of {batch}, CPU time", load],
        ["provider: blind, 1 core", f"{n / blind_s:,.0f} values/s", "hash to group + fresh scalar", load],
        ["provider: verify proof + unblind, 1 core", f"{n / fin_s:,.0f} values/s", "", load],
        ["provider: blind + finalize, 1 core", f"{n / (blind_s + fin_s):,.0f} values/s", "", load],
    ]


def over_http(client_cfg, n: int) -> list:
    from natlink.keyservice.client import KeyServiceClient

    client = KeyServiceClient(client_cfg)
    values = [f"HTTP{i:08d}" for i in range(n)]
    t = time.perf_counter()
    client.inner_tokens(PURPOSE, values)
    s = time.perf_counter() - t
    return ["over HTTP, 1 client thread (service in its own process)", f"{n / s:,.0f} evaluations/s", f"{n:,} values, {client.requests} requests, wall", load_avg()]


def standardised(spark, raw: Path, records: int):
    """gp + hes standardised frame (cached as Parquet under benchmarks/data), first ``records`` rows."""
    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.config import DatasetConfig
    from natlink.provider.onboard import onboard

    cache = DATA / f"ks_std_{raw.name}"
    if not (cache / "_SUCCESS").exists():
        frames = []
        for name in ("gp", "hes"):
            ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
            clean = onboard(spark, ds, data_dir=str(raw), run_id="bench-keyservice").clean
            frames.append(clean.select(C.DATASET, C.RECORD_ID, C.REGION, *[c for c in C.IDENTIFIERS if c in clean.columns]))
        frames[0].unionByName(frames[1]).write.mode("overwrite").parquet(str(cache))
    return spark.read.parquet(str(cache)).limit(records).persist()


def end_to_end(spark, frame, client_cfg, audit: Path) -> dict:
    """Local vs key service tokenise of ``frame`` (noop sink): seconds, CPU seconds, load, evaluations."""
    from natlink import columns as C
    from natlink.config import ModelConfig, load
    from natlink.keyservice.spark import ServiceInnerTokens, service_encoding_key
    from natlink.tokens.keys import KeyMaterial
    from natlink.tokens.salted import SaltedScheme, encode

    model = ROOT / "conf" / "model.yaml"  # the block-salted default
    scheme = SaltedScheme.from_model(load(model, ModelConfig))
    key = KeyMaterial("bench:not-secret", bytes.fromhex(BENCH_KEY_HEX))
    keep = [C.DATASET, C.RECORD_ID, C.REGION]
    out = {"records": frame.count()}
    t, cpu = time.perf_counter(), tree_cpu_seconds()
    encode(frame, key, scheme, keep=keep).write.format("noop").mode("overwrite").save()
    out.update(local_s=time.perf_counter() - t, local_cpu=tree_cpu_seconds() - cpu, local_load=load_avg())
    before = sum(1 for _ in audit.open()) if audit.exists() else 0
    t, cpu = time.perf_counter(), tree_cpu_seconds()
    encode(frame, service_encoding_key(key, client_cfg), scheme, keep=keep,
           inner_source=ServiceInnerTokens(client_cfg)).write.format("noop").mode("overwrite").save()
    out.update(service_s=time.perf_counter() - t, service_cpu=tree_cpu_seconds() - cpu, service_load=load_avg())
    lines = [json.loads(x) for x in audit.read_text().splitlines()[before:]]
    out.update(evaluations=sum(x["count"] for x in lines if x["outcome"] == "ok"), requests=len(lines), concurrency=client_cfg.concurrency)
    return out


def e2e_rows(r: dict, label: str = "") -> list[list]:
    n = r["records"]
    return [
        [f"{label}tokenise (salted), local HMAC, 2 cores", f"{n / r['local_s']:,.0f} records/s",
         f"{n:,} records in {r['local_s']:.1f} s, {r['local_cpu']:.0f} CPU s", r["local_load"]],
        [f"{label}tokenise (salted), key service, 2 cores (service on the same 2), {r['concurrency']} requests in flight per task",
         f"{n / r['service_s']:,.0f} records/s",
         f"{n:,} records in {r['service_s']:.1f} s ({r['service_s'] / r['local_s']:.1f}x local), {r['service_cpu']:.0f} CPU s; "
         f"{r['evaluations']:,} evaluations ({r['evaluations'] / n:.2f} per record) in {r['requests']:,} requests", r["service_load"]],
    ]


def compare(args) -> None:
    """Figure 4 for this tree and ``args.compare``, alternately, in child processes: one table."""
    trees = [("this tree", SRC), ("compared", args.compare.resolve())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="natlink-bench-ks-cmp-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for label, src in trees:
                out = Path(tmp) / f"{round_}-{label}.json"
                subprocess.run([sys.executable, __file__, "--src", str(src), "--e2e-json", str(out), "--records", str(args.records),
                                "--raw", str(args.raw), "--batch", str(args.batch), "--concurrency", str(args.concurrency)],
                               check=True, stdout=subprocess.DEVNULL)
                r = json.loads(out.read_text())
                n = r["records"]
                rows.append([f"{round_}", f"{label} ({src})", f"{n / r['local_s']:,.0f} ({r['local_cpu'] / n * 1e6:,.0f} CPU us/rec; {r['local_load']})",
                             f"{n / r['service_s']:,.0f} ({r['service_cpu'] / n * 1e6:,.0f} CPU us/rec; {r['service_load']})",
                             f"{r['service_s'] / r['local_s']:.1f}x", f"{r['evaluations']:,} in {r['requests']:,}"])
    print(f"\ntokenise {n:,} gp + hes records ({args.raw.name}), Spark local[2], batch {args.batch}, {args.concurrency} in flight per task")
    print_table(["round", "natlink source", "local HMAC records/s (CPU, load)", "key service records/s (CPU, load)", "service/local time",
                 "evaluations in requests"], rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--elements", type=int, default=50_000, help="values for the per-core figures")
    parser.add_argument("--batch", type=int, default=2000, help="values per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per Spark task")
    parser.add_argument("--raw", type=Path, default=DATA / "p539084_s42", help="a synthetic population's folder (raw/gp, raw/hes)")
    parser.add_argument("--compare", type=Path, help="another natlink source tree: end to end only, both trees taking turns")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: runs of each tree")
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)  # the tree a --compare child measures
    parser.add_argument("--e2e-json", type=Path, help=argparse.SUPPRESS)  # a --compare child: figure 4 only, to this file
    args = parser.parse_args(argv)
    global SRC
    if args.src:
        SRC = args.src.resolve()
        sys.path.insert(0, str(SRC))
        os.environ["PYTHONPATH"] = str(SRC)  # the Spark workers and the service import the same tree
    if args.compare:
        compare(args)
        return
    folder = Path(tempfile.mkdtemp(prefix="natlink-bench-ks-"))
    os.chmod(folder, 0o700)
    rows = []
    proc = None
    try:
        config, client_cfg, master = setup_keys(folder, args.batch, args.concurrency)
        if args.e2e_json:
            proc = start_service(config)
            spark = spark_session(2)
            result = end_to_end(spark, standardised(spark, args.raw, args.records), client_cfg, folder / "audit.jsonl")
            args.e2e_json.write_text(json.dumps(result))
            return
        rows += primitives(master, args.elements, args.batch)
        proc = start_service(config)
        rows.append(over_http(client_cfg, args.elements))
        spark = spark_session(2)
        frame = standardised(spark, args.raw, args.records)
        result = end_to_end(spark, frame, client_cfg, folder / "audit.jsonl")
        rows += e2e_rows(result)
        per_record, rate = result["evaluations"] / result["records"], result["records"] / result["service_s"]
        service_rate = float(rows[0][1].split()[0].replace(",", ""))
        evaluations = per_record * NATIONAL_RECORDS
        rows.append(["projection: 60M persons (111M records)", f"{evaluations / service_rate / 3600:,.1f} service core-hours",
                     f"{evaluations / 1e6:,.0f}M evaluations at {per_record:.2f} per record (this run's distinct ratio: an upper bound, "
                     f"values repeat more in larger populations); 8 service cores: {evaluations / service_rate / 8 / 3600:,.1f} h; "
                     f"providers at this run's end-to-end rate on 2 cores: {NATIONAL_RECORDS / rate / 3600:,.1f} h", load_avg()])
    finally:
        if proc is not None:
            stop_service(proc)
        shutil.rmtree(folder, ignore_errors=True)
    print_table(["measure", "figure", "how", "load (1/5/15 min)"], rows)


if __name__ == "__main__":
    main()
