"""Scratch space for one job: intermediate Parquet under Spark's checkpoint directory.

A :class:`Scratch` belongs to the job that made it (a link run, an evaluation, a benchmark): what
it writes is deleted by :meth:`Scratch.release` (or on leaving a ``with`` block), and releasing
one job's scratch never touches another's. Frames read from it are valid until then.

Scratch folders hold key-derived values: on local paths each is mode 0700, inside the private
checkpoint folder (:func:`natlink.spark.session.ensure_checkpoint_dir`), which is itself removed
when the job's process ends, so a job that never released its scratch leaves nothing behind either.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame

from natlink.spark.session import ensure_checkpoint_dir

__all__ = ["Scratch"]


class Scratch:
    """Intermediate Parquet of one job, removed when the job releases it."""

    def __init__(self, spark) -> None:
        self.spark = spark
        self.paths: list[str] = []

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _new_path(self, label: str) -> str:
        root = ensure_checkpoint_dir(self.spark)
        path = f"{root.rstrip('/')}/natlink-{label}-{uuid.uuid4().hex}"
        self.paths.append(path)
        return path

    def materialise(self, df: DataFrame, label: str = "stage") -> DataFrame:
        """Compute ``df`` once and cut its lineage: Parquet under the checkpoint dir, read back.

        Preferred to ``DataFrame.checkpoint()``, which computes an unpersisted plan twice (once for
        the action, once to write the checkpoint) - wasteful, and unsafe for non-deterministic
        columns such as ``monotonically_increasing_id``.
        """
        path = self._new_path(label)
        df.write.mode("error").parquet(path)
        _make_private(path)
        return self.spark.read.parquet(path)

    def from_arrow(self, table, label: str = "stage") -> DataFrame:
        """An Arrow table held by the driver as a DataFrame on Parquet under the checkpoint dir.

        When the checkpoint dir is a local or mounted path (``file:``; on a multi-node cluster it
        must be shared storage anyway), pyarrow writes the files from the driver: one per core, so
        reads are parallel. ``createDataFrame`` is avoided there: its rows are decoded from Arrow
        again on every pass, about 2 s a pass per million records on 2 cores. Other file systems
        (``hdfs:``, object stores): ``createDataFrame``, then :meth:`materialise`.
        """
        import pyarrow.parquet as pq

        if urlparse(ensure_checkpoint_dir(self.spark)).scheme not in ("", "file"):
            return self.materialise(self.spark.createDataFrame(table), label)
        path = self._new_path(label)
        local = Path(urlparse(path).path)
        local.mkdir(mode=0o700, parents=True)
        _make_private(path)
        parts = max(1, min(self.spark.sparkContext.defaultParallelism, table.num_rows // 50_000 + 1))
        step = -(-table.num_rows // parts) if table.num_rows else 0
        for i in range(parts):
            pq.write_table(table.slice(i * step, step) if step else table, local / f"part-{i:05d}.parquet")
        return self.spark.read.parquet(path)

    def release(self) -> None:
        """Delete everything this scratch wrote (local and mounted paths; others are left to the store's lifecycle)."""
        while self.paths:
            parsed = urlparse(self.paths.pop())
            if parsed.scheme in ("", "file"):
                shutil.rmtree(parsed.path, ignore_errors=True)


def _make_private(path: str) -> None:
    """Mode 0700 for a local scratch folder (Hadoop creates folders by the process umask)."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file") and os.path.isdir(parsed.path):
        os.chmod(parsed.path, stat.S_IRWXU)
