"""Connected components of the match graph: every record gets the smallest node id of its component.

Two engines with identical output (a test checks they agree):
* ``spark`` - iterative min-label propagation with pointer jumping, lineage cut every round; runs
  at any scale on a cluster.
* ``driver`` - the edge list (two int64 columns, via Arrow) is collected to the driver and solved
  with ``scipy.sparse.csgraph``; bounded by ``driver_max_edges`` (16 bytes an edge) and much
  faster while the edges fit.
``auto`` picks ``driver`` when the edge count is within the bound, else ``spark``.
"""

from __future__ import annotations

import logging

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from natlink import columns as C
from natlink.errors import ClusteringError, ConfigError

log = logging.getLogger(__name__)

NODE, COMPONENT = C.NODE_ID, "component"
SRC, DST = f"{NODE}_l", f"{NODE}_r"
DEFAULT_DRIVER_MAX_EDGES = 50_000_000


def components(
    edges: DataFrame, *, method: str = "auto", driver_max_edges: int = DEFAULT_DRIVER_MAX_EDGES, max_rounds: int = 60, n_edges: int | None = None
) -> DataFrame:
    """(node_id, component) for every node that has at least one edge; component = min node id."""
    edges = edges.select(F.col(SRC).cast("long"), F.col(DST).cast("long"))
    if method == "auto":
        n = edges.count() if n_edges is None else n_edges
        method = "driver" if n <= driver_max_edges else "spark"
        log.info("clustering %d edges with the %s engine", n, method)
    if method == "driver":
        return _driver_components(edges)
    if method == "spark":
        return _spark_components(edges, max_rounds=max_rounds)
    raise ConfigError(f"clustering method must be auto, driver or spark, not {method!r}")


def _driver_components(edges: DataFrame) -> DataFrame:
    import pyarrow as pa

    spark = edges.sparkSession
    table = edges.toArrow()
    if table.num_rows == 0:
        return spark.createDataFrame([], f"{NODE} long, {COMPONENT} long")
    nodes, component = label_components(table.column(SRC).to_numpy(), table.column(DST).to_numpy())
    return spark.createDataFrame(pa.table({NODE: pa.array(nodes, pa.int64()), COMPONENT: pa.array(component, pa.int64())}))


def label_components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, component) for the nodes of an edge list held in memory; component = min node id."""
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(nodes)
    if n == 0:
        return nodes.astype(np.int64), nodes.astype(np.int64)
    a, b = inverse[: len(src)], inverse[len(src):]
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _count, labels = connected_components(graph, directed=False)
    # nodes is sorted, so the first index of each label is its smallest node id.
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    return nodes, nodes[smallest[labels]]


def _spark_components(edges: DataFrame, *, max_rounds: int) -> DataFrame:
    both = edges.unionByName(edges.select(F.col(DST).alias(SRC), F.col(SRC).alias(DST))).cache()
    labels = both.groupBy(F.col(SRC).alias(NODE)).agg(F.least(F.min(DST), F.first(SRC)).alias(COMPONENT))
    labels = labels.localCheckpoint()
    for round_no in range(1, max_rounds + 1):
        # Every node takes the smallest label among its neighbours and itself ...
        neighbour = (
            both.join(labels.select(F.col(NODE).alias(DST), F.col(COMPONENT).alias("_nl")), on=DST, how="inner")
            .groupBy(F.col(SRC).alias(NODE))
            .agg(F.min("_nl").alias("_best"))
        )
        step = labels.join(neighbour, on=NODE, how="left").select(
            NODE, F.least(F.col(COMPONENT), F.coalesce("_best", COMPONENT)).alias(COMPONENT)
        )
        # ... then jumps to its label's label, which halves chain lengths each round.
        jumped = (
            step.alias("s")
            .join(step.select(F.col(NODE).alias("_lbl"), F.col(COMPONENT).alias("_jump")).alias("j"), F.col("s.component") == F.col("j._lbl"), how="left")
            .select(F.col(f"s.{NODE}").alias(NODE), F.least(F.col(f"s.{COMPONENT}"), F.coalesce(F.col("_jump"), F.col(f"s.{COMPONENT}"))).alias(COMPONENT))
            .localCheckpoint()
        )
        changed = jumped.alias("a").join(labels.alias("b"), on=NODE).where(F.col(f"a.{COMPONENT}") != F.col(f"b.{COMPONENT}")).count()
        labels = jumped
        log.debug("connected components round %d: %d labels changed", round_no, changed)
        if changed == 0:
            both.unpersist()
            return labels
    both.unpersist()
    raise ClusteringError(f"connected components did not converge in {max_rounds} rounds; raise max_rounds or use the driver method")
