"""The incremental monthly rerun: only new or changed records are compared with the population
(with a ``link_only`` model, with its records of other datasets).

Only the clusters that the delivery touches are re-clustered (connected components, split where
they break a cannot-link rule: :mod:`natlink.linkage.constraints`); everyone else keeps the
previous run's person id untouched. :func:`tf_drift_ok` says when an incremental run is close enough to
a full one under term-frequency adjustments (``mode: auto`` runs full otherwise).
"""

from __future__ import annotations

import json
import logging
import time
from functools import reduce
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.link import LinkConfig
from natlink.linkage import blocking, constraints, ids, scoring
from natlink.linkage import engine as link
from natlink.spark.scratch import Scratch
from natlink.store import delta

log = logging.getLogger(__name__)

_PREV_PERSON = "_prev_person"
_STATUS = "_status"
_EDGE_KEYS = [f"{link.NODE}_l", f"{link.NODE}_r", "unique_id_l", "unique_id_r", "match_key"]
EDGE_COLUMNS = ["unique_id_l", "unique_id_r", "match_weight", "match_probability", "match_key"]


def tf_drift_ok(history: list[dict[str, Any]], n_records: int, compiled: scoring.CompiledModel, link_cfg: LinkConfig) -> bool:
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


def previous_state(spark, tables: Path, previous: dict[str, Any]) -> tuple[DataFrame, DataFrame]:
    versions = json.loads(previous["versions"])
    clusters = delta.read(spark, str(tables / "clusters"), version=versions["clusters"])
    edges = delta.read(spark, str(tables / "edges"), version=versions["edges"])
    return clusters, edges


def link_incremental(spark, records, compiled, rules, link_cfg: LinkConfig, tables: Path, previous: dict[str, Any], run_id: str, timings: dict[str, float], scratch: Scratch):
    """Compare only new/changed records with the population; re-cluster only what they touch.

    The whole population is joined with the previous run once (``status``: one row per current
    or previous record, with its output columns and previous person id). Everything else works
    on small frames: the delivery, the previous persons it touches and their records, which are
    materialised so Spark knows their size and broadcasts them. With term-frequency adjustments
    the kept pairs are rescored under today's frequencies (see :func:`rescore_kept`).
    """
    threshold = scoring.probability_to_weight(link_cfg.threshold_match_probability)
    t = time.perf_counter()
    prev_clusters, prev_edges = previous_state(spark, tables, previous)
    prev = prev_clusters.select(C.UNIQUE_ID, F.col(C.PERSON_ID).alias(_PREV_PERSON), F.col(C.RECORD_HASH).alias("_prev_hash"))
    current = records.select(link.NODE, C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, C.RECORD_HASH)
    status = scratch.materialise(
        current.join(prev, on=C.UNIQUE_ID, how="full").withColumn(
            _STATUS,
            F.when(F.col("_prev_hash").isNull(), "new")
            .when(F.col(C.RECORD_HASH).isNull(), "deleted")
            .when(F.col(C.RECORD_HASH) != F.col("_prev_hash"), "changed")
            .otherwise("same"),
        ),
        "status",
    )
    by_status = {r[_STATUS]: r["n"] for r in status.groupBy(_STATUS).agg(F.count(F.lit(1)).alias("n")).collect()}
    # Records whose previous version is gone (changed or deleted), with their previous person.
    removed = scratch.materialise(status.where(F.col(_STATUS).isin("changed", "deleted")).select(C.UNIQUE_ID, _PREV_PERSON), "removed")
    timings["diff"] = time.perf_counter() - t

    t = time.perf_counter()
    delivery = status.where(F.col(_STATUS).isin("new", "changed")).select(link.NODE)
    arrivals = scratch.materialise(records.join(delivery, on=link.NODE, how="left_semi"), "arrivals")
    columns = [C.UNIQUE_ID, *compiled.pair_columns]
    pairs = blocking.pairs_touching(records, arrivals, rules, columns, scratch, cross_source=compiled.cross_source)
    new_edges = scratch.materialise(scoring.score(pairs, compiled, keep=_EDGE_KEYS, threshold_match_weight=threshold).select(*EDGE_COLUMNS), "new_edges")
    n_new_edges = new_edges.count()
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    kept = (
        prev_edges.join(removed.select(F.col(C.UNIQUE_ID).alias("unique_id_l")), on="unique_id_l", how="left_anti")
        .join(removed.select(F.col(C.UNIQUE_ID).alias("unique_id_r")), on="unique_id_r", how="left_anti")
    )
    touched = [removed.select(C.UNIQUE_ID), *[new_edges.select(F.col(f"unique_id_{s}").alias(C.UNIQUE_ID)) for s in "lr"]]
    if compiled.tf_columns:
        kept, dropped = rescore_kept(records, kept, compiled, columns, threshold, scratch)
        touched += [dropped.select(F.col(f"unique_id_{s}").alias(C.UNIQUE_ID)) for s in "lr"]
    else:
        kept = kept.select(*EDGE_COLUMNS)
    all_edges = kept.unionByName(new_edges)
    # Affected: every record of a previous person that lost a record, gained a link or lost a
    # link, plus the delivery itself.
    touched_uids = scratch.materialise(reduce(DataFrame.unionByName, touched).distinct(), "touched")
    affected_persons = scratch.materialise(
        status.join(touched_uids, on=C.UNIQUE_ID, how="left_semi").where(F.col(_PREV_PERSON).isNotNull()).select(_PREV_PERSON).distinct(),
        "affected_persons",
    )
    in_affected_person = F.col("_affected").isNotNull()
    marked = status.join(affected_persons.withColumn("_affected", F.lit(True)), on=_PREV_PERSON, how="left")
    affected = scratch.materialise(marked.where(in_affected_person | F.col(_STATUS).isin("new", "changed")).drop("_affected"), "affected")
    affected_now = affected.where(F.col(link.NODE).isNotNull())
    ends = affected_now.select(C.UNIQUE_ID, link.NODE)
    sub_edges = (
        all_edges.select("unique_id_l", "unique_id_r", "match_weight")
        .join(ends.select(F.col(C.UNIQUE_ID).alias("unique_id_l"), F.col(link.NODE).alias(f"{link.NODE}_l")), on="unique_id_l", how="inner")
        .join(ends.select(F.col(C.UNIQUE_ID).alias("unique_id_r"), F.col(link.NODE).alias(f"{link.NODE}_r")), on="unique_id_r", how="inner")
    )
    affected_records = records.join(ends.select(link.NODE), on=link.NODE, how="left_semi")
    comps, split = constraints.components(
        sub_edges, affected_records, link_cfg.cannot_link, method=link_cfg.cluster_method, nhs_key=constraints.nhs_key(rules)
    )
    nodes = link.with_cluster_node(ends, comps)
    timings["cluster"] = time.perf_counter() - t

    t = time.perf_counter()
    prev_affected = affected.where(F.col(_PREV_PERSON).isNotNull()).select(C.UNIQUE_ID, F.col(_PREV_PERSON).alias(C.PERSON_ID))
    assignment = ids.assign(nodes.select(C.UNIQUE_ID, link.CLUSTER_NODE), prev_affected, run_id)
    assigned = scratch.materialise(assignment.assigned, "assigned")
    out_columns = [C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, C.RECORD_HASH, C.PERSON_ID]
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
        "cannot_link": split.as_dict(),
    }
    return clusters, all_edges, assignment.events, counts


def rescore_kept(records, kept, compiled, columns, threshold, scratch):
    """Kept pairs scored again under today's term frequencies: (still linked, dropped below).

    Term frequencies are shares of the population, so a kept pair's score moves although its
    records did not. The pairs are joined to their records' columns by unique id and scored once
    without the threshold; the result is materialised and split, so there is one pass.
    """
    pairs = blocking.pairs_of(records, kept, columns, key=C.UNIQUE_ID)
    scored = scratch.materialise(scoring.score(pairs, compiled, keep=_EDGE_KEYS).select(*EDGE_COLUMNS), "kept_edges")
    above = F.col("match_weight") >= threshold
    return scored.where(above), scored.where(~above)
