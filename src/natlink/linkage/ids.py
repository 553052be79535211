"""Stable person ids across runs, with every merge, split, new and retired id recorded.

Each run's clusters are matched to the previous run's person ids by record overlap:

* a cluster and a previous id are paired when each is the other's best choice (most shared
  records; ties broken by id, then by the cluster's smallest member), repeated over the
  still-unpaired ones for a few rounds (a greedy maximum-overlap matching);
* a paired cluster keeps the previous id. If it also holds records of other previous ids that
  were not paired elsewhere, those ids merged into it: one ``merge`` event (old ids -> kept id);
* an unpaired cluster gets a new id minted from (run id, smallest member): ``split`` when it
  holds records of previous ids (they were paired elsewhere), ``new`` when all its records are new;
* a previous id with no records left is ``retire``d.

Only record sets matter, never row order, so shuffled input gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from natlink import columns as C

PREV = "prev_person_id"
CLUSTER_NODE = C.CLUSTER_NODE
EVENT_SCHEMA = T.StructType(
    [
        T.StructField(C.RUN_ID, T.StringType(), False),
        T.StructField("event", T.StringType(), False),
        T.StructField("old_ids", T.ArrayType(T.StringType(), False), False),
        T.StructField("new_id", T.StringType(), True),
        T.StructField("records", T.LongType(), False),
        T.StructField(C.REASON, T.StringType(), False),
    ]
)


@dataclass
class IdAssignment:
    assigned: DataFrame  # unique_id, person_id (one row per current record)
    events: DataFrame  # EVENT_SCHEMA


def _whole(partition: list[str]) -> Window:
    return Window.partitionBy(*partition).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)


def assign(current: DataFrame, previous: DataFrame | None, run_id: str, *, rounds: int = 6, record_new_events: bool | None = None) -> IdAssignment:
    """``current``: unique_id, cluster_node. ``previous``: unique_id, person_id (None on a first run)."""
    spark = current.sparkSession
    clusters = current.select(C.UNIQUE_ID, CLUSTER_NODE).withColumn(
        "cluster_key", F.min(C.UNIQUE_ID).over(_whole([CLUSTER_NODE]))
    ).withColumn("cluster_size", F.count(F.lit(1)).over(_whole([CLUSTER_NODE])))
    if previous is None:
        assigned = clusters.select(C.UNIQUE_ID, mint_person_id(F.lit(run_id), F.col("cluster_key")).alias(C.PERSON_ID))
        return IdAssignment(assigned, spark.createDataFrame([], EVENT_SCHEMA))
    # Read three times below (overlap, cluster ids, assignment): computed once.
    clusters = clusters.localCheckpoint()
    if record_new_events is None:
        record_new_events = True
    prev = previous.select(C.UNIQUE_ID, F.col(C.PERSON_ID).alias(PREV))

    overlap = (
        clusters.join(prev, on=C.UNIQUE_ID, how="inner")
        .groupBy("cluster_key", PREV)
        .agg(F.count(F.lit(1)).alias("overlap"))
        .localCheckpoint()
    )
    pairs = spark.createDataFrame([], "cluster_key string, prev_person_id string")
    remaining = overlap
    for _ in range(rounds):
        by_cluster = Window.partitionBy("cluster_key").orderBy(F.desc("overlap"), F.asc(PREV))
        by_prev = Window.partitionBy(PREV).orderBy(F.desc("overlap"), F.asc("cluster_key"))
        mutual = (
            remaining.withColumn("_c", F.row_number().over(by_cluster))
            .withColumn("_p", F.row_number().over(by_prev))
            .where((F.col("_c") == 1) & (F.col("_p") == 1))
            .select("cluster_key", PREV)
            .localCheckpoint()
        )
        if mutual.isEmpty():
            break
        pairs = pairs.unionByName(mutual).localCheckpoint()
        remaining = (
            remaining.join(mutual.select("cluster_key"), on="cluster_key", how="left_anti")
            .join(mutual.select(PREV), on=PREV, how="left_anti")
            .localCheckpoint()
        )
        if remaining.isEmpty():
            break

    cluster_ids = (
        clusters.select("cluster_key", "cluster_size")
        .dropDuplicates(["cluster_key"])
        .join(pairs, on="cluster_key", how="left")
        .withColumn(
            C.PERSON_ID, F.coalesce(F.col(PREV), mint_person_id(F.lit(run_id), F.col("cluster_key")))
        )
        .localCheckpoint()
    )
    assigned = clusters.join(cluster_ids.select("cluster_key", C.PERSON_ID), on="cluster_key", how="inner").select(
        C.UNIQUE_ID, C.PERSON_ID
    )
    events = _events(cluster_ids, overlap, pairs, prev, run_id, record_new_events)
    return IdAssignment(assigned, events)


def _events(cluster_ids: DataFrame, overlap: DataFrame, pairs: DataFrame, prev: DataFrame, run_id: str, record_new: bool) -> DataFrame:
    paired_prev = pairs.select(PREV).withColumn("_paired", F.lit(True))
    touched = overlap.join(paired_prev, on=PREV, how="left").withColumn("_paired", F.coalesce("_paired", F.lit(False)))
    # Per cluster: previous ids it holds that were not paired anywhere (merged into it) and
    # previous ids it holds at all (for splits).
    per_cluster = touched.groupBy("cluster_key").agg(
        F.sort_array(F.collect_set(F.when(~F.col("_paired"), F.col(PREV)))).alias("merged_in"),
        F.sort_array(F.collect_set(PREV)).alias("held"),
        F.max(F.when(~F.col("_paired"), F.col("overlap"))).alias("_merged_overlap"),
    )
    # Read by each event kind below: computed once.
    c = cluster_ids.join(per_cluster, on="cluster_key", how="left").localCheckpoint()
    is_paired = F.col(PREV).isNotNull()
    merged = F.coalesce(F.col("merged_in"), F.array().cast("array<string>"))
    held = F.coalesce(F.col("held"), F.array().cast("array<string>"))
    merge = c.where(is_paired & (F.size(merged) > 0)).select(
        F.lit("merge").alias("event"),
        F.array_sort(F.array_union(F.array(F.col(PREV)), merged)).alias("old_ids"),
        F.col(C.PERSON_ID).alias("new_id"),
        F.col("cluster_size").cast("long").alias("records"),
        F.concat(F.lit("merged "), (F.size(merged) + 1).cast("string"), F.lit(" previous persons; kept the id with the largest overlap")).alias(C.REASON),
    )
    split = c.where(~is_paired & (F.size(held) > 0)).select(
        F.lit("split").alias("event"),
        held.alias("old_ids"),
        F.col(C.PERSON_ID).alias("new_id"),
        F.col("cluster_size").cast("long").alias("records"),
        F.lit("records split from previous person(s) whose id stayed with a larger part").alias(C.REASON),
    )
    parts = [merge, split]
    if record_new:
        parts.append(
            c.where(~is_paired & (F.size(held) == 0)).select(
                F.lit("new").alias("event"),
                F.array().cast("array<string>").alias("old_ids"),
                F.col(C.PERSON_ID).alias("new_id"),
                F.col("cluster_size").cast("long").alias("records"),
                F.lit("cluster of records not seen in the previous run").alias(C.REASON),
            )
        )
    gone = prev.select(PREV).distinct().join(overlap.select(PREV).distinct(), on=PREV, how="left_anti")
    parts.append(
        gone.select(
            F.lit("retire").alias("event"),
            F.array(F.col(PREV)).alias("old_ids"),
            F.lit(None).cast("string").alias("new_id"),
            F.lit(0).cast("long").alias("records"),
            F.lit("no records of this person remain").alias(C.REASON),
        )
    )
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out.select(F.lit(run_id).alias(C.RUN_ID), "event", "old_ids", "new_id", "records", C.REASON)


def assign_initial_person_ids(clusters: DataFrame, run_id: str) -> DataFrame:
    """Person ids for a first run: minted from the run id and the cluster's smallest unique id."""
    w = Window.partitionBy(CLUSTER_NODE).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return clusters.withColumn(C.PERSON_ID, mint_person_id(F.lit(run_id), F.min(C.UNIQUE_ID).over(w)))


def mint_person_id(run_id: "F.Column", smallest_member: "F.Column") -> "F.Column":
    """A new person id: deterministic in (run id, smallest member), 80 bits, never reused."""
    return F.concat(F.lit("NLP"), F.upper(F.substring(F.sha2(F.concat_ws("|", F.lit("person"), run_id, smallest_member), 256), 1, 20)))
