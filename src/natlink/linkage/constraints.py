"""Clusters that do not chain: cannot-link rules, and splitting a component at its weakest edges.

Connected components make one person of everything a chain of edges reaches, so one wrong edge
joins two persons and, as a population grows, chains of them join many
(``benchmarks/bench_chaining.py``). Two rules (:class:`natlink.config.link.CannotLink`) name
records that are never one person:

* two records of a dataset that holds one row per person (``one_row_per_person``);
* two records whose NHS-number tokens are both present and different.

A component that breaks neither comes out exactly as connected components gave it. A component
that breaks one is split at its weakest edges (:func:`split_at_weakest_edges`): its edges are taken
strongest first (match weight descending, rounded to 1e-6 so the two engines' floating-point noise
cannot reorder them; ties by node ids) and joined with union-find; an edge whose two sides would
together break a rule is dropped. A part never holds two NHS tokens, so a part's state is one
token and a bit set of its one-row-per-person datasets. The same edges give the same parts, so
reruns give the same persons; each part is named by its smallest node id, as a component is.

Where it runs (:func:`components`): while connected components run on the driver (scipy), the
same pass collects each record's dataset code and NHS token (about 20 bytes a record) and finds and
splits the components that break a rule in numpy. When components run on Spark
(:func:`enforce`), one aggregation finds the components that break a rule and only their records
and edges go to the driver. Either way the split is a Python loop (a few seconds per million
edges). A component with more than ``max_component_edges`` edges is refused with
:class:`~natlink.errors.ComponentTooLargeError`, as is a total over the driver's bound for
connected components: never split partly, never dropped.

Counts (``LinkResult.cannot_link``, and the ``runs`` row's counts): components split, edges
dropped, records in the split components, persons added by the splits.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.link import CannotLink
from natlink.errors import ClusteringError, ComponentTooLargeError, ConfigError
from natlink.linkage import blocking, clustering

log = logging.getLogger(__name__)

NODE, COMPONENT = clustering.NODE, clustering.COMPONENT
SRC, DST = clustering.SRC, clustering.DST
WEIGHT = "match_weight"
CODE, NHS = "_cannot_link_dataset", "_cannot_link_nhs"
WEIGHT_DECIMALS = 6
MAX_DATASETS = 62  # one bit each in a part's int64 state


@dataclass(frozen=True)
class Rules:
    """The cannot-link rules a link applies: one-row-per-person datasets and the NHS token column."""

    datasets: tuple[str, ...]
    nhs_column: str | None
    max_component_edges: int
    driver_max_edges: int = clustering.DEFAULT_DRIVER_MAX_EDGES

    @classmethod
    def of(cls, cfg: CannotLink, columns: Sequence[str], nhs_key: str | None = None) -> "Rules | None":
        """The rules of ``cfg`` that records with ``columns`` allow (None: nothing to enforce).

        ``nhs_key``: the column that is equal exactly when two records' NHS numbers are (block-salted
        tables: the block key of the rule on the NHS number alone, :func:`nhs_key`); by default the
        NHS-number token.
        """
        if not cfg.enabled:
            return None
        nhs = nhs_key or C.token(C.NHS_NUMBER)
        nhs_column = nhs if cfg.nhs_number and nhs in columns else None
        if cfg.nhs_number and nhs_column is None:
            log.info("cannot-link: the records carry no %s, so the NHS-number rule does not apply", nhs)
        datasets = tuple(dict.fromkeys(cfg.one_row_per_person))
        if len(datasets) > MAX_DATASETS:
            raise ConfigError(f"cannot_link.one_row_per_person names {len(datasets)} datasets; at most {MAX_DATASETS}")
        if not datasets and nhs_column is None:
            return None
        return cls(datasets, nhs_column, cfg.max_component_edges)


def nhs_key(rules: Sequence[blocking.Rule]) -> str | None:
    """The column of the records ``rules`` block that stands for the NHS number: its token, or on
    block-salted tables the block key of the rule on the NHS number alone (equal exactly when the
    NHS numbers are; the salted comparison tokens are equal only within a block). None: no rule
    blocks on the NHS number alone, so :meth:`Rules.of` looks for the plain token."""
    return blocking.key_of(rules, C.token(C.NHS_NUMBER))


@dataclass(frozen=True)
class SplitCounts:
    components_split: int = 0
    edges_dropped: int = 0
    records_in_split_components: int = 0
    persons_added: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --- the split, on the driver ------------------------------------------------------------------


def split_at_weakest_edges(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, nodes: np.ndarray, code: np.ndarray, nhs: np.ndarray, has_nhs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Whole components' edges joined strongest first, refusing any join that breaks a rule.

    ``src``, ``dst``, ``weight``: the edges (node ids, match weight). ``nodes`` (sorted) holds
    every node of an edge, with ``code`` (0: no one-row-per-person dataset, k: the k-th) and its
    NHS token (``nhs`` where ``has_nhs``). Returns (the edges' nodes, sorted; each one's part, named
    by its smallest node id; the number of edges dropped).
    """
    ends, inverse = np.unique(np.concatenate([src, dst]).astype(np.int64), return_inverse=True)
    at = np.searchsorted(nodes, ends)
    if len(ends) and (at.max() >= len(nodes) or (nodes[at] != ends).any()):
        raise ClusteringError("cannot-link split: a record at the end of an edge has no dataset or NHS-token row")
    m = len(src)
    a, b = inverse[:m], inverse[m:]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((hi, lo, -np.round(np.asarray(weight, dtype=np.float64), WEIGHT_DECIMALS)))
    node_code = code[at].astype(np.int64)
    mask = np.where(node_code > 0, np.left_shift(np.int64(1), np.maximum(node_code - 1, 0)), 0).tolist()
    token = [int(v) if h else None for v, h in zip(nhs[at].tolist(), has_nhs[at].tolist())]
    n = len(ends)
    parent = list(range(n))
    size = [1] * n

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    dropped = 0
    for x, y in zip(lo[order].tolist(), hi[order].tolist()):
        # find(), inlined: the loop runs once per edge and a call costs as much as the rest.
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x == y:
            continue
        if mask[x] & mask[y] or (token[x] is not None and token[y] is not None and token[x] != token[y]):
            dropped += 1  # the parts only grow, so this edge stays between two parts
            continue
        if size[x] < size[y]:
            x, y = y, x
        parent[y] = x
        size[x] += size[y]
        mask[x] |= mask[y]
        if token[x] is None:
            token[x] = token[y]
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    # ends is sorted, so the smallest index of a part is its smallest node id.
    smallest = np.full(n, n, dtype=np.int64)
    np.minimum.at(smallest, roots, np.arange(n))
    return ends, ends[smallest[roots]], dropped


def violating(component: np.ndarray, code: np.ndarray, nhs: np.ndarray, has_nhs: np.ndarray) -> np.ndarray:
    """The components (sorted labels) that break a rule; the arrays hold one entry per node."""
    found = []
    for keep, value, breaks in ((code > 0, code, np.equal), (has_nhs, nhs, np.not_equal)):
        if not keep.any():
            continue
        c, v = component[keep], value[keep]
        order = np.lexsort((v, c))
        c, v = c[order], v[order]
        found.append(c[1:][(c[1:] == c[:-1]) & breaks(v[1:], v[:-1])])
    return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)


def split_components(
    rules: Rules, nodes: np.ndarray, component: np.ndarray, src: np.ndarray, dst: np.ndarray, weight: np.ndarray,
    code: np.ndarray, nhs: np.ndarray, has_nhs: np.ndarray,
) -> tuple[np.ndarray, SplitCounts]:
    """``component`` (one per node of the sorted ``nodes``) with each component that breaks a rule split.

    ``code``, ``nhs``, ``has_nhs``: per node of ``nodes``; the edges (``src``, ``dst``, ``weight``)
    are all edges of the components.
    """
    bad = violating(component, code, nhs, has_nhs)
    if not len(bad):
        return component, SplitCounts()
    edge_component = component[np.searchsorted(nodes, src)]
    in_bad = np.isin(edge_component, bad)
    _labels, per_component = np.unique(edge_component[in_bad], return_counts=True)
    refuse_if_too_large(rules, per_component)
    bad_nodes = np.isin(component, bad)
    ends, parts, dropped = split_at_weakest_edges(
        src[in_bad], dst[in_bad], weight[in_bad], nodes[bad_nodes], code[bad_nodes], nhs[bad_nodes], has_nhs[bad_nodes]
    )
    out = component.copy()
    out[np.searchsorted(nodes, ends)] = parts
    counts = SplitCounts(len(bad), dropped, int(bad_nodes.sum()), len(np.unique(parts)) - len(bad))
    log.info("cannot-link: %s", counts)
    return out, counts


def refuse_if_too_large(rules: Rules, edges_per_component: np.ndarray) -> None:
    """Components too large to split on the driver are refused by name (counts only)."""
    if not len(edges_per_component):
        return
    largest, total = int(edges_per_component.max()), int(edges_per_component.sum())
    if largest > rules.max_component_edges:
        raise ComponentTooLargeError(
            f"a component that breaks a cannot-link rule has {largest} edges, over cannot_link.max_component_edges "
            f"({rules.max_component_edges}); {len(edges_per_component)} components break a rule. Raise the bound "
            "(the split runs on the driver) or tighten the threshold or the blocking rules"
        )
    if total > rules.driver_max_edges:
        raise ComponentTooLargeError(
            f"{len(edges_per_component)} components that break a cannot-link rule hold {total} edges, over the "
            f"driver's bound of {rules.driver_max_edges}"
        )


# --- the two engines' inputs -------------------------------------------------------------------


def attributes(rules: Rules, table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dataset code, NHS token, has a token) per row of ``table`` (dataset and the NHS token column)."""
    n = table.num_rows
    code = np.zeros(n, dtype=np.int64)
    if rules.datasets:
        position = pc.index_in(table.column(C.DATASET), value_set=pa.array(rules.datasets, pa.string()))
        code = pc.fill_null(pc.add(position, 1), 0).to_numpy().astype(np.int64)
    nhs, has_nhs = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    if rules.nhs_column:
        column = table.column(rules.nhs_column)
        has_nhs = column.is_valid().to_numpy()
        nhs = pc.fill_null(column, 0).to_numpy().astype(np.int64)
    return code, nhs, has_nhs


def components(
    edges: DataFrame, records: DataFrame, cfg: CannotLink, *, method: str = "auto", n_edges: int | None = None,
    driver_max_edges: int = clustering.DEFAULT_DRIVER_MAX_EDGES, nhs_key: str | None = None,
) -> tuple[DataFrame, SplitCounts]:
    """(node_id, component) as :func:`natlink.linkage.clustering.components`, with every component
    that breaks a cannot-link rule of ``cfg`` split at its weakest edges.

    ``edges``: node_id_l, node_id_r, match_weight; ``records``: node_id, dataset and the compacted
    NHS token (at least every record of an edge; ``nhs_key`` as for :meth:`Rules.of`). ``method`` as
    for connected components: on the driver, components and split are one pass in numpy; on Spark,
    :func:`enforce` follows them.
    """
    rules = Rules.of(cfg, records.columns, nhs_key)
    if rules is None:
        return clustering.components(edges, method=method, driver_max_edges=driver_max_edges, n_edges=n_edges), SplitCounts()
    if method == "auto":
        n = edges.count() if n_edges is None else n_edges
        method = "driver" if n <= driver_max_edges else "spark"
    if method != "driver":
        return enforce(clustering.components(edges, method=method), edges, records, rules)
    spark = edges.sparkSession
    table = edges.select(F.col(SRC).cast("long"), F.col(DST).cast("long"), F.col(WEIGHT).cast("double")).toArrow()
    if table.num_rows == 0:
        return spark.createDataFrame([], f"{NODE} long, {COMPONENT} long"), SplitCounts()
    src, dst = table.column(SRC).to_numpy(), table.column(DST).to_numpy()
    nodes, component = clustering.label_components(src, dst)
    # Only records with an attribute: the others can break no rule (code 0, no token).
    attrs = _attributes(records, rules).where((F.col(CODE) > 0) | F.col(NHS).isNotNull()).toArrow().sort_by(NODE)
    code, nhs, has_nhs = _lookup(attrs, nodes)
    component, counts = split_components(rules, nodes, component, src, dst, table.column(WEIGHT).to_numpy(), code, nhs, has_nhs)
    return spark.createDataFrame(pa.table({NODE: pa.array(nodes, pa.int64()), COMPONENT: pa.array(component, pa.int64())})), counts


def _lookup(attrs: pa.Table, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dataset code, NHS token, has a token) of each of ``nodes`` from ``attrs`` (node_id-sorted;
    a node without a row has neither)."""
    code, nhs, has_nhs = np.zeros(len(nodes), np.int64), np.zeros(len(nodes), np.int64), np.zeros(len(nodes), bool)
    have = attrs.column(NODE).to_numpy()
    if len(have):
        at = np.minimum(np.searchsorted(have, nodes), len(have) - 1)
        found = have[at] == nodes
        rows = at[found]
        code[found] = attrs.column(CODE).to_numpy()[rows]
        has_nhs[found] = attrs.column(NHS).is_valid().to_numpy()[rows]
        nhs[found] = pc.fill_null(attrs.column(NHS), 0).to_numpy()[rows]
    return code, nhs, has_nhs


def _attributes(records: DataFrame, rules: Rules) -> DataFrame:
    """node_id, dataset code (0: none; k: the k-th one-row-per-person dataset), NHS token (long)."""
    nhs = F.col(rules.nhs_column).cast("long") if rules.nhs_column else F.lit(None).cast("long")
    if rules.datasets:
        code = F.coalesce(F.array_position(F.array(*[F.lit(d) for d in rules.datasets]), F.col(C.DATASET)), F.lit(0))
    else:
        code = F.lit(0)
    return records.select(NODE, code.cast("int").alias(CODE), nhs.alias(NHS))


def enforce(comps: DataFrame, edges: DataFrame, records: DataFrame, rules: Rules | None) -> tuple[DataFrame, SplitCounts]:
    """Spark: ``comps`` (node_id, component) with every component that breaks a rule split.

    ``edges``: node_id_l, node_id_r, match_weight; ``records``: node_id, dataset and (when the
    rules use it) the compacted NHS token. One aggregation finds the components that break a rule;
    only their records and edges are collected and split on the driver.
    """
    if rules is None:
        return comps, SplitCounts()
    spark = comps.sparkSession
    labelled = comps.join(_attributes(records, rules), on=NODE, how="inner")
    aggs, breaks = [F.count(F.lit(1)).alias("_records")], []
    for k in range(1, len(rules.datasets) + 1):
        aggs.append(F.sum((F.col(CODE) == k).cast("int")).alias(f"_d{k}"))
        breaks.append(F.col(f"_d{k}") > 1)
    if rules.nhs_column:
        aggs += [F.min(NHS).alias("_lo"), F.max(NHS).alias("_hi")]
        breaks.append(F.col("_lo") < F.col("_hi"))
    bad = labelled.groupBy(COMPONENT).agg(*aggs).where(reduce(lambda a, b: a | b, breaks)).select(COMPONENT, "_records").toArrow()
    if bad.num_rows == 0:
        return comps, SplitCounts()
    # Records bound the edges from below (a component of n records has at least n - 1 edges).
    refuse_if_too_large(rules, bad.column("_records").to_numpy() - 1)
    bad_df = spark.createDataFrame(bad.select([COMPONENT]))
    nodes = labelled.join(F.broadcast(bad_df), on=COMPONENT, how="inner").select(NODE, COMPONENT, CODE, NHS).toArrow().sort_by(NODE)
    node_df = spark.createDataFrame(nodes.select([NODE, COMPONENT]))
    bad_edges = edges.select(SRC, DST, WEIGHT).join(F.broadcast(node_df.withColumnRenamed(NODE, SRC)), on=SRC, how="inner")
    # Counted before anything is collected: the driver takes only what it may split.
    per_component = bad_edges.groupBy(COMPONENT).agg(F.count(F.lit(1)).alias("n")).toArrow()
    refuse_if_too_large(rules, per_component.column("n").to_numpy())
    got = bad_edges.select(SRC, DST, WEIGHT).toArrow()
    node_ids = nodes.column(NODE).to_numpy()
    attrs = _lookup(nodes, node_ids)
    ends, parts, dropped = split_at_weakest_edges(got.column(SRC).to_numpy(), got.column(DST).to_numpy(), got.column(WEIGHT).to_numpy(), node_ids, *attrs)
    counts = SplitCounts(bad.num_rows, dropped, nodes.num_rows, len(np.unique(parts)) - bad.num_rows)
    log.info("cannot-link: %s", counts)
    new = spark.createDataFrame(pa.table({NODE: pa.array(ends, pa.int64()), "_part": pa.array(parts, pa.int64())}))
    split = comps.join(new, on=NODE, how="left").select(NODE, F.coalesce(F.col("_part"), F.col(COMPONENT)).alias(COMPONENT))
    return split, counts
