"""The production path in one SparkSession: tokenise each dataset, train, link.

``natlink run`` (:func:`natlink.commands.run`) and the demo call :func:`tokenise_train_link`, so
no step starts a JVM of its own (10-20 s each). Every step is idempotent: tokenise skips a delivery
it already tokenised (:mod:`natlink.tokens.delivery`), training is skipped when the model on disk
was trained with the same config on exactly these token tables (:func:`natlink.linkage.train.trained_on`),
and a link run id derived from the inputs (:mod:`natlink.linkage.run_identity`) is already completed
on a rerun, so it changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from natlink.config.datasets import DatasetConfig
from natlink.config.link import LinkConfig
from natlink.config.model import ModelConfig
from natlink.linkage import run as linkrun
from natlink.linkage import run_identity, train
from natlink.tokens import signing
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.reader import as_manifests
from natlink.tokens.tokenise import SaltedEncoding, tokenise_configured

__all__ = ["Stopwatch", "derived_run_id", "tokenise_train_link"]

Step = Callable[[str, str], None]  # (step name, progress message): called as each step starts


class Stopwatch:
    """Wraps a progress callback so every step reports how long the previous one took, and which
    Spark application ran it (``natlink run`` runs every step in one)."""

    def __init__(self, progress: Callable[[str], None], spark=None) -> None:
        self.progress = progress
        self.spark = spark
        self.timings: dict[str, float] = {}
        self.applications: dict[str, str] = {}
        self._step: str | None = None
        self._t = time.perf_counter()

    def __call__(self, step: str, message: str) -> None:
        self.stop()
        self._step, self._t = step, time.perf_counter()
        self.progress(message)

    def stop(self) -> None:
        if self._step is not None:
            self.timings[self._step] = round(time.perf_counter() - self._t, 2)
            if self.spark is not None:
                self.applications[self._step] = self.spark.sparkContext.applicationId
            self._step = None


def derived_run_id(spark, manifests: Sequence, model_path: str | Path, link_cfg: LinkConfig) -> str:
    """``run-<16 hex>`` from the link's identity: same token tables, model and threshold, same id."""
    return "run-" + run_identity.identify(spark, as_manifests(list(manifests)), model_path, link_cfg).digest[:16]


def tokenise_train_link(
    spark, datasets: Sequence[DatasetConfig], key: KeyMaterial, out: Path, model_cfg: ModelConfig, link_cfg: LinkConfig, *,
    signer: signing.ManifestSigner | str | None, encoding: SaltedEncoding | None, step: Step, data_dir: str | None,
    model_path: Path, run_id: str | None = None, tokenise_run_id: str | None = None, project: str | None = None,
    retrain: bool = False,
) -> tuple[list[TokenManifest], bool, linkrun.RunSummary]:
    """Tokenise every dataset into ``out/tokens`` (quarantine rows: ``out/tables/quarantine``), train
    (unless ``model_path`` was trained on exactly these tables and ``retrain`` is off) and link into
    ``out/tables``, all in ``spark``. Returns (manifests, whether it trained, the link summary).
    ``run_id`` None: :func:`derived_run_id`. ``tokenise_run_id`` None: derived from each delivery."""
    manifests = []
    for ds in datasets:
        step(f"tokenise:{ds.name}", f"standardising and tokenising {ds.name}")
        manifests.append(tokenise_configured(
            spark, ds, key, data_dir=data_dir, out_dir=out / "tokens", project=project, run_id=tokenise_run_id,
            quarantine_table=out / "tables" / "quarantine", signer=signer, encoding=encoding,
        ))
    records = sum(int(m["rows"]) for m in manifests)
    step("train", f"training the Splink model on {records} records")
    trained = retrain or not train.trained_on(model_path, manifests, model_cfg)
    if trained:
        train.train_job(spark, manifests=manifests, cfg=model_cfg, out_path=model_path, overwrite=True)
    step("link", f"predicting and clustering at match probability >= {link_cfg.threshold_match_probability}")
    link_cfg = link_cfg.declaring(datasets)
    run_id = run_id or derived_run_id(spark, manifests, model_path, link_cfg)
    summary = linkrun.run(spark, manifests=manifests, model_path=model_path, link_cfg=link_cfg, tables=out / "tables", run_id=run_id)
    return manifests, trained, summary
