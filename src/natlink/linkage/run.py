"""A link run: token tables + model -> clusters, edges, person_index, id_events, runs (Delta).

* Idempotent by run id: a completed run id is a no-op; a run killed part-way is rerun from the
  last *completed* run's table versions (Delta time travel), and every table write carries a
  Delta transaction id for the run, so tables committed before the kill are not written twice.
* Stable person ids: clusters are matched to the previous completed run's ids (:mod:`natlink.linkage.ids`).
* Incremental: only records that are new or changed since the previous run are compared with the
  population; only the clusters they touch are re-clustered (:func:`_incremental`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink.linkage import blocking
from natlink.linkage import clustering
from natlink.store import delta
from natlink.linkage import ids
from natlink.linkage import inprocess
from natlink.linkage import engine as link
from natlink.linkage import model_store
from natlink.linkage.settings import check_input
from natlink.linkage import scoring
from natlink import columns as C
from natlink.config import LinkConfig
from natlink.errors import FingerprintMismatchError, InputDataError
from natlink.spark.session import materialise, release_materialised
from natlink.tokens.reader import as_manifests, load_tokens

log = logging.getLogger(__name__)

TABLES = ("clusters", "edges", "person_index", "id_events", "runs")
RECORD_HASH = "record_hash"
_PREV_PERSON = "_prev_person"
_STATUS = "_status"
_EDGE_KEYS = [f"{link.NODE}_l", f"{link.NODE}_r", "unique_id_l", "unique_id_r", "match_key"]
_EDGE_COLUMNS = ["unique_id_l", "unique_id_r", "match_weight", "match_probability", "match_key"]
_TXN_VERSION = 1


@dataclass
class RunSummary:
    run_id: str
    status: str  # "completed" | "already-completed"
    mode: str
    previous_run_id: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, int | None] = field(default_factory=dict)


# --- runs table ----------------------------------------------------------------------------


RUNS_SCHEMA = T.StructType(
    [
        T.StructField(C.RUN_ID, T.StringType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("previous_run_id", T.StringType(), True),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("finished_at", T.TimestampType(), False),
        T.StructField("inputs", T.StringType(), False),
        T.StructField("model", T.StringType(), False),
        T.StructField("key_fingerprint", T.StringType(), False),
        T.StructField("counts", T.StringType(), False),
        T.StructField("timings", T.StringType(), False),
        T.StructField("versions", T.StringType(), False),
    ]
)


def completed_runs(spark, tables: Path) -> list[dict[str, Any]]:
    path = tables / "runs"
    if not delta.exists(str(path)):
        return []
    rows = delta.read(spark, str(path)).orderBy("finished_at", C.RUN_ID).collect()
    return [r.asDict() for r in rows]


def _txn(run_id: str) -> tuple[str, int]:
    return (f"natlink-run:{run_id}", _TXN_VERSION)


# --- the run -------------------------------------------------------------------------------


def run(spark, **kwargs) -> RunSummary:
    """Link the token tables of ``manifests`` with the model at ``model_path`` into ``tables``.

    Keyword arguments: manifests, model_path, link_cfg, tables, run_id, mode (auto | full |
    incremental; default from link_cfg), cluster_method (default from link_cfg).
    """
    try:
        return _run(spark, **kwargs)
    finally:
        release_materialised()


def _run(
    spark,
    *,
    manifests: Sequence[str | Path | dict[str, Any]],
    model_path: str | Path,
    link_cfg: LinkConfig,
    tables: str | Path,
    run_id: str,
    mode: str | None = None,
    cluster_method: str | None = None,
    _crash_after: str | None = None,
) -> RunSummary:
    tables = Path(tables)
    mode = mode or link_cfg.mode
    cluster_method = cluster_method or link_cfg.cluster_method
    started = datetime.now(timezone.utc)
    timings: dict[str, float] = {}
    history = completed_runs(spark, tables)
    done = [r for r in history if r[C.RUN_ID] == run_id]
    if done:
        row = done[-1]
        log.info("run %s already completed; nothing to do", run_id)
        return RunSummary(run_id, "already-completed", row["mode"], row["previous_run_id"], json.loads(row["counts"]), json.loads(row["timings"]), json.loads(row["versions"]))
    previous = history[-1] if history else None

    t = time.perf_counter()
    loaded = as_manifests(manifests)
    tokens, fingerprint = load_tokens(spark, loaded)
    settings, meta = model_store.load(model_path, key_fingerprint=fingerprint)
    if previous is not None and previous["key_fingerprint"] != fingerprint:
        raise FingerprintMismatchError(
            f"the previous run {previous[C.RUN_ID]} used key fingerprint {previous['key_fingerprint']}, "
            f"these inputs use {fingerprint}; re-key or start a new linkage"
        )
    check_input(tokens, settings)
    compiled = scoring.compile_model(settings)
    rules = blocking.rules_from_settings(settings)
    hashed = tokens.withColumn(RECORD_HASH, _record_hash(tokens))
    # Exact: read_token_tables refuses a table whose Delta row count differs from its manifest's.
    n_records = sum(int(m.rows) for m in loaded)
    engine = inprocess.choose(link_cfg.engine, n_records, link_cfg.in_process_max_records)

    model_info = {
        "path": str(model_path),
        "settings_hash": meta.get("settings_hash"),
        "splink_version": meta.get("splink_version"),
        "threshold_match_probability": link_cfg.threshold_match_probability,
    }
    comparable = previous is not None and _same_model(previous, model_info)
    if mode == "incremental" and not comparable:
        raise InputDataError(
            "incremental mode needs a previous completed run with the same model and threshold; run with mode full"
        )
    # A population the in-process engine holds is relinked whole: faster than an incremental run
    # on Spark (benchmarks/bench_incremental.py), and ids are mapped to the previous run's either way.
    use_incremental = mode == "incremental" or (
        mode == "auto" and engine == "spark" and comparable and _tf_drift_ok(history, n_records, compiled, link_cfg)
    )
    if use_incremental or engine == "spark":
        records = link.prepare_records(hashed, compiled, rules, extra=[RECORD_HASH])
        timings["prepare"] = time.perf_counter() - t
    if use_incremental:
        result = _incremental(spark, records, compiled, rules, link_cfg, tables, previous, run_id, timings, cluster_method)
    else:
        budget = link_cfg.max_comparisons_per_rule
        if engine == "spark":
            linked = link.link_records(records, compiled, rules, threshold=link_cfg.threshold_match_probability, max_comparisons_per_rule=budget, cluster_method=cluster_method)
        else:
            linked = link.link_in_process(hashed, settings, compiled, rules, threshold=link_cfg.threshold_match_probability, max_comparisons_per_rule=budget, extra=[RECORD_HASH], started=t)
        timings.update(linked.timings)
        result = _full(spark, linked, tables, previous, run_id, timings)
    clusters, edges, events, counts = result

    t = time.perf_counter()
    versions: dict[str, int | None] = {}
    txn = _txn(run_id)
    snapshot = materialise(
        clusters.select(C.DATASET, C.RECORD_ID, C.UNIQUE_ID, C.REGION, C.PERSON_ID, RECORD_HASH, F.lit(run_id).alias(C.RUN_ID)),
        "snapshot",
    )
    versions["clusters"] = delta.write(snapshot, str(tables / "clusters"), mode="overwrite", partition_by=(C.REGION,), txn=txn, commit_info={"run_id": run_id}).version
    _maybe_crash(_crash_after, "clusters")
    versions["edges"] = delta.write(
        edges.select("unique_id_l", "unique_id_r", "match_weight", "match_probability", "match_key", F.lit(run_id).alias(C.RUN_ID)),
        str(tables / "edges"), mode="overwrite", txn=txn, commit_info={"run_id": run_id},
    ).version
    _maybe_crash(_crash_after, "edges")
    index = snapshot.groupBy(C.PERSON_ID, C.DATASET).agg(F.count(F.lit(1)).cast("long").alias("record_count"))
    versions["person_index"] = delta.write(
        index.withColumn(C.RUN_ID, F.lit(run_id)), str(tables / "person_index"), mode="overwrite", txn=txn, commit_info={"run_id": run_id}
    ).version
    versions["id_events"] = delta.write(events, str(tables / "id_events"), mode="append", txn=txn, commit_info={"run_id": run_id}).version
    _maybe_crash(_crash_after, "id_events")
    timings["write"] = time.perf_counter() - t

    event_counts = {r["event"]: r["n"] for r in events.groupBy("event").agg(F.count(F.lit(1)).alias("n")).collect()}
    counts.update({"records": n_records, "persons": index.select(C.PERSON_ID).distinct().count(), "id_events": event_counts})
    counts["engine"] = "spark" if use_incremental else engine
    summary = RunSummary(run_id, "completed", "incremental" if use_incremental else "full", previous[C.RUN_ID] if previous else None, counts, {k: round(v, 2) for k, v in timings.items()}, versions)
    row = {
        C.RUN_ID: run_id,
        "mode": summary.mode,
        "previous_run_id": summary.previous_run_id,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc),
        "inputs": json.dumps(
            [{k: m.get(k) for k in ("dataset", "table", "rows", "key_fingerprint", "schema_version", "delta_version", "created_at")} for m in loaded],
            sort_keys=True,
            default=str,
        ),
        "model": json.dumps(model_info, sort_keys=True),
        "key_fingerprint": fingerprint,
        "counts": json.dumps(counts, sort_keys=True, default=int),
        "timings": json.dumps(summary.timings, sort_keys=True),
        "versions": json.dumps(versions, sort_keys=True),
    }
    delta.write(spark.createDataFrame([row], RUNS_SCHEMA), str(tables / "runs"), mode="append", txn=txn, commit_info={"run_id": run_id})
    for name in TABLES:  # a metadata-only commit, and only when the retention changed
        delta.set_retention(tables / name, days=link_cfg.retention_days, spark=spark)
    log.info("run %s completed: %s", run_id, counts)
    return summary


def _same_model(previous: dict[str, Any], model_info: dict[str, Any]) -> bool:
    before = json.loads(previous["model"])
    keys = ("settings_hash", "threshold_match_probability")
    return all(before.get(k) == model_info.get(k) for k in keys)


def _tf_drift_ok(history: list[dict[str, Any]], n_records: int, compiled: scoring.CompiledModel, link_cfg: LinkConfig) -> bool:
    """Whether an incremental run is close enough to a full one under term-frequency adjustments.

    Term frequencies are shares of the population, so they drift as it grows: a pair of
    unchanged records that was just below the threshold can rise above it, and only a full run
    would find it (kept pairs are rescored, so links are never wrongly kept). ``auto`` therefore
    runs full once the population has changed by more than ``max_incremental_growth`` since
    the last full run. Without TF columns incremental equals full and this never applies.
    """
    if not compiled.tf_columns:
        return True
    full = [r for r in history if r["mode"] == "full"]
    if not full:
        return False
    base = json.loads(full[-1]["counts"]).get("records") or 0
    growth = abs(n_records - base) / max(base, 1)
    if growth > link_cfg.max_incremental_growth:
        log.info("population changed by %.1f%% since the last full run (over %.1f%%): running full", 100 * growth, 100 * link_cfg.max_incremental_growth)
        return False
    return True


def _maybe_crash(crash_after: str | None, stage: str) -> None:
    """Test hook: end the process abruptly after a stage, as a killed job would."""
    if crash_after == stage:
        import os

        os._exit(137)


def _record_hash(tokens: DataFrame) -> "F.Column":
    cols = sorted(c for c in tokens.columns if c not in (C.DATASET, C.RECORD_ID, C.UNIQUE_ID))
    return F.xxhash64(*[F.col(c) for c in cols])


def _previous_state(spark, tables: Path, previous: dict[str, Any]) -> tuple[DataFrame, DataFrame]:
    versions = json.loads(previous["versions"])
    clusters = delta.read(spark, str(tables / "clusters"), version=versions["clusters"])
    edges = delta.read(spark, str(tables / "edges"), version=versions["edges"])
    return clusters, edges


def _full(spark, linked: link.LinkResult, tables, previous, run_id, timings):
    """Every record was scored and clustered (``linked``); map its clusters to the previous run's ids."""
    n_edges = linked.n_edges
    t = time.perf_counter()
    prev_assign = None
    if previous is not None:
        prev_clusters, _ = _previous_state(spark, tables, previous)
        prev_assign = prev_clusters.select(C.UNIQUE_ID, C.PERSON_ID)
    assignment = ids.assign(linked.clusters.select(C.UNIQUE_ID, link.CLUSTER_NODE), prev_assign, run_id)
    clusters = linked.records.join(assignment.assigned, on=C.UNIQUE_ID, how="inner")
    timings["ids"] = time.perf_counter() - t
    counts = {"comparisons_per_rule": linked.comparisons_per_rule, "edges": n_edges}
    return clusters, linked.edges, assignment.events, counts


def _with_cluster_node(records: DataFrame, comps: DataFrame) -> DataFrame:
    return (
        records.select(link.NODE, C.UNIQUE_ID)
        .join(comps.withColumnRenamed(clustering.COMPONENT, link.CLUSTER_NODE), on=link.NODE, how="left")
        .withColumn(link.CLUSTER_NODE, F.coalesce(F.col(link.CLUSTER_NODE), F.col(link.NODE)))
    )


def _incremental(spark, records, compiled, rules, link_cfg, tables, previous, run_id, timings, cluster_method):
    """Compare only new/changed records with the population; re-cluster only what they touch.

    The whole population is joined with the previous run once (``status``: one row per current
    or previous record, with its output columns and previous person id). Everything else works
    on small frames: the delivery, the previous persons it touches and their records, which are
    materialised so Spark knows their size and broadcasts them. With term-frequency adjustments
    the kept pairs are rescored under today's frequencies (see :func:`_rescore_kept`).
    """
    threshold = scoring.probability_to_weight(link_cfg.threshold_match_probability)
    t = time.perf_counter()
    prev_clusters, prev_edges = _previous_state(spark, tables, previous)
    prev = prev_clusters.select(C.UNIQUE_ID, F.col(C.PERSON_ID).alias(_PREV_PERSON), F.col(RECORD_HASH).alias("_prev_hash"))
    current = records.select(link.NODE, C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, RECORD_HASH)
    status = materialise(
        current.join(prev, on=C.UNIQUE_ID, how="full").withColumn(
            _STATUS,
            F.when(F.col("_prev_hash").isNull(), "new")
            .when(F.col(RECORD_HASH).isNull(), "deleted")
            .when(F.col(RECORD_HASH) != F.col("_prev_hash"), "changed")
            .otherwise("same"),
        ),
        "status",
    )
    by_status = {r[_STATUS]: r["n"] for r in status.groupBy(_STATUS).agg(F.count(F.lit(1)).alias("n")).collect()}
    # Records whose previous version is gone (changed or deleted), with their previous person.
    removed = materialise(status.where(F.col(_STATUS).isin("changed", "deleted")).select(C.UNIQUE_ID, _PREV_PERSON), "removed")
    timings["diff"] = time.perf_counter() - t

    t = time.perf_counter()
    delivery = status.where(F.col(_STATUS).isin("new", "changed")).select(link.NODE)
    arrivals = materialise(records.join(delivery, on=link.NODE, how="left_semi"), "arrivals")
    columns = [C.UNIQUE_ID, *compiled.pair_columns]
    pairs = blocking.pairs_touching(records, arrivals, rules, columns)
    new_edges = materialise(scoring.score(pairs, compiled, keep=_EDGE_KEYS, threshold_match_weight=threshold).select(*_EDGE_COLUMNS), "new_edges")
    n_new_edges = new_edges.count()
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    kept = (
        prev_edges.join(removed.select(F.col(C.UNIQUE_ID).alias("unique_id_l")), on="unique_id_l", how="left_anti")
        .join(removed.select(F.col(C.UNIQUE_ID).alias("unique_id_r")), on="unique_id_r", how="left_anti")
    )
    touched = [removed.select(C.UNIQUE_ID), *[new_edges.select(F.col(f"unique_id_{s}").alias(C.UNIQUE_ID)) for s in "lr"]]
    if compiled.tf_columns:
        kept, dropped = _rescore_kept(records, kept, compiled, columns, threshold)
        touched += [dropped.select(F.col(f"unique_id_{s}").alias(C.UNIQUE_ID)) for s in "lr"]
    else:
        kept = kept.select(*_EDGE_COLUMNS)
    all_edges = kept.unionByName(new_edges)
    # Affected: every record of a previous person that lost a record, gained a link or lost a
    # link, plus the delivery itself.
    touched_uids = materialise(reduce(DataFrame.unionByName, touched).distinct(), "touched")
    affected_persons = materialise(
        status.join(touched_uids, on=C.UNIQUE_ID, how="left_semi").where(F.col(_PREV_PERSON).isNotNull()).select(_PREV_PERSON).distinct(),
        "affected_persons",
    )
    in_affected_person = F.col("_affected").isNotNull()
    marked = status.join(affected_persons.withColumn("_affected", F.lit(True)), on=_PREV_PERSON, how="left")
    affected = materialise(marked.where(in_affected_person | F.col(_STATUS).isin("new", "changed")).drop("_affected"), "affected")
    affected_now = affected.where(F.col(link.NODE).isNotNull())
    ends = affected_now.select(C.UNIQUE_ID, link.NODE)
    sub_edges = (
        all_edges.select("unique_id_l", "unique_id_r")
        .join(ends.select(F.col(C.UNIQUE_ID).alias("unique_id_l"), F.col(link.NODE).alias(f"{link.NODE}_l")), on="unique_id_l", how="inner")
        .join(ends.select(F.col(C.UNIQUE_ID).alias("unique_id_r"), F.col(link.NODE).alias(f"{link.NODE}_r")), on="unique_id_r", how="inner")
    )
    comps = clustering.components(sub_edges, method=cluster_method)
    nodes = _with_cluster_node(ends, comps)
    timings["cluster"] = time.perf_counter() - t

    t = time.perf_counter()
    prev_affected = affected.where(F.col(_PREV_PERSON).isNotNull()).select(C.UNIQUE_ID, F.col(_PREV_PERSON).alias(C.PERSON_ID))
    assignment = ids.assign(nodes.select(C.UNIQUE_ID, link.CLUSTER_NODE), prev_affected, run_id)
    assigned = materialise(assignment.assigned, "assigned")
    out_columns = [C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, RECORD_HASH, C.PERSON_ID]
    unaffected = (
        marked.where(~in_affected_person & (F.col(_STATUS) == "same"))
        .select(*out_columns[:-1], F.col(_PREV_PERSON).alias(C.PERSON_ID))
    )
    reassigned = affected_now.join(assigned, on=C.UNIQUE_ID, how="inner").select(*out_columns)
    clusters = unaffected.unionByName(reassigned)
    timings["ids"] = time.perf_counter() - t
    counts = {
        "records_by_status": by_status,
        "new_edges": n_new_edges,
        "affected_records": affected_now.count(),
        "edges": all_edges.count(),
    }
    return clusters, all_edges, assignment.events, counts


def _rescore_kept(records, kept, compiled, columns, threshold):
    """Kept pairs scored again under today's term frequencies: (still linked, dropped below).

    Term frequencies are shares of the population, so a kept pair's score moves although its
    records did not. The pairs are joined to their records' columns by unique id and scored once
    without the threshold; the result is materialised and split, so there is one pass.
    """
    pairs = blocking.pairs_of(records, kept, columns, key=C.UNIQUE_ID)
    scored = materialise(scoring.score(pairs, compiled, keep=_EDGE_KEYS).select(*_EDGE_COLUMNS), "kept_edges")
    above = F.col("match_weight") >= threshold
    return scored.where(above), scored.where(~above)

