"""Accuracy of a clustering against known truth: pairwise precision, recall and F1.

Pairs are counted from group sizes (n choose 2), never enumerated, so evaluation scales with
records rather than with pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.link import LinkConfig
from natlink.errors import ConfigError, ReconciliationError
from natlink.linkage import blocking, clustering, constraints, engine, model_store, salted_training
from natlink.spark.scratch import Scratch
from natlink.tokens.reader import as_manifests, load_tokens


@dataclass(frozen=True)
class PairwiseMetrics:
    precision: float
    recall: float
    f1: float
    true_positive_pairs: int
    predicted_pairs: int
    true_pairs: int
    records: int

    def as_dict(self) -> dict:
        return asdict(self)


def _pairs(count_col: str) -> F.Column:
    n = F.col(count_col).cast("long")
    return F.coalesce(F.sum(n * (n - 1) / 2), F.lit(0)).cast("long")


def pairwise(clusters: DataFrame, truth: DataFrame, *, predicted: str = C.PERSON_ID, actual: str = C.TRUE_PERSON_ID) -> PairwiseMetrics:
    """Within-cluster pairwise metrics; every clustered record must have a truth row."""
    keys = [C.DATASET, C.RECORD_ID]
    joined = clusters.select(*keys, predicted).join(truth.select(*keys, actual), on=keys, how="left")
    groups = joined.groupBy(predicted, actual).agg(F.count(F.lit(1)).alias("n")).cache()
    try:
        summary = groups.agg(
            F.sum("n").alias("records"),
            F.sum(F.when(F.col(actual).isNull(), F.col("n")).otherwise(0)).alias("without_truth"),
            _pairs("n").alias("tp"),
        ).first()
        if summary["without_truth"]:
            raise ReconciliationError(f"{summary['without_truth']} clustered records have no row in the truth table")
        predicted_pairs = groups.groupBy(predicted).agg(F.sum("n").alias("k")).agg(_pairs("k")).first()[0]
        true_pairs = groups.groupBy(actual).agg(F.sum("n").alias("k")).agg(_pairs("k")).first()[0]
    finally:
        groups.unpersist()
    tp = int(summary["tp"])
    precision = tp / predicted_pairs if predicted_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairwiseMetrics(precision, recall, f1, tp, int(predicted_pairs), int(true_pairs), int(summary["records"]))


@dataclass(frozen=True)
class ClusterMetrics:
    """Cluster-level accuracy: a predicted cluster is correct when it equals a true cluster exactly."""

    precision: float  # exact clusters / predicted clusters
    recall: float  # exact clusters / true clusters
    f1: float
    exact_clusters: int
    predicted_clusters: int
    true_clusters: int

    def as_dict(self) -> dict:
        return asdict(self)


def cluster_level(clusters: DataFrame, truth: DataFrame, *, predicted: str = C.PERSON_ID, actual: str = C.TRUE_PERSON_ID) -> ClusterMetrics:
    keys = [C.DATASET, C.RECORD_ID]
    joined = clusters.select(*keys, predicted).join(truth.select(*keys, actual), on=keys, how="inner")
    sizes_p = joined.groupBy(predicted).agg(F.count(F.lit(1)).alias("np"))
    sizes_t = joined.groupBy(actual).agg(F.count(F.lit(1)).alias("nt"))
    overlap = joined.groupBy(predicted, actual).agg(F.count(F.lit(1)).alias("n"))
    exact = (
        overlap.join(sizes_p, on=predicted).join(sizes_t, on=actual)
        .where((F.col("n") == F.col("np")) & (F.col("n") == F.col("nt")))
        .count()
    )
    n_pred, n_true = sizes_p.count(), sizes_t.count()
    precision = exact / n_pred if n_pred else 1.0
    recall = exact / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClusterMetrics(precision, recall, f1, exact, n_pred, n_true)


def nhs_pseudo_truth(tokens: DataFrame, nhs_key: str | None = None) -> DataFrame:
    """Where no truth exists: records sharing an NHS number token are taken to be one person.

    Only records with an NHS number token are kept, so metrics against this pseudo-truth
    describe that subset (and inherit its errors: wrong or shared NHS numbers). ``nhs_key``: the
    column equal exactly when NHS numbers are (block-salted tables:
    :func:`natlink.linkage.constraints.nhs_key`); by default the NHS-number token.
    """
    column = nhs_key or C.token(C.NHS_NUMBER)
    if column not in tokens.columns:
        raise ConfigError(f"no truth given and the token tables carry no {column} for NHS-number pseudo-truth")
    return tokens.where(F.col(column).isNotNull()).select(C.DATASET, C.RECORD_ID, F.col(column).alias(C.TRUE_PERSON_ID))


def within_clusters(edges: DataFrame, labels: DataFrame, label: str) -> DataFrame:
    """The ``edges`` (node_id_l, node_id_r, ...) whose two records share ``label`` in ``labels`` (node_id, label).

    Clustering these at any threshold at or above the link's gives what the link's cannot-link
    split would give there: the split takes edges strongest first and drops an edge only when the
    stronger edges already joined its two sides to records it may not join, so every edge it
    dropped (one between two of the link's clusters) is dropped at a higher threshold too, and an
    edge within a cluster is kept or joins nothing new. Without cannot-link rules no edge at or
    above the link's threshold crosses two clusters, so nothing is removed.
    """
    left = labels.select(F.col(C.NODE_ID).alias(f"{C.NODE_ID}_l"), F.col(label).alias("_label_l"))
    right = labels.select(F.col(C.NODE_ID).alias(f"{C.NODE_ID}_r"), F.col(label).alias("_label_r"))
    return (
        edges.join(left, on=f"{C.NODE_ID}_l", how="inner")
        .join(right, on=f"{C.NODE_ID}_r", how="inner")
        .where(F.col("_label_l") == F.col("_label_r"))
        .drop("_label_l", "_label_r")
    )


def threshold_sweep(records: DataFrame, edges: DataFrame, truth: DataFrame, thresholds: list[float]) -> list[dict]:
    """Pairwise and cluster-level metrics when clustering ``edges`` at each threshold.

    ``records``: node_id, dataset, record_id; ``edges``: node_id_l, node_id_r, match_probability
    (scored at or below the smallest threshold).
    """
    rows = []
    for threshold in sorted(thresholds):
        kept = edges.where(F.col("match_probability") >= threshold)
        comps = clustering.components(kept)
        clusters = (
            records.select(C.NODE_ID, C.DATASET, C.RECORD_ID)
            .join(comps, on=C.NODE_ID, how="left")
            .select(C.DATASET, C.RECORD_ID, F.coalesce(clustering.COMPONENT, C.NODE_ID).cast("string").alias(C.PERSON_ID))
            .cache()
        )
        # Judge only records that have a truth row (pseudo-truth covers a subset).
        judged = clusters.join(truth.select(C.DATASET, C.RECORD_ID), on=[C.DATASET, C.RECORD_ID], how="left_semi")
        pw = pairwise(judged, truth)
        cl = cluster_level(judged, truth)
        clusters.unpersist()
        rows.append({"threshold": threshold, **{f"pair_{k}": v for k, v in pw.as_dict().items()}, **{f"cluster_{k}": v for k, v in cl.as_dict().items()}})
    return rows


def sweep_job(spark, *, manifests: list, model_path, link_cfg: LinkConfig, truth: DataFrame | None = None) -> list[dict]:
    """Predict once at the lowest of ``link_cfg.evaluation_thresholds``, then cluster and judge at every one.

    Against ``truth`` (dataset, record_id, true_person_id) when given, else against NHS-number
    agreement as pseudo-truth. Scores through the same engine dispatch as ``natlink link``.
    """
    thresholds = list(link_cfg.evaluation_thresholds)
    loaded = as_manifests(manifests)
    tokens, fingerprint = load_tokens(spark, loaded)
    settings, _meta = model_store.load(model_path, key_fingerprint=fingerprint)
    scheme = salted_training.check_scheme(loaded, settings)
    # Linked once at the lowest threshold, with the link's cannot-link rules; the clusters at every
    # higher threshold come from the edges within those clusters (:func:`within_clusters`).
    lowest = link_cfg.model_copy(update={"threshold_match_probability": min(thresholds)})
    with Scratch(spark) as scratch:
        result = engine.link(tokens, settings, lowest, scratch, scheme=scheme)
        nhs_key = constraints.nhs_key(blocking.rules_from_settings(settings, scheme))
        judge = truth if truth is not None else nhs_pseudo_truth(tokens, nhs_key)
        edges = within_clusters(
            result.edges.select(f"{engine.NODE}_l", f"{engine.NODE}_r", "match_probability"), result.clusters, engine.CLUSTER_NODE
        )
        return threshold_sweep(result.records, edges, judge, thresholds)
