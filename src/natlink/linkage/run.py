"""A link run: token tables + model -> clusters, edges, person_index, id_events, runs (Delta).

* Idempotent by run id: a completed run id is a no-op; a run killed part-way is rerun from the
  last *completed* run's table versions (Delta time travel), and every table write carries a
  Delta transaction id for the run, so tables committed before the kill are not written twice
  (unless another run completed meanwhile: :mod:`natlink.linkage.writes`).
* A token-table file that goes missing or unreadable while the run reads it ends in a
  :class:`~natlink.errors.CorruptInputFileError` naming the file, its dataset and what to do.
* Stable person ids: clusters are matched to the previous completed run's ids (:mod:`natlink.linkage.ids`);
  the first run of a new linkage after a key rotation may take another linkage's (:mod:`natlink.linkage.carry`).
* Full or incremental: a full run scores everyone through the one engine dispatch
  (:func:`natlink.linkage.engine.link`); an incremental run compares only the delivery with the
  population (:mod:`natlink.linkage.incremental`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.link import LinkConfig
from natlink.errors import FingerprintMismatchError, InputDataError, NatlinkError, ReconciliationError
from natlink.linkage import block_splits, blocking, carry, ids, incremental, model_store, run_identity, salted_training, scoring, writes
from natlink.linkage import engine as link
from natlink.linkage.runs import OUTPUT_TABLES, completed_runs
from natlink.linkage.settings import check_input
from natlink.spark.scratch import Scratch
from natlink.store import delta, files
from natlink.tokens.reader import as_manifests, load_tokens, signed_version

log = logging.getLogger(__name__)

TABLES = (*OUTPUT_TABLES, "runs")
_READ_REMEDY = (
    "restore the file (a token table from its provider's delivery; an output table from a backup) and rerun "
    "with run id {run_id!r}, or re-tokenise the dataset and link it under a new run id; nothing of this run is visible"
)
STAGES = ("clusters", "edges", "id_events")  # where crash_after can stop a run (fault injection)

@dataclass
class RunSummary:
    run_id: str
    status: str  # "completed" | "already-completed"
    mode: str
    previous_run_id: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, int | None] = field(default_factory=dict)

    def summary_line(self) -> str:
        """``run r1 completed (full): 20399 records in (gp 10200, hes 10199) = 20399 clustered into 11000 persons; ...``"""
        c = self.counts
        inputs = ", ".join(f"{d} {n}" for d, n in sorted((c.get("records_by_dataset") or {}).items()))
        events = ", ".join(f"{e} {n}" for e, n in sorted((c.get("id_events") or {}).items())) or "none"
        split = c.get("cannot_link") or {}
        cut = f"cannot-link: {split['components_split']} components split, {split['edges_dropped']} edges dropped; " if split else ""
        carried = c.get("carried_ids")
        cut += f"person ids carried from run {carried['run_id']} of {carried['from']}; " if carried else ""
        reused = c.get("value_scan_passed_in") or {}
        cut += "value scan passed in earlier runs: " + ", ".join(f"{d} (run {r})" for d, r in sorted(reused.items())) + "; " if reused else ""
        return (
            f"run {self.run_id} {self.status} ({self.mode}): {c.get('records')} records in ({inputs}) = "
            f"{c.get('clustered', c.get('records'))} clustered into {c.get('persons')} persons; {c.get('edges')} edges; "
            f"{cut}person-id events: {events}"
        )


@dataclass
class _Inputs:
    """What a run reads, checked: token records (with their record hash), the model, the key."""

    manifests: list
    tokens: DataFrame
    fingerprint: str
    settings: dict[str, Any]
    compiled: scoring.CompiledModel
    rules: list[blocking.Rule]
    n_records: int
    model_info: dict[str, Any]
    identity: run_identity.RunIdentity
    scheme: Any = None  # the block-salted encoding of the tables, or None
    # dataset -> the earlier run of these tables whose value scan of the same content this run relies on
    scans_reused: dict[str, str] = field(default_factory=dict)


def run(
    spark,
    *,
    manifests: Sequence[str | Path | dict[str, Any]],
    model_path: str | Path,
    link_cfg: LinkConfig,
    tables: str | Path,
    run_id: str,
    mode: str | None = None,
    scratch: Scratch | None = None,
    crash_after: str | None = None,
    carry_ids_from: str | Path | None = None,
) -> RunSummary:
    """Link the token tables of ``manifests`` with the model at ``model_path`` into ``tables``.

    ``mode``: auto | full | incremental (default from ``link_cfg``). Intermediate files go to
    ``scratch`` (a new one, released at the end, when not given). ``crash_after`` (one of
    :data:`STAGES`) ends the process abruptly after that table's write, as a killed job would:
    a fault-injection hook for tests.

    ``carry_ids_from``: the tables folder of the linkage these inputs were re-tokenised from (a
    key rotation): the first run takes its person ids (:mod:`natlink.linkage.carry`).
    """
    tables = Path(tables)
    history = completed_runs(spark, tables)
    done = [r for r in history if r[C.RUN_ID] == run_id]
    loaded = as_manifests(manifests)
    identity = run_identity.identify(spark, loaded, model_path, link_cfg, carry_ids_from)
    identity.refuse_if_reused(spark, tables, run_id, done[-1] if done else None)
    if done:
        row = done[-1]
        log.info("run %s already completed; nothing to do", run_id)
        return RunSummary(run_id, "already-completed", row["mode"], row["previous_run_id"], json.loads(row["counts"]), json.loads(row["timings"]), json.loads(row["versions"]))
    own = scratch is None
    scratch = scratch or Scratch(spark)
    try:
        return _link_run(spark, loaded, identity, link_cfg, tables, run_id, mode or link_cfg.mode, history, scratch, crash_after,
                         carry_ids_from)
    except NatlinkError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated when a file could not be read, else re-raised
        named = files.named_read_failure(exc, remedy=_READ_REMEDY.format(run_id=run_id), owners={
            **{str(m.table_path): f"token table of dataset {m.dataset!r}, version {signed_version(m)}" for m in loaded},
            **{str(tables / name): f"output table {name}" for name in TABLES},
        })
        if named is None:
            raise
        raise named from None
    finally:
        if own:
            scratch.release()


def _load_inputs(spark, loaded, identity: run_identity.RunIdentity, previous: dict[str, Any] | None,
                 history: Sequence[dict[str, Any]] = ()) -> _Inputs:
    # Tables an earlier completed run of this folder read, byte for byte: their value scan passed there.
    passed = run_identity.scanned_before(history)
    reused = {i["dataset"]: passed[i["value_scan"]] for i in identity.inputs if i.get("value_scan") in passed}
    if reused:
        log.info("value scan of %s: passed in earlier runs of these tables (same signed content), not repeated",
                 ", ".join(f"{d} (run {r})" for d, r in sorted(reused.items())))
    tokens, fingerprint = load_tokens(spark, loaded, scanned=set(passed))
    settings, _meta = model_store.load(identity.model["path"], key_fingerprint=fingerprint)
    if previous is not None and previous["key_fingerprint"] != fingerprint:
        raise FingerprintMismatchError(
            f"the previous run {previous[C.RUN_ID]} used key fingerprint {previous['key_fingerprint']}, "
            f"these inputs use {fingerprint}; tokenise them under that key or start a new linkage"
        )
    scheme = salted_training.check_scheme(loaded, settings)
    if scheme is None:
        check_input(tokens, settings)
    return _Inputs(
        manifests=loaded,
        tokens=tokens.withColumn(C.RECORD_HASH, _record_hash(tokens)),
        fingerprint=fingerprint,
        settings=settings,
        compiled=scoring.compile_model(settings),
        rules=blocking.rules_from_settings(settings, scheme),
        # Exact: read_token_tables refuses a table whose Delta row count differs from its manifest's.
        n_records=sum(int(m.rows) for m in loaded),
        model_info=identity.model,
        identity=identity,
        scheme=scheme,
        scans_reused=reused,
    )


def _use_incremental(mode: str, inputs: _Inputs, history: list[dict[str, Any]], link_cfg: LinkConfig) -> bool:
    previous = history[-1] if history else None
    comparable = previous is not None and _same_model(previous, inputs.model_info)
    if mode == "incremental" and not comparable:
        raise InputDataError(
            "incremental mode needs a previous completed run with the same model, threshold and cannot-link rules; run with mode full"
        )
    # A population the in-process engine holds is relinked whole: faster than an incremental run
    # on Spark (benchmarks/bench_incremental.py), and ids are mapped to the previous run's either way.
    return mode == "incremental" or (
        mode == "auto"
        and link.choose(link_cfg, inputs.n_records) == "spark"
        and comparable
        and incremental.tf_drift_ok(history, inputs.n_records, inputs.compiled, link_cfg)
    )


def _link_run(spark, loaded, identity, link_cfg, tables, run_id, mode, history, scratch, crash_after, carry_ids_from=None) -> RunSummary:
    started = datetime.now(timezone.utc)
    previous = history[-1] if history else None
    t = time.perf_counter()
    inputs = _load_inputs(spark, loaded, identity, previous, history)
    carried = carry.carried_ids(spark, carry_ids_from, inputs.tokens, inputs.fingerprint, history=history) if carry_ids_from else None
    timings: dict[str, float] = {}
    if _use_incremental(mode, inputs, history, link_cfg):
        rules, splits = link.split_plan(inputs.rules, link_cfg, inputs.tokens.columns)
        records = link.prepare_records(inputs.tokens, inputs.compiled, rules, scratch, extra=[C.RECORD_HASH], splits=splits)
        timings["prepare"] = time.perf_counter() - t
        clusters, edges, events, counts = incremental.link_incremental(
            spark, records, inputs.compiled, rules, link_cfg, tables, previous, run_id, timings, scratch
        )
        if splits:
            counts["block_splits"] = block_splits.counts(records, splits)
        engine, run_mode = "spark", "incremental"
    else:
        linked = link.link(
            inputs.tokens, inputs.settings, link_cfg, scratch, extra=[C.RECORD_HASH], n_records=inputs.n_records, scheme=inputs.scheme
        )
        timings.update(linked.timings)
        clusters, edges, events, counts = _full(spark, linked, tables, previous, run_id, timings, carried.previous if carried else None)
        engine, run_mode = linked.engine, "full"

    t = time.perf_counter()
    epoch = writes.epoch_of(history)
    versions, persons, clustered = writes.write_outputs(
        clusters, edges, events, tables, run_id=run_id, epoch=epoch, inputs_id=identity.digest, scratch=scratch,
        after_write=lambda stage, _version: _maybe_crash(crash_after, stage),
    )
    timings["write"] = time.perf_counter() - t
    event_counts = {r["event"]: r["n"] for r in events.groupBy("event").agg(F.count(F.lit(1)).alias("n")).collect()}
    if clustered != inputs.n_records:
        raise ReconciliationError(f"run {run_id}: {inputs.n_records} records in, {clustered} in the clusters table")
    by_dataset = {i["dataset"]: i["rows"] for i in identity.inputs}
    counts.update({"records": inputs.n_records, "records_by_dataset": by_dataset, "clustered": clustered,
                   "persons": persons, "id_events": event_counts, "engine": engine})
    if carried is not None:
        counts["carried_ids"] = carried.info
    if inputs.scans_reused:
        counts["value_scan_passed_in"] = inputs.scans_reused
    summary = RunSummary(run_id, "completed", run_mode, previous[C.RUN_ID] if previous else None, counts, {k: round(v, 2) for k, v in timings.items()}, versions)
    writes.append_run(spark, tables, _run_row(summary, inputs, started), epoch)
    for name in TABLES:  # a metadata-only commit, and only when the retention changed
        delta.set_retention(tables / name, days=link_cfg.retention_days, spark=spark)
    log.info("run %s completed: %s", run_id, counts)
    return summary


def _full(spark, linked: link.LinkResult, tables: Path, previous, run_id: str, timings: dict[str, float], carried: DataFrame | None = None):
    """Every record was scored and clustered (``linked``); map its clusters to the previous run's ids
    (on a first run: to ``carried``, another linkage's, or none)."""
    t = time.perf_counter()
    prev_assign = carried
    if previous is not None:
        prev_clusters, _ = incremental.previous_state(spark, tables, previous)
        prev_assign = prev_clusters.select(C.UNIQUE_ID, C.PERSON_ID)
    assignment = ids.assign(linked.clusters.select(C.UNIQUE_ID, link.CLUSTER_NODE), prev_assign, run_id)
    clusters = linked.records.join(assignment.assigned, on=C.UNIQUE_ID, how="inner")
    timings["ids"] = time.perf_counter() - t
    counts = {"comparisons_per_rule": linked.comparisons_per_rule, "edges": linked.n_edges, "cannot_link": linked.cannot_link}
    if linked.block_splits:
        counts["block_splits"] = linked.block_splits
    return clusters, linked.edges, assignment.events, counts


def _run_row(summary: RunSummary, inputs: _Inputs, started: datetime) -> dict[str, Any]:
    """The run's ``runs`` row: its identity (inputs, model), counts, timings and the versions it wrote."""
    return {
        C.RUN_ID: summary.run_id,
        "mode": summary.mode,
        "previous_run_id": summary.previous_run_id,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc),
        "inputs": json.dumps(inputs.identity.inputs, sort_keys=True, default=str),
        "model": json.dumps(inputs.model_info, sort_keys=True),
        "key_fingerprint": inputs.fingerprint,
        "counts": json.dumps(summary.counts, sort_keys=True, default=int),
        "timings": json.dumps(summary.timings, sort_keys=True),
        "versions": json.dumps(summary.versions, sort_keys=True),
    }


def _same_model(previous: dict[str, Any], model_info: dict[str, Any]) -> bool:
    before = json.loads(previous["model"])
    return all(before.get(k) == model_info.get(k) for k in run_identity.MODEL_FIELDS)


def _maybe_crash(crash_after: str | None, stage: str) -> None:
    if crash_after == stage:
        os._exit(137)


def _record_hash(tokens: DataFrame) -> "F.Column":
    cols = sorted(c for c in tokens.columns if c not in (C.DATASET, C.RECORD_ID, C.UNIQUE_ID))
    return F.xxhash64(*[F.col(c) for c in cols])
