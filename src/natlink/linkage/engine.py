"""Predict scored pairs with a trained model and cluster them into persons, natively on Spark.

Pipeline (one Spark plan per stage, lineage cut once):
1. records: unique id + the token columns the model reads, tokens mapped to 64-bit integers
   (``xxhash64`` of the token; equality is all the model needs), node ids in unique-id order;
2. budget check: pairs per blocking rule from key-group sizes, refused above the budget;
3. candidate pairs (:mod:`natlink.linkage.blocking`) scored with the model's own Splink SQL
   (:mod:`natlink.linkage.scoring`), kept at or above the threshold -> ``edges``;
4. connected components (:mod:`natlink.linkage.clustering`) -> one cluster per person.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink.linkage import blocking
from natlink.linkage import clustering
from natlink.linkage import inprocess
from natlink.linkage import scoring
from natlink import columns as C
from natlink.linkage import ids
from natlink.linkage.settings import check_input
from natlink.tokens.reader import with_unique_id
from natlink.spark.session import materialise, materialise_arrow

log = logging.getLogger(__name__)

NODE = blocking.NODE
CLUSTER_NODE = ids.CLUSTER_NODE


@dataclass
class LinkResult:
    records: DataFrame  # node_id, unique_id, dataset, record_id, region
    edges: DataFrame  # unique_id_l, unique_id_r, node_id_l, node_id_r, match_weight, match_probability, match_key
    clusters: DataFrame  # node_id, unique_id, dataset, record_id, region, cluster_node (min node id of the cluster)
    comparisons_per_rule: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = "spark"
    n_edges: int = 0


def _compact(df: DataFrame, column: str) -> "F.Column":
    """Tokens compare by equality only: a 64-bit hash of the token is enough and far cheaper to join."""
    field_type = df.schema[column].dataType
    if isinstance(field_type, (T.StringType, T.BinaryType)) and C.is_token(column):
        return F.when(F.col(column).isNotNull(), F.xxhash64(F.col(column)))
    return F.col(column)


def compact_columns(df: DataFrame, columns: list[str]) -> list["F.Column"]:
    return [_compact(df, c).alias(c) for c in columns]


def needed_columns(model: scoring.CompiledModel, rules: list[blocking.Rule]) -> list[str]:
    """Token columns a link reads: the model's inputs and the blocking rules' keys."""
    return list(dict.fromkeys([*model.columns, *[k for r in rules for k in r.keys]]))


def prepare_records(
    tokens: DataFrame, model: scoring.CompiledModel, rules: list[blocking.Rule], *, extra: list[str] | tuple = ()
) -> DataFrame:
    """node_id (in unique-id order), keys, the model's columns and ``extra``; materialised once."""
    if C.UNIQUE_ID not in tokens.columns:
        tokens = with_unique_id(tokens)
    needed = needed_columns(model, rules)
    slim = tokens.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, *extra, *compact_columns(tokens, needed))
    # Term frequencies of the population being linked, joined before the sort: one materialisation
    # (after the sort, each frequency aggregate would recompute the sorted plan or need a second one).
    ordered = scoring.with_term_frequencies(slim, model).orderBy(C.UNIQUE_ID)
    return materialise(ordered.withColumn(NODE, F.monotonically_increasing_id()), "records")


def predict(records: DataFrame, model: scoring.CompiledModel, rules: list[blocking.Rule], threshold: float) -> DataFrame:
    pairs = blocking.candidate_pairs(records, rules, [C.UNIQUE_ID, *model.pair_columns])
    keep = [f"{NODE}_l", f"{NODE}_r", f"{C.UNIQUE_ID}_l", f"{C.UNIQUE_ID}_r", "match_key"]
    return scoring.score(pairs, model, keep=keep, threshold_match_weight=scoring.probability_to_weight(threshold))


def link(
    tokens: DataFrame,
    settings: dict[str, Any],
    *,
    threshold: float,
    max_comparisons_per_rule: float = float("inf"),
    cluster_method: str = "auto",
    engine: str = "auto",
    in_process_max_records: int = inprocess.DEFAULT_MAX_RECORDS,
    extra: list[str] | tuple = (),
) -> LinkResult:
    """Score and cluster ``tokens`` (dataset, record_id, region, tk_*) with a trained model.

    ``engine``: ``spark``, ``in_process`` (:mod:`natlink.linkage.inprocess`) or ``auto`` (in process while
    the population has at most ``in_process_max_records`` records). Both give the same edges and
    clusters; ``extra`` columns travel with the records.
    """
    t = time.perf_counter()
    df = tokens if C.UNIQUE_ID in tokens.columns else with_unique_id(tokens)
    check_input(df, settings)
    model = scoring.compile_model(settings)
    if model.link_type != "dedupe_only":
        from natlink.errors import ModelError

        raise ModelError(f"natlink links one union of token tables: link_type must be dedupe_only, not {model.link_type}")
    rules = blocking.rules_from_settings(settings)
    chosen = inprocess.choose(engine, df.count() if engine == "auto" else 0, in_process_max_records)
    if chosen == "in_process":
        return link_in_process(df, settings, model, rules, threshold=threshold, max_comparisons_per_rule=max_comparisons_per_rule, extra=extra, started=t)
    records = prepare_records(df, model, rules, extra=extra)
    prepared = time.perf_counter() - t
    result = link_records(records, model, rules, threshold=threshold, max_comparisons_per_rule=max_comparisons_per_rule, cluster_method=cluster_method)
    result.timings = {"prepare": prepared, **result.timings}
    return result


def link_records(
    records: DataFrame,
    model: scoring.CompiledModel,
    rules: list[blocking.Rule],
    *,
    threshold: float,
    max_comparisons_per_rule: float = float("inf"),
    cluster_method: str = "auto",
) -> LinkResult:
    """The Spark engine on records from :func:`prepare_records`: budget, predict, cluster."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    counts = blocking.check_budget(records, rules, max_comparisons_per_rule)
    timings["budget"] = time.perf_counter() - t

    t = time.perf_counter()
    edges = materialise(predict(records, model, rules, threshold), "edges")
    n_edges = edges.count()
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    comps = clustering.components(edges, method=cluster_method, n_edges=n_edges)
    clusters = materialise(
        records.select(NODE, C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION)
        .join(comps.withColumnRenamed(clustering.COMPONENT, CLUSTER_NODE), on=NODE, how="left")
        .withColumn(CLUSTER_NODE, F.coalesce(F.col(CLUSTER_NODE), F.col(NODE))),
        "clusters",
    )
    timings["cluster"] = time.perf_counter() - t
    log.info("link (spark): comparisons per rule %s, timings %s", counts, timings)
    return LinkResult(records=records, edges=edges, clusters=clusters, comparisons_per_rule=counts, timings=timings, engine="spark", n_edges=n_edges)


def link_in_process(
    df: DataFrame,
    settings: dict[str, Any],
    model: scoring.CompiledModel,
    rules: list[blocking.Rule],
    *,
    threshold: float,
    max_comparisons_per_rule: float = float("inf"),
    extra: list[str] | tuple = (),
    started: float | None = None,
) -> LinkResult:
    """The in-process engine (:mod:`natlink.linkage.inprocess`) on token records with a unique id."""
    started = time.perf_counter() if started is None else started
    spark = df.sparkSession
    needed = needed_columns(model, rules)
    slim = df.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, *extra, *compact_columns(df, needed)).toArrow()
    timings: dict[str, float] = {"prepare": time.perf_counter() - started}
    linked = inprocess.link(
        slim,
        settings,
        rules,
        columns=model.columns,
        threshold_match_weight=scoring.probability_to_weight(threshold),
        max_comparisons_per_rule=max_comparisons_per_rule,
        spill_parent=_local_dir(spark),
        timings=timings,
    )
    t = time.perf_counter()
    # One frame serves as records and clusters (the clusters' columns are a subset).
    passengers = linked.records.select([NODE, C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, *extra])
    records = materialise_arrow(spark, passengers.append_column(CLUSTER_NODE, linked.cluster_node), "records")
    edges = materialise_arrow(spark, linked.edges, "edges")
    timings["cluster"] += time.perf_counter() - t
    log.info("link (in process): comparisons per rule %s, timings %s", linked.comparisons_per_rule, timings)
    return LinkResult(
        records=records, edges=edges, clusters=records, comparisons_per_rule=linked.comparisons_per_rule, timings=timings,
        engine="in_process", n_edges=linked.edges.num_rows,
    )


def _local_dir(spark) -> str | None:
    """The first of ``spark.local.dir`` when it is a local directory that exists (spill space)."""
    import os

    value = spark.conf.get("spark.local.dir", None) or ""
    first = value.split(",")[0].strip()
    return first if first and os.path.isdir(first) else None
