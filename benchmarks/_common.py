"""Shared helpers for benchmarks: prepared token tables, timing, peak memory of the process tree."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
sys.path.insert(0, str(ROOT / "src"))

# Obviously fake benchmark key (never a real deployment key): labelled text, so it is built as
# KeyMaterial directly (a key *reference* to it would be refused as weak outside the tests).
BENCH_KEY_HEX = b"bench-key-not-secret-0123456789a".hex()


def spark_session(cores: int = 2, memory: str = "8g", conf: dict | None = None):
    from natlink.spark.session import get_spark

    base = {"spark.driver.memory": memory, "spark.local.dir": str(DATA / "_spark_local")}
    base.update(conf or {})
    return get_spark("natlink-bench", master=f"local[{cores}]", conf=base, checkpoint_dir=DATA / "_checkpoints")


def bench_signing():
    """The benchmarks' manifest signer (a key kept under benchmarks/data/keys, so cached token
    tables stay verifiable) and the registry trusting it, made the defaults of this process
    (``NATLINK_SIGNING_KEY``, ``NATLINK_TRUSTED_SIGNERS``) unless they are set already."""
    from natlink.tokens import signing

    signer, registry = signing.demo_signer(DATA / "keys")
    os.environ.setdefault(signing.SIGNING_KEY_ENV, signer.reference)
    os.environ.setdefault(signing.TRUSTED_SIGNERS_ENV, str(registry))
    return signer


def prepare_raw(spark, persons: int, seed: int = 42) -> Path:
    """Synthesise `persons` people (raw files and truth, no tokens; cached on disk): for benchmarks
    that tokenise themselves."""
    from natlink.synth import generate as synth

    out = DATA / f"p{persons}_s{seed}"
    if (out / "_READY_signed").exists() or (out / "_READY_raw").exists():
        return out
    synth.generate(spark, out, persons=persons, seed=seed)
    (out / "_READY_raw").write_text("ok")
    return out


def prepare_tokens(spark, persons: int, seed: int = 42) -> Path:
    """Synthesise `persons` people and tokenise gp + hes into Delta token tables (cached on disk),
    with manifests signed by :func:`bench_signing`'s key."""
    from natlink import config as cfgmod
    from natlink.tokens.keys import KeyMaterial
    from natlink.config import DatasetConfig
    from natlink.commands import tokenise_delivery
    from natlink.synth import generate as synth

    signer = bench_signing()
    out = DATA / f"p{persons}_s{seed}"
    done = out / "_READY_signed"  # caches made before manifests were signed are made again
    if done.exists():
        return out
    key = KeyMaterial("bench:not-secret", bytes.fromhex(BENCH_KEY_HEX))
    synth.generate(spark, out, persons=persons, seed=seed)
    for name in ("gp", "hes"):
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        tokenise_delivery(spark, ds, key, data_dir=str(out), out=out, signer=signer)
    done.write_text("ok")
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of process ``pid`` and all its children (e.g. the Spark JVM)."""
    pages = [(read_proc(p, "statm").split() or ["0", "0"])[1] for p in tree_pids(pid)]  # resident pages ("" once gone)
    return sum(int(x) for x in pages) * os.sysconf("SC_PAGE_SIZE") / 1e6


class PeakMemory:
    """Peak resident memory (MB) of this process and all its children (e.g. the Spark JVM)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(os.getpid()))
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = tree_rss_mb(os.getpid())
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every live descendant (children of any of their threads)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        if p in out:
            continue
        try:
            children = [int(c) for task in os.listdir(f"/proc/{p}/task") for c in read_proc(p, f"task/{task}/children").split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        out.append(p)
        stack += children
    return out


def read_proc(pid: int, name: str) -> str:
    """/proc/PID/NAME, or "" when the process (or thread) has gone."""
    try:
        with open(f"/proc/{pid}/{name}") as fh:
            return fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a live process tree (this process by default, its Spark JVM,
    Python workers and any service it started): the difference over a step is the step's CPU
    cost, which the machine's load changes far less than its wall time."""
    total = 0
    for p in tree_pids(pid or os.getpid()):
        fields = read_proc(p, "stat").rsplit(")", 1)[-1].split()
        total += int(fields[11]) + int(fields[12]) if len(fields) > 12 else 0  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def print_table(headers: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = " | ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(v).ljust(w) for v, w in zip(r, widths)))
