"""Linking token records into persons: the one engine dispatch, and the Spark engine.

:func:`link` is what every caller uses (``natlink link`` through :mod:`natlink.linkage.run`,
``evaluate``, the benchmarks). It chooses the engine from :class:`~natlink.config.link.LinkConfig`
(the only place link defaults live): in process (:mod:`natlink.linkage.inprocess`) for a
population of at most ``in_process_max_records``, else Spark. Both give the same edges and clusters.

The Spark engine (one Spark plan per stage, lineage cut once):
1. records: unique id + the token columns the model reads, tokens mapped to 64-bit integers
   (``xxhash64`` of the token; equality is all the model needs), node ids in unique-id order;
2. budget check: pairs per blocking rule from key-group sizes, refused above the budget;
3. candidate pairs (:mod:`natlink.linkage.blocking`; a ``link_only`` model: pairs of two datasets
   only, counted so in the budget) scored with the model's own Splink SQL
   (:mod:`natlink.linkage.scoring`), kept at or above the threshold -> ``edges``;
4. connected components (:mod:`natlink.linkage.clustering`), a component that breaks a
   cannot-link rule split at its weakest edges (:mod:`natlink.linkage.constraints`) -> one cluster
   per person.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink.linkage import block_splits
from natlink.linkage import blocking
from natlink.linkage import clustering
from natlink.linkage import constraints
from natlink.linkage import inprocess
from natlink.linkage import scoring
from natlink import columns as C
from natlink.linkage.settings import check_input
from natlink.tokens.reader import with_unique_id
from natlink.config.link import LinkConfig
from natlink.errors import ConfigError
from natlink.spark.scratch import Scratch
from natlink.spark.session import local_dir

log = logging.getLogger(__name__)

NODE = C.NODE_ID
CLUSTER_NODE = C.CLUSTER_NODE
ENGINES = ("auto", "spark", "in_process")


@dataclass
class LinkResult:
    records: DataFrame  # node_id, unique_id, dataset, record_id, region
    edges: DataFrame  # unique_id_l, unique_id_r, node_id_l, node_id_r, match_weight, match_probability, match_key
    clusters: DataFrame  # node_id, unique_id, dataset, record_id, region, cluster_node (min node id of the cluster)
    comparisons_per_rule: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = "spark"
    n_edges: int = 0
    cannot_link: dict[str, int] = field(default_factory=dict)  # constraints.SplitCounts: components split, edges dropped, ...
    block_splits: list[dict[str, Any]] = field(default_factory=list)  # block_splits.counts: large blocks split, pairs not compared


def _compact(df: DataFrame, column: str) -> "F.Column":
    """Tokens compare by equality only: a 64-bit hash of the token is enough and far cheaper to join."""
    field_type = df.schema[column].dataType
    if isinstance(field_type, (T.StringType, T.BinaryType)) and C.is_token(column):
        return F.when(F.col(column).isNotNull(), F.xxhash64(F.col(column)))
    return F.col(column)


def compact_columns(df: DataFrame, columns: list[str]) -> list["F.Column"]:
    return [_compact(df, c).alias(c) for c in columns]


def needed_columns(model: scoring.CompiledModel, rules: list[blocking.Rule]) -> list[str]:
    """Token columns a link reads: the model's inputs (as each rule reads them) and the rules' keys."""
    return blocking.physical_columns(rules, model.columns)


def prepare_records(
    tokens: DataFrame,
    model: scoring.CompiledModel,
    rules: list[blocking.Rule],
    scratch: Scratch,
    *,
    extra: Sequence[str] = (),
    splits: Sequence[block_splits.Split] = (),
) -> DataFrame:
    """node_id (in unique-id order), keys, the model's columns and ``extra``; materialised.

    The compacted rows are materialised first, then sorted and numbered and materialised again:
    the token tables are read and hashed once, not once per pass (prepare's task CPU at 1M persons
    127-131 s -> 106-116 s, at 3M 277-334 s -> 239-268 s: ``benchmarks/bench_rerun.py``).

    ``splits`` (:func:`split_plan`; ``rules`` then block on their split keys): each split rule's
    block size and split key are computed here, on the compacted 64-bit columns (the window that
    counts block sizes shuffles those, not the token strings)."""
    if C.UNIQUE_ID not in tokens.columns:
        tokens = with_unique_id(tokens)
    made_here = {s.key_column for s in splits}
    needed = [c for c in needed_columns(model, rules) if c not in made_here]
    needed = list(dict.fromkeys([*needed, *[c for s in splits for c in (*s.rule.keys, *s.by)]]))
    slim = tokens.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, *extra, *compact_columns(tokens, needed))
    # The token tables are read and hashed once: every later pass (each split rule's block sizes,
    # the term-frequency totals, the sort's sampling job and its shuffle) reads these compact rows,
    # where each would otherwise read the tables' 64-character tokens and hash them again.
    slim = scratch.materialise(slim, "slim_records")
    slim = block_splits.with_keys(slim, splits, scratch)
    # Term frequencies of the population being linked, joined before the sort: their aggregates read
    # the compact rows above, and the sorted records need no further materialisation for them.
    ordered = scoring.with_term_frequencies(slim, model).orderBy(C.UNIQUE_ID)
    return scratch.materialise(ordered.withColumn(NODE, F.monotonically_increasing_id()), "records")


def predict(records: DataFrame, model: scoring.CompiledModel, rules: list[blocking.Rule], threshold: float) -> DataFrame:
    pairs = blocking.candidate_pairs(records, rules, [C.UNIQUE_ID, *model.pair_columns], cross_source=model.cross_source)
    keep = [f"{NODE}_l", f"{NODE}_r", f"{C.UNIQUE_ID}_l", f"{C.UNIQUE_ID}_r", "match_key"]
    return scoring.score(pairs, model, keep=keep, threshold_match_weight=scoring.probability_to_weight(threshold))


def split_plan(
    rules: list[blocking.Rule], link_cfg: LinkConfig, columns: Sequence[str]
) -> tuple[list[blocking.Rule], list[block_splits.Split]]:
    """``link_cfg.split_large_blocks`` on the model's ``rules`` over tables with ``columns``: the rules
    blocking on their split keys, and the splits (:mod:`natlink.linkage.block_splits`). A split of a
    rule this model lacks is logged and skipped (conf/link.yaml serves every model)."""
    specs, elsewhere = block_splits.applicable(rules, link_cfg.split_large_blocks)
    if elsewhere:
        log.warning("link.split_large_blocks: this model has no prediction rule %s; not split", [s.rule for s in elsewhere])
    splits = block_splits.plan(rules, specs)
    missing = sorted({b for s in splits for b in s.by} - set(columns))
    if missing:
        raise ConfigError(f"link.split_large_blocks: the token tables lack columns {missing} to split blocks by")
    return block_splits.split_rules(rules, splits), splits


def split_blocks(
    df: DataFrame, rules: list[blocking.Rule], link_cfg: LinkConfig, scratch: Scratch
) -> tuple[DataFrame, list[blocking.Rule], list[block_splits.Split]]:
    """:func:`split_plan` with ``df`` given each split rule's block size and split key
    (:func:`natlink.linkage.block_splits.with_keys`: its large blocks materialised in ``scratch``)."""
    split, splits = split_plan(rules, link_cfg, df.columns)
    return block_splits.with_keys(df, splits, scratch), split, splits


def choose(link_cfg: LinkConfig, n_records: int) -> str:
    """``spark`` or ``in_process`` for a population of ``n_records`` under ``link_cfg.engine``."""
    if link_cfg.engine not in ENGINES:
        raise ConfigError(f"link engine must be one of {ENGINES}, not {link_cfg.engine!r}")
    if link_cfg.engine == "auto":
        return "in_process" if n_records <= link_cfg.in_process_max_records else "spark"
    return link_cfg.engine


def link(
    tokens: DataFrame,
    settings: dict[str, Any],
    link_cfg: LinkConfig,
    scratch: Scratch,
    *,
    extra: Sequence[str] = (),
    n_records: int | None = None,
    scheme: Any = None,
) -> LinkResult:
    """Score and cluster ``tokens`` (dataset, record_id, region, tk_*) with a trained model.

    ``scheme``: the block-salted encoding of the tables (:class:`natlink.tokens.salted.SaltedScheme`,
    checked against the model by :func:`natlink.linkage.salted_training.check_scheme`), or None.

    The engine comes from ``link_cfg`` (:func:`choose`); ``n_records`` saves a counting pass when
    the caller knows it (the manifests do). ``extra`` columns travel with the records. The result's
    frames live in ``scratch`` until it is released.
    """
    started = time.perf_counter()
    df = tokens if C.UNIQUE_ID in tokens.columns else with_unique_id(tokens)
    model = scoring.compile_model(settings)
    rules = blocking.rules_from_settings(settings, scheme)
    if scheme is None:
        check_input(df, settings)
    else:
        missing = sorted(set(needed_columns(model, rules)) - set(df.columns))
        if missing:
            raise ConfigError(f"the salted token tables lack columns {missing} that the model reads")
    if n_records is None and link_cfg.engine == "auto":
        n_records = df.count()
    if choose(link_cfg, n_records or 0) == "in_process":
        df, rules, splits = split_blocks(df, rules, link_cfg, scratch)
        sizes = [s.size_column for s in splits]
        result = link_in_process(df, settings, model, rules, link_cfg, scratch, extra=[*extra, *sizes], started=started)
        result.block_splits = block_splits.counts(df, splits)
    else:
        rules, splits = split_plan(rules, link_cfg, df.columns)
        records = prepare_records(df, model, rules, scratch, extra=extra, splits=splits)
        prepared = time.perf_counter() - started
        result = link_records(records, model, rules, link_cfg, scratch)
        result.timings = {"prepare": prepared, **result.timings}
        result.block_splits = block_splits.counts(records, splits)
    if splits:
        log.info("link: large blocks split: %s", block_splits.describe(result.block_splits))
    return result


def link_records(
    records: DataFrame, model: scoring.CompiledModel, rules: list[blocking.Rule], link_cfg: LinkConfig, scratch: Scratch
) -> LinkResult:
    """The Spark engine on records from :func:`prepare_records`: budget, predict, cluster."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    counts = blocking.check_budget(records, rules, link_cfg.max_comparisons_per_rule, cross_source=model.cross_source)
    timings["budget"] = time.perf_counter() - t

    t = time.perf_counter()
    edges = scratch.materialise(predict(records, model, rules, link_cfg.threshold_match_probability), "edges")
    n_edges = edges.count()
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    comps, split = constraints.components(
        edges, records, link_cfg.cannot_link, method=link_cfg.cluster_method, n_edges=n_edges, nhs_key=constraints.nhs_key(rules)
    )
    clusters = scratch.materialise(with_cluster_node(records.select(NODE, C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION), comps), "clusters")
    timings["cluster"] = time.perf_counter() - t
    log.info("link (spark): comparisons per rule %s, timings %s", counts, timings)
    return LinkResult(
        records=records, edges=edges, clusters=clusters, comparisons_per_rule=counts, timings=timings, engine="spark", n_edges=n_edges,
        cannot_link=split.as_dict(),
    )


def with_cluster_node(records: DataFrame, comps: DataFrame) -> DataFrame:
    """``records`` with the cluster each belongs to (a record without edges is its own cluster)."""
    return (
        records.join(comps.withColumnRenamed(clustering.COMPONENT, CLUSTER_NODE), on=NODE, how="left")
        .withColumn(CLUSTER_NODE, F.coalesce(F.col(CLUSTER_NODE), F.col(NODE)))
    )


def link_in_process(
    df: DataFrame,
    settings: dict[str, Any],
    model: scoring.CompiledModel,
    rules: list[blocking.Rule],
    link_cfg: LinkConfig,
    scratch: Scratch,
    *,
    extra: Sequence[str] = (),
    started: float | None = None,
) -> LinkResult:
    """The in-process engine (:mod:`natlink.linkage.inprocess`) on token records with a unique id."""
    started = time.perf_counter() if started is None else started
    spark = df.sparkSession
    needed = needed_columns(model, rules)
    slim = df.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, *extra, *compact_columns(df, needed)).toArrow()
    timings: dict[str, float] = {"prepare": time.perf_counter() - started}
    linked = inprocess.score_and_cluster(
        slim,
        settings,
        rules,
        columns=model.columns,
        threshold_match_weight=scoring.probability_to_weight(link_cfg.threshold_match_probability),
        max_comparisons_per_rule=link_cfg.max_comparisons_per_rule,
        spill_parent=local_dir(spark),
        timings=timings,
        cannot_link=link_cfg.cannot_link,
    )
    t = time.perf_counter()
    # One frame serves as records and clusters (the clusters' columns are a subset).
    passengers = linked.records.select([NODE, C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, *extra])
    records = scratch.from_arrow(passengers.append_column(CLUSTER_NODE, linked.cluster_node), "records")
    edges = scratch.from_arrow(linked.edges, "edges")
    timings["cluster"] += time.perf_counter() - t
    log.info("link (in process): comparisons per rule %s, timings %s", linked.comparisons_per_rule, timings)
    return LinkResult(
        records=records, edges=edges, clusters=records, comparisons_per_rule=linked.comparisons_per_rule, timings=timings,
        engine="in_process", n_edges=linked.edges.num_rows, cannot_link=linked.cannot_link,
    )
