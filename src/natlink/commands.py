"""The end-to-end demo: synthetic population -> standardise -> tokenise -> train -> link -> Delta."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from natlink import config as cfgmod
from natlink.store import delta
from natlink.outputs import evaluate
from natlink.tokens import keys
from natlink.linkage import run as linkrun
from natlink.linkage import train
from natlink.synth import generate as synth
from natlink.config import DatasetConfig, DemoConfig, EnvironmentConfig, LinkConfig, ModelConfig

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class DemoResult:
    metrics: evaluate.PairwiseMetrics
    records: int
    seconds: float
    output_dir: Path
    clusters_path: Path
    model_path: Path
    run_id: str
    timings: dict[str, float]

    def summary_line(self) -> str:
        m = self.metrics
        return (
            f"precision={m.precision:.3f} recall={m.recall:.3f} f1={m.f1:.3f} "
            f"records={self.records} seconds={round(self.seconds)}"
        )


def tokenise_dataset(
    spark, ds: DatasetConfig, key: keys.KeyMaterial, *, data_dir: str, out: Path, run_id: str | None = None
):
    """Onboard (check, standardise, quarantine) and tokenise one dataset into ``out/tokens/<name>``
    (Delta) plus its manifest, which carries the onboarding counts; this run's quarantine rows of
    both stages go to ``out/tables/quarantine`` (partition run_id/dataset/stage, replaced on rerun)."""
    from natlink.tokens import tokenise

    return tokenise.tokenise_configured(
        spark, ds, key, data_dir=data_dir, out_dir=out / "tokens", run_id=run_id,
        quarantine_table=out / "tables" / "quarantine",
    )


class _Stopwatch:
    """Wraps a progress callback so every step reports how long the previous one took."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._step: str | None = None
        self._t = time.perf_counter()

    def __call__(self, step: str, message: str) -> None:
        self.stop()
        self._step, self._t = step, time.perf_counter()
        self.progress(message)

    def stop(self) -> None:
        if self._step is not None:
            self.timings[self._step] = round(time.perf_counter() - self._t, 2)
            self._step = None


def run_demo(cfg: DemoConfig, *, root: Path, progress: Progress = lambda _msg: None, spark=None) -> DemoResult:
    started = time.perf_counter()
    step = _Stopwatch(progress)
    run_id = datetime.now(timezone.utc).strftime("demo-%Y%m%dT%H%M%SZ")
    out = (root / cfg.output_dir).resolve() if not Path(cfg.output_dir).is_absolute() else Path(cfg.output_dir)
    env = cfgmod.load(cfg.environment, EnvironmentConfig, base_dir=root)
    model_cfg = cfgmod.load(cfg.model, ModelConfig, base_dir=root)
    link_cfg = cfgmod.load(cfg.link, LinkConfig, base_dir=root)
    datasets = [cfgmod.load(p, DatasetConfig, base_dir=root) for p in cfg.datasets]

    if spark is None:
        from natlink.spark.session import get_spark

        spark = get_spark("natlink-demo", master=env.master, conf=env.spark_conf, checkpoint_dir=out / "_checkpoints")

    key_ref = cfg.key
    if key_ref is None:
        key_file = out / "keys" / "demo.key"
        key_ref = f"file:{key_file}" if key_file.exists() else keys.create_key_file(key_file)
    key = keys.resolve(key_ref)
    progress(f"key {key.key_id} (fingerprint {key.fingerprint})")

    step("synth", f"synthesising {cfg.persons} persons (seed {cfg.seed})")
    generated = synth.generate(spark, out, persons=cfg.persons, seed=cfg.seed, datasets=[d.name for d in datasets])

    manifests = []
    for ds in datasets:
        step(f"tokenise:{ds.name}", f"standardising and tokenising {ds.name}")
        manifests.append(tokenise_dataset(spark, ds, key, data_dir=str(out), out=out, run_id=run_id))

    records = sum(int(m["rows"]) for m in manifests)
    step("train", f"training the Splink model on {records} records")
    model_path = root / cfg.model_dir / "demo.json"
    train.train_job(spark, manifests=manifests, cfg=model_cfg, out_path=model_path, overwrite=True)

    step("link", f"predicting and clustering at match probability >= {link_cfg.threshold_match_probability}")
    tables = out / "tables"
    previous = linkrun.completed_runs(spark, tables)
    if previous and previous[-1]["key_fingerprint"] != key.fingerprint:
        # The demo owns its folder: a new demo key starts a new linkage.
        shutil.rmtree(tables)
    summary = linkrun.run(spark, manifests=manifests, model_path=model_path, link_cfg=link_cfg, tables=tables, run_id=run_id)
    clusters_path = tables / "clusters"

    step("evaluate", "evaluating against the truth table")
    truth = spark.read.parquet(generated.truth)
    metrics = evaluate.pairwise(delta.read(spark, str(clusters_path)), truth)
    step.stop()
    seconds = time.perf_counter() - started
    log.info("demo run %s (%s): counts %s; step seconds %s", run_id, summary.mode, summary.counts, step.timings)
    return DemoResult(metrics, records, seconds, out, clusters_path, model_path, run_id, step.timings)
