"""A link run's writes: the four output tables, each one commit under the run's transaction, then
the ``runs`` row that makes them visible (:mod:`natlink.linkage.runs`).

Every write carries a Delta transaction id ``(natlink-run:<run id>, epoch)``, where the *epoch* is
the number of runs that had completed when the run started, plus one. A run killed part-way and
rerun:

* in the same epoch (no other run completed meanwhile) skips the writes that committed, and records
  *their* versions (found by run id and epoch in the commit info), not whatever a later writer left
  as the latest version;
* in a later epoch (another run completed meanwhile, so the killed attempt's writes were computed
  against a previous state that is no longer the last) writes every table again; its stale
  ``id_events`` rows (an appended table) are replaced, not doubled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.linkage import run_identity
from natlink.linkage.incremental import EDGE_COLUMNS
from natlink.linkage.runs import RUNS_SCHEMA
from natlink.spark.scratch import Scratch
from natlink.store import delta

__all__ = ["Written", "append_run", "epoch_of", "write_outputs"]

Hook = Callable[[str, "int | None"], None]  # (table, version) after each write: fault injection for tests


class Written(NamedTuple):
    versions: dict[str, int | None]  # the version of each output table that holds the run
    persons: int  # distinct persons in the run's clusters
    clustered: int  # records in the run's clusters


def epoch_of(history: list[dict[str, Any]]) -> int:
    """The epoch of a run that starts after ``history`` (completed runs): their number plus one."""
    return len(history) + 1


def write_outputs(
    clusters: DataFrame, edges: DataFrame, events: DataFrame, tables: Path, *, run_id: str, epoch: int,
    inputs_id: str, scratch: Scratch, after_write: Hook | None = None,
) -> Written:
    """Write ``clusters`` (dataset, record_id, unique_id, region, person_id, record_hash), ``edges``,
    the person index made from the clusters and ``events`` (appended to ``id_events``)."""
    txn = (run_identity.txn_app_id(run_id), epoch)
    info = {"run_id": run_id, "inputs_id": inputs_id, "epoch": epoch}
    hook = after_write or (lambda _name, _version: None)
    versions: dict[str, int | None] = {}
    snapshot = scratch.materialise(
        clusters.select(C.DATASET, C.RECORD_ID, C.UNIQUE_ID, C.REGION, C.PERSON_ID, C.RECORD_HASH, F.lit(run_id).alias(C.RUN_ID)),
        "snapshot",
    )
    index = snapshot.groupBy(C.PERSON_ID, C.DATASET).agg(F.count(F.lit(1)).cast("long").alias("record_count"))
    overwritten = {
        "clusters": (snapshot, (C.REGION,)),
        "edges": (edges.select(*EDGE_COLUMNS, F.lit(run_id).alias(C.RUN_ID)), ()),
        "person_index": (index.withColumn(C.RUN_ID, F.lit(run_id)), ()),
    }
    for name, (frame, partition_by) in overwritten.items():  # in this order: a killed run leaves a prefix of them
        path = tables / name
        written = delta.write(frame, str(path), mode="overwrite", partition_by=partition_by, txn=txn, commit_info=info)
        versions[name] = _version(written, path, info)
        hook(name, versions[name])
    versions["id_events"] = _append_events(events, tables / "id_events", txn, info)
    hook("id_events", versions["id_events"])
    return Written(versions, index.select(C.PERSON_ID).distinct().count(), snapshot.count())


def append_run(spark, tables: Path, row: dict[str, Any], epoch: int) -> None:
    """The ``runs`` row that marks the run completed (written last: readers trust only completed runs)."""
    txn = (run_identity.txn_app_id(row[C.RUN_ID]), epoch)
    delta.write(spark.createDataFrame([row], RUNS_SCHEMA), str(tables / "runs"), mode="append", txn=txn, commit_info={"run_id": row[C.RUN_ID]})


def _version(written: delta.WriteResult, path: Path, info: dict[str, Any]) -> int | None:
    """The version holding this run's write: a write skipped by its transaction id committed
    earlier, and later commits (another run's, killed or not) may have followed it."""
    if not written.skipped:
        return written.version
    for commit in delta.history(str(path)):  # newest first
        made = commit["commit_info"]
        if made.get("run_id") == info["run_id"] and made.get("epoch", info["epoch"]) == info["epoch"]:
            return commit["version"]
    return written.version


def _append_events(events: DataFrame, path: Path, txn: tuple[str, int], info: dict[str, Any]) -> int | None:
    """Append the run's id events; rows an earlier, killed attempt of the run appended in an
    earlier epoch are stale, and are replaced (one overwrite of the table without them)."""
    done = delta.txn_version(str(path), txn[0])
    if done is None or done >= txn[1]:
        return _version(delta.write(events, str(path), mode="append", txn=txn, commit_info=info), path, info)
    kept = delta.read(events.sparkSession, str(path)).where(F.col(C.RUN_ID) != info["run_id"])
    return delta.write(kept.unionByName(events), str(path), mode="overwrite", txn=txn, commit_info=info).version
