"""Tokenise throughput: natlink (JVM function, native Spark HMAC, Arrow batches) against Python and openssl.

    python benchmarks/bench_tokenise.py [--rows 4000000] [--records 1000000] [--repeats 3]
                                        [--no-encodings] [--no-hmac] [--no-provider-u] [--bloom-split]

Encodings (issue 15; ``--no-encodings`` skips them): the two encodings side by side, in one Spark
session (local[2]) of their own, over the same ``--records`` standardised gp + hes records (made
once with ``natlink.synth.generate`` and ``natlink.provider.onboard``: bookkeeping and identifier
columns, cached as Parquet under benchmarks/data/tokenise_std_n<records>_s<seed>/):
* deterministic: ``natlink.tokens.encode.tokenise`` as ``natlink.tokens.tokenise`` calls it
  (``TOKEN_SPECS`` and the configured ``BLOOM_SPECS``: 18 tk_* and 2 bf_* columns);
* salted: ``natlink.tokens.salted.encode`` with ``SaltedScheme.from_model`` of the model with
  ``encoding: salted`` (found among conf/model*.yaml by its encoding; 44 columns for 4 rules);
each read from the Parquet, normalised and encoded into Spark's ``noop`` sink (the same for both;
no Delta write, no quarantine marking), with the same HMAC implementation (``NATLINK_HMAC`` /
auto). After a warm-up on a sample, the two alternate ``--repeats`` times (order swapped every
repeat, a read-only pass after each pair); medians. tokens/s = token columns per record x
records / s. The salted provider's u aggregates (``salted.inner_tokens`` +
``natlink.linkage.salted_training.provider_u``) are a separate step, timed once on its own row.
Measured (README, load 15 on the shared 2-core machine; per CPU-second scaled to 2 cores), 1M
records: deterministic 10,342 records/s (206,847 tokens/s), salted 46,566 records/s (2,048,894
tokens/s), provider u 37,900 records/s; ``--bloom-split``: the Bloom filters are two thirds of the
deterministic CPU time (224.5 CPU-s with them, 74.3 without).

HMAC rows (``--no-hmac`` skips them), over the same values (``--rows`` distinct 16-character
strings, written once to Parquet):
* natlink JVM: natlink's Java UDF ``natlink.HmacSha256Hex`` (natlink-jvm.jar; SHA-256 pad states
  cached per thread and cloned per value) with broadcast pads, the default of
  ``natlink.tokens.hmac_sha256.hmac_sha256_hex`` when the jar is loadable, local[2];
* natlink native: HMAC-SHA256 composed from Spark's sha2/concat/unhex with broadcast pads
  (the fallback of ``natlink.tokens.hmac_sha256.hmac_sha256_hex``), local[2];
* natlink Arrow: the same HMAC in a ``mapInArrow`` batch function with hashlib states for the
  padded key reused per value (``copy()``), local[2];
* a plain single-core Python ``hmac`` loop (over the first 1,000,000 values);
* ``openssl speed -hmac sha256 -bytes 16``: the hardware limit. A single openssl process reports
  operations per *user CPU second*, so twice that is the 2-core limit; ``-multi 2`` children
  report per elapsed second, so on a shared machine that figure is bounded by the load.
HMAC Spark figures are best of ``--repeats`` and net of reading the input (a read-only pass is
timed and subtracted); encoding figures include the read. Because the machine is shared, every
figure is given twice: wall clock, and per CPU-second of the processes doing the work (JVM +
Python workers, from /proc; openssl reports user CPU time itself) scaled to 2 cores, which is
what 2 dedicated cores would do. The cost of ``spark.io.encryption.enabled`` is
measured on a shuffle of the token column (JVM HMAC when the jar is loadable), in a second Spark
session with it off. Prints one table.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAKE_KEY = b"test-key-not-secret-bench-token0"  # obviously fake benchmark key
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and all its live descendants (plus reaped children)."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2:].split()
            parents[int(entry)] = int(fields[1])
            stats[int(entry)] = fields
    family, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in family:
                family.add(child)
                frontier.append(child)
    total = 0
    for p in family:
        f = stats.get(p)
        if f:
            total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    return total / TICK


def spark_child(args) -> dict:
    """Runs inside a child process: one Spark session with io encryption on or off."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    from natlink.tokens import encode, hmac_sha256
    from natlink.tokens.keys import KeyMaterial
    from natlink.spark.session import get_spark

    spark = get_spark(
        "natlink-bench-tokenise", master="local[2]",
        conf={"spark.driver.memory": "4g", "spark.io.encryption.enabled": args.io_encryption,
              "spark.sql.shuffle.partitions": "4"},
    )
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    src = Path(args.input)
    if not src.exists():
        values = spark.range(args.rows, numPartitions=4).select(
            F.substring(F.sha2(F.col("id").cast("string"), 256), 1, 16).alias("v")
        )
        values.write.mode("overwrite").parquet(str(src))
    df = spark.read.parquet(str(src))
    key = KeyMaterial("bench:not-secret", FAKE_KEY)
    spec = (encode.TokenSpec("v", "field:bench", lambda: F.col("v")),)

    def timed(frame) -> tuple[float, float]:
        frame.write.format("noop").mode("overwrite").save()  # warm-up (codegen, JIT, workers)
        best = (float("inf"), float("inf"))
        for _ in range(args.repeats):
            c0, t0 = tree_cpu(jvm_pid), time.perf_counter()
            frame.write.format("noop").mode("overwrite").save()
            best = min(best, (time.perf_counter() - t0, tree_cpu(jvm_pid) - c0))
        return best

    out = {"read": timed(df)}
    native = encode.tokenise(df, key, keep=[], specs=spec, blooms=(), hmac_implementation="native")
    jvm = None
    if hmac_sha256.hmac_uses_jvm():
        jvm = encode.tokenise(df, key, keep=[], specs=spec, blooms=(), hmac_implementation="jvm")
    if args.io_encryption == "true":
        if jvm is not None:
            out["jvm"] = timed(jvm)
            sample = df.orderBy("v").limit(1000).cache()
            j = encode.tokenise(sample, key, keep=[], specs=spec, blooms=(), hmac_implementation="jvm").collect()
            n = encode.tokenise(sample, key, keep=[], specs=spec, blooms=(), hmac_implementation="native").collect()
            out["jvm_equals_native"] = sorted(j) == sorted(n)
            sample.unpersist()
        out["native"] = timed(native)
        inner, outer = hmac_sha256.hmac_pads(key.subkey("field:bench"))

        def arrow_hmac(batches):
            i0, o0 = hashlib.sha256(inner), hashlib.sha256(outer)
            for batch in batches:
                tokens = []
                for v in batch.column(0).to_pylist():
                    if v is None:
                        tokens.append(None)
                        continue
                    h = i0.copy()
                    h.update(v.encode("utf-8"))
                    o = o0.copy()
                    o.update(h.digest())
                    tokens.append(o.hexdigest())
                yield pa.RecordBatch.from_arrays([pa.array(tokens, pa.string())], ["tk_v"])

        arrow = df.mapInArrow(arrow_hmac, "tk_v string")
        out["arrow"] = timed(arrow)
        check = native.limit(1000).collect() == arrow.limit(1000).collect()
        out["arrow_equals_native"] = check
    out["shuffle"] = timed((jvm if jvm is not None else native).repartition(4, "tk_v"))
    out["rows"] = df.count()
    spark.stop()
    return out


# --------------------------------------------------------------------------------------------
# Encoding comparison: deterministic (encode.tokenise) against block-salted (salted.encode)

ENC_KEEP = ("dataset", "record_id", "region")  # natlink.tokens.tokenise.BOOKKEEPING


def find_models(conf: Path) -> tuple[Path, Path]:
    """(deterministic, salted) model configs, found by their ``encoding`` (file names are changing):
    the deterministic one is model_deterministic.yaml, else model.yaml; the salted one the first
    conf/model*.yaml with ``encoding: salted`` (model.yaml preferred)."""
    from natlink.config import ModelConfig, load

    found = {p.name: load(p, ModelConfig).encoding for p in sorted(conf.glob("model*.yaml"))}
    det = next((conf / n for n in ("model_deterministic.yaml", "model.yaml") if found.get(n) == "deterministic"), None)
    salted = sorted((n for n, e in found.items() if e == "salted"), key=lambda n: (n != "model.yaml", n))
    if det is None or not salted:
        raise SystemExit(f"bench_tokenise: need a deterministic and a salted model in {conf}; found {found}")
    return det, conf / salted[0]


def standardised(spark, records: int, seed: int) -> Path:
    """``records`` standardised gp + hes records (bookkeeping and identifier columns), made once with
    natlink.synth.generate and natlink.provider.onboard and cached as Parquet under benchmarks/data/."""
    from _common import DATA, ROOT

    out = DATA / f"tokenise_std_n{records}_s{seed}"
    if (out / "_READY").exists():
        return out / "std"
    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.config import DatasetConfig
    from natlink.provider.onboard import onboard
    from natlink.synth import generate as synth

    persons = -(-records * 100 // 182)  # about 1.85 gp + hes records per person: 1.82 leaves a margin
    raw = DATA / f"tokenise_raw_p{persons}_s{seed}"
    if not (raw / "_READY_raw").exists():
        synth.generate(spark, raw, persons=persons, seed=seed, datasets=("gp", "hes"))
        (raw / "_READY_raw").write_text("ok")
    onboarded, frames = [], []
    for name in ("gp", "hes"):
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        ob = onboard(spark, ds, data_dir=str(raw), run_id="bench-tokenise")
        onboarded.append(ob)
        frames.append(ob.clean.select(*ENC_KEEP, *[c for c in C.IDENTIFIERS if c in ob.clean.columns]))
    try:
        frames[0].unionByName(frames[1]).limit(records).repartition(8).write.mode("overwrite").parquet(str(out / "std"))
    finally:
        for ob in onboarded:
            ob.unpersist()
    (out / "_READY").write_text("ok")
    return out / "std"


def encodings_child(args) -> dict:
    """Runs inside a child process: both encodings of the same standardised frame, alternated."""
    import statistics

    from _common import ROOT
    from natlink.config import ModelConfig, load
    from natlink.linkage.salted_training import provider_u
    from natlink.linkage.settings import splink_settings
    from natlink.spark.session import get_spark
    from natlink.tokens import encode, hmac_sha256, salted
    from natlink.tokens.keys import KeyMaterial

    spark = get_spark("natlink-bench-tokenise-encodings", master="local[2]",
                      conf={"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "4"})
    path = standardised(spark, args.records, args.seed)
    df = spark.read.parquet(str(path))
    n = df.count()
    det_path, sal_path = find_models(ROOT / "conf")
    sal_cfg = load(sal_path, ModelConfig)
    scheme = salted.SaltedScheme.from_model(sal_cfg)
    key = KeyMaterial("bench:not-secret", FAKE_KEY)
    keep = list(ENC_KEEP)
    frames = {
        "read": df,
        "deterministic": encode.tokenise(df, key, keep=keep),  # TOKEN_SPECS and BLOOM_SPECS, as tokenise_frame
        "salted": salted.encode(df, key, scheme, keep=keep),
    }
    if args.bloom_split:  # the deterministic tokens alone: what the Bloom filters cost
        frames["deterministic, no Bloom filters"] = encode.tokenise(df, key, keep=keep, blooms=())
    me = os.getpid()  # the whole tree: driver, JVM, Python workers

    def once(frame) -> tuple[float, float]:
        c0, t0 = tree_cpu(me), time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - t0, tree_cpu(me) - c0

    sample = df.sample(fraction=min(1.0, 50_000 / max(n, 1)), seed=1)
    once(encode.tokenise(sample, key, keep=keep))  # warm-up: codegen, JIT, Python workers
    once(salted.encode(sample, key, scheme, keep=keep))
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in frames}
    for r in range(args.repeats):  # alternate: A B read, then B A read, ...
        order = ("deterministic", "salted") if r % 2 == 0 else ("salted", "deterministic")
        for name in (*order, *[k for k in frames if k not in (*order, "read")], "read"):
            runs[name].append(once(frames[name]))
            print(f"bench_tokenise: {name} run {r + 1}: {runs[name][-1][0]:.1f} s wall, {runs[name][-1][1]:.1f} CPU-s",
                  file=sys.stderr, flush=True)
    out = {
        "records": n, "input": str(path), "hmac": hmac_sha256.choose_hmac_implementation(None),
        "jvm_hmac": hmac_sha256.hmac_uses_jvm(), "models": {"deterministic": str(det_path.relative_to(ROOT)),
                                                            "salted": str(sal_path.relative_to(ROOT))},
        "columns": {k: len(scheme.columns) if k == "salted" else len(f.columns) - len(keep) for k, f in frames.items() if k != "read"},
        "median": {k: [statistics.median(w for w, _ in v), statistics.median(c for _, c in v)] for k, v in runs.items()},
        # salted over deterministic records/s, per alternation (the two runs of one repeat are adjacent)
        "ratio": [statistics.median(d[i] / s[i] for d, s in zip(runs["deterministic"], runs["salted"])) for i in (0, 1)],
        "runs": runs,
    }
    if args.provider_u:
        settings = splink_settings(sal_cfg)
        inner = salted.inner_tokens(df, key, scheme)
        c0, t0 = tree_cpu(me), time.perf_counter()
        provider_u(inner, settings, max_pairs=sal_cfg.training.u_max_pairs, seed=sal_cfg.training.seed)
        out["provider_u"] = [time.perf_counter() - t0, tree_cpu(me) - c0]
    spark.stop()
    return out


def python_loop(path: str, limit: int) -> tuple[float, float, int]:
    import pyarrow.parquet as pq

    values = [v.encode() for v in pq.read_table(path).column(0).to_pylist()[:limit]]
    subkey = None
    from natlink.tokens.keys import KeyMaterial

    subkey = KeyMaterial("bench:not-secret", FAKE_KEY).subkey("field:bench")
    c0, t0 = time.process_time(), time.perf_counter()
    for v in values:
        hmac.new(subkey, v, hashlib.sha256).hexdigest()
    return time.perf_counter() - t0, time.process_time() - c0, len(values)


def openssl(multi: int, seconds: int) -> float | None:
    """HMAC-SHA256 operations per second on 16-byte inputs (openssl counts user CPU time)."""
    cmd = ["openssl", "speed", "-mr", "-seconds", str(seconds), "-bytes", "16", "-hmac", "sha256"]
    if multi > 1:
        cmd[2:2] = ["-multi", str(multi)]
    try:
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    # -multi prints one "+F:...:hmac(sha256):<bytes/s>" line per child (its summary mislabels the digest).
    rates = [float(m) for m in re.findall(r"^(?:Got: )?\+F:\d+:hmac\(sha256\):([0-9.]+)", text, re.M)]
    if multi > 1:
        rates = rates[-multi:] if len(rates) >= multi else rates
    else:
        rates = rates[-1:]
    return sum(rates) / 16 if rates else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="values for the HMAC rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--input", default=None)
    parser.add_argument("--hmac", action=argparse.BooleanOptionalAction, default=True, help="the HMAC rows")
    parser.add_argument("--encodings", action=argparse.BooleanOptionalAction, default=True,
                        help="deterministic against salted encoding of --records standardised records")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--provider-u", action=argparse.BooleanOptionalAction, default=True,
                        help="time the salted provider's u aggregates (a separate step) once")
    parser.add_argument("--bloom-split", action="store_true",
                        help="also time the deterministic tokens without Bloom filters (alternated with the others)")
    parser.add_argument("--io-encryption", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--encodings-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.io_encryption:  # child mode
        Path(args.result).write_text(json.dumps(spark_child(args)))
        return
    if args.encodings_child:
        Path(args.result).write_text(json.dumps(encodings_child(args)))
        return

    work = Path(tempfile.mkdtemp(prefix="natlink-bench-tok-"))
    src = args.input or str(work / "values")
    load0 = os.getloadavg()
    print(f"bench_tokenise: child results under {work}", file=sys.stderr, flush=True)
    results, enc = {}, None
    if args.encodings:
        res = work / "result-encodings.json"
        subprocess.run([sys.executable, __file__, "--encodings-child", "--records", str(args.records), "--seed", str(args.seed),
                        "--repeats", str(args.repeats), "--result", str(res), *([] if args.provider_u else ["--no-provider-u"]),
                        *(["--bloom-split"] if args.bloom_split else [])],
                       check=True, stdout=subprocess.DEVNULL)
        enc = json.loads(res.read_text())
    for io in ("true", "false") if args.hmac else ():
        res = work / f"result-{io}.json"
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--repeats", str(args.repeats),
                        "--input", src, "--io-encryption", io, "--result", str(res)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results[io] = json.loads(res.read_text())
    if args.hmac:
        py_wall, py_cpu, py_n = python_loop(src, 1_000_000)
        ssl1, ssl2 = openssl(1, 3), openssl(2, 3)
    load1 = os.getloadavg()

    fmt = lambda v: f"{v:>,.0f}" if v else "-"  # noqa: E731
    load = lambda a: "/".join(f"{x:.1f}" for x in a)  # noqa: E731
    print(f"tokenise benchmark: load average (1/5/15 min) {load(load0)} at start, {load(load1)} at end")
    table: list[tuple] = []  # method, tokens/s wall, tokens/s per 2 CPU-s, records/s wall, records/s per 2 CPU-s
    if args.hmac:
        on = results["true"]
        n = on["rows"]
        read_w, read_c = on["read"]

        def net(pair):
            wall, cpu = pair
            return n / max(wall - read_w, 1e-9), 2 * n / max(cpu - read_c, 1e-9)

        print(f"HMAC rows: {n:,} values of 16 characters, best of {args.repeats}, net of reading; "
              f"Arrow tokens == native tokens: {on['arrow_equals_native']}; "
              f"JVM tokens == native tokens: {on.get('jvm_equals_native', 'JVM jar not loadable')}")
        table += [
            ("natlink JVM UDF HmacSha256Hex, local[2]", *(net(on["jvm"]) if "jvm" in on else (None, None))),
            ("natlink native sha2/concat, local[2]", *net(on["native"])),
            ("natlink Arrow mapInArrow hashlib, local[2]", *net(on["arrow"])),
            ("Python hmac loop, 1 core", py_n / py_wall, 2 * py_n / py_cpu),
            ("openssl speed hmac(sha256) 16 B, 1 process x2", None, 2 * ssl1 if ssl1 else None),
            ("openssl -multi 2 (elapsed time: load-bound)", ssl2, None),
            ("  (openssl 1 process, not doubled)", None, ssl1),
        ]
    if enc:
        m, cols, r = enc["median"], enc["columns"], enc["records"]
        print(f"Encodings: {r:,} standardised gp + hes records ({Path(enc['input']).parent.name}), Parquet -> noop sink, "
              f"normalisation included, median of {args.repeats} alternated runs; HMAC {enc['hmac']} "
              f"(JVM function: {enc['jvm_hmac']}); deterministic = encode.tokenise, {cols['deterministic']} columns "
              f"(tk_* + bf_*); salted = salted.encode for {enc['models']['salted']}, {cols['salted']} columns; "
              f"salted/deterministic records/s {enc['ratio'][0]:.2f}x wall, {enc['ratio'][1]:.2f}x CPU")
        for name, label in (("deterministic", f"deterministic encode.tokenise ({enc['models']['deterministic']})"),
                            ("salted", f"salted salted.encode ({enc['models']['salted']})"),
                            ("deterministic, no Bloom filters", "  deterministic, tk_* only (--bloom-split)")):
            if name not in m:
                continue
            wall, cpu = m[name]
            table.append((f"{label}, local[2]", cols[name] * r / wall, 2 * cols[name] * r / cpu, r / wall, 2 * r / cpu))
        table.append(("  (read of the standardised Parquet alone)", None, None, r / m["read"][0], 2 * r / m["read"][1]))
        if "provider_u" in enc:
            wall, cpu = enc["provider_u"]
            table.append(("salted provider u aggregates (separate step, once)", None, None, r / wall, 2 * r / cpu))
    print(f"{'method':<60}{'tokens/s wall':>15}{'tokens/s per 2 CPU-s':>22}{'records/s wall':>16}{'records/s per 2 CPU-s':>23}")
    for name, *vals in table:
        vals += [None] * (4 - len(vals))
        print(f"{name:<60}{fmt(vals[0]):>15}{fmt(vals[1]):>22}{fmt(vals[2]):>16}{fmt(vals[3]):>23}")
    if args.hmac:
        sh_on, sh_off = results["true"]["shuffle"], results["false"]["shuffle"]
        print(f"{'shuffle of tokens, io encryption on (s: wall, CPU)':<60}{sh_on[0]:>15.2f}{sh_on[1]:>22.2f}")
        print(f"{'shuffle of tokens, io encryption off (s: wall, CPU)':<60}{sh_off[0]:>15.2f}{sh_off[1]:>22.2f}")


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
