"""The in-process engine: a population that fits on the driver is scored and clustered there.

Spark pays a fixed cost for every job and stage. On a small population that cost is most of a
link: at 100k records natlink's Spark path took 18 s to predict and cluster where Splink's DuckDB
backend took 1 s (``benchmarks/bench_link.py``). So, while a population has at most
``link.in_process_max_records`` records, natlink collects its records to the driver as Arrow (the
pseudonymous tokens the model reads, compacted to 64-bit integers, and nothing else) and:

* counts comparisons per blocking rule and applies the budget (as :func:`natlink.linkage.blocking.check_budget`);
* predicts with the same trained model on Splink's DuckDB backend, in memory, at the same
  threshold; term frequencies come from the same population, as on Spark; a ``link_only`` model
  compares records of different datasets only, by Splink's own ``link_only`` with the ``dataset``
  column as its source dataset column (and the budget counts only those pairs);
* finds connected components with scipy (:func:`natlink.linkage.clustering.label_components`) and
  splits those that break a cannot-link rule (:func:`natlink.linkage.constraints.split_components`).

Results go back to Spark as DataFrames, so id mapping and the Delta writes do not change. Nothing
is written outside the process except DuckDB's spill files, which go to a private temporary
directory (under ``spark.local.dir`` when set) removed when the link ends. Above the bound, or with
``engine: spark``, everything runs on Spark, as it must at national scale.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from natlink.linkage import blocking
from natlink.config.link import CannotLink
from natlink.linkage import clustering
from natlink.linkage import constraints
from natlink.linkage.settings import cross_source, for_splink
from natlink import columns as C

log = logging.getLogger(__name__)

NODE = C.NODE_ID
_RECORDS = "natlink_records"
EDGE_SCHEMA = pa.schema(
    [
        (f"{NODE}_l", pa.int64()),
        (f"{NODE}_r", pa.int64()),
        (f"{C.UNIQUE_ID}_l", pa.string()),
        (f"{C.UNIQUE_ID}_r", pa.string()),
        ("match_key", pa.int32()),
        ("match_weight", pa.float64()),
        ("match_probability", pa.float64()),
    ]
)


@dataclass
class Linked:
    records: pa.Table  # node_id (0..n-1 in unique-id order), unique_id, the columns given
    edges: pa.Table  # EDGE_SCHEMA, node_id_l < node_id_r
    cluster_node: pa.Array  # per record (records' order): the smallest node id of its cluster
    comparisons_per_rule: list[int]
    cannot_link: dict[str, int] = field(default_factory=dict)  # constraints.SplitCounts


class Engine:
    """One DuckDB connection in memory; spill files in a private directory, removed on close."""

    def __init__(self, *, spill_parent: str | None = None):
        import duckdb

        self._spill = tempfile.mkdtemp(prefix="natlink-duckdb-", dir=spill_parent)
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET temp_directory = '" + self._spill.replace("'", "''") + "'")

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, slim: pa.Table) -> pa.Table:
        """The records in unique-id order with ``node_id`` 0..n-1 (as on Spark, ids follow that order)."""
        self.con.register("_natlink_slim", slim)
        self.con.execute(
            f"CREATE OR REPLACE TABLE {_RECORDS} AS SELECT (row_number() OVER (ORDER BY {C.UNIQUE_ID}) - 1)::BIGINT AS {NODE}, * "
            f"FROM _natlink_slim ORDER BY {C.UNIQUE_ID}"
        )
        self.con.unregister("_natlink_slim")
        return self.con.table(_RECORDS).to_arrow_table()

    def count_comparisons(self, rules: Sequence[blocking.Rule], *, cross_source: bool = False) -> list[int]:
        """Pairs per rule (sum over key groups of n choose 2; ``cross_source``: of pairs across its
        datasets), as :func:`natlink.linkage.blocking.count_comparisons`."""
        counts = []
        for rule in rules:
            present = " AND ".join(f"{k} IS NOT NULL" for k in rule.keys)
            keys = ", ".join(rule.keys)
            if cross_source:
                sql = (
                    f"SELECT coalesce(sum((n * n - sq) // 2), 0) FROM (SELECT sum(n)::BIGINT AS n, sum(n * n)::BIGINT AS sq FROM "
                    f"(SELECT {keys}, count(*)::BIGINT AS n FROM {_RECORDS} WHERE {present} GROUP BY {keys}, {C.DATASET}) GROUP BY {keys})"
                )
            else:
                sql = f"SELECT coalesce(sum(n * (n - 1) // 2), 0) FROM (SELECT count(*)::BIGINT AS n FROM {_RECORDS} WHERE {present} GROUP BY {keys})"
            counts.append(int(self.con.execute(sql).fetchall()[0][0]))
        return counts

    def predict(
        self, settings: dict[str, Any], threshold_match_weight: float, columns: Sequence[str], rules: Sequence[blocking.Rule] = ()
    ) -> pa.Table:
        """Pairs at or above the threshold, scored by Splink's DuckDB backend with the trained model.

        With rules that map the model's columns (block-salted tables), each rule is predicted on
        its own view (its block key, its salted columns under the model's names), excluding pairs
        an earlier rule's block key already joined, exactly as on Spark. Splink gets ``settings``
        as :func:`natlink.linkage.settings.for_splink` gives them (a ``link_only`` model reads the
        ``dataset`` column).
        """
        settings = for_splink(settings)
        ids = [C.UNIQUE_ID, *([C.DATASET] if cross_source(settings) else [])]
        if not any(r.columns or r.blocks_on for r in rules):
            # The rules' keys too: a rule may block on a column no comparison reads. (A split rule,
            # blocks_on set, blocks on a key Splink's settings do not name: predicted rule by rule.)
            keys = [k for r in rules for k in r.keys]
            return self._predict_view(settings, threshold_match_weight, [*ids, *dict.fromkeys([*columns, *keys])], None)
        parts = []
        for i, rule in enumerate(rules):
            selected = [*ids, *[f"{rule.column(c)} AS {c}" for c in columns], *dict.fromkeys(k for r in rules[: i + 1] for k in r.keys)]
            sql = rule.sql + "".join(f" AND NOT coalesce({earlier.sql}, false)" for earlier in rules[:i])
            rule_settings = {**settings, "blocking_rules_to_generate_predictions": [sql]}
            parts.append(self._predict_view(rule_settings, threshold_match_weight, selected, i))
        return pa.concat_tables(parts)

    def _predict_view(self, settings: dict[str, Any], threshold_match_weight: float, selected: Sequence[str], match_key: int | None) -> pa.Table:
        from splink import DuckDBAPI, Linker

        db = DuckDBAPI(connection=self.con)
        self.con.execute(f"CREATE OR REPLACE VIEW natlink_inputs AS SELECT {', '.join(selected)} FROM {_RECORDS}")
        linker = Linker(db.register("natlink_inputs"), settings, log_level=logging.ERROR)
        pred = linker.inference.predict(threshold_match_weight=threshold_match_weight)
        key = "p.match_key" if match_key is None else str(match_key)
        # Splink orders a link_only pair by its source dataset and unique id joined: put the
        # smaller node id on the left, as everywhere in natlink.
        first = f"l.{NODE} < r.{NODE}"
        sql = (
            f"SELECT least(l.{NODE}, r.{NODE}) AS {NODE}_l, greatest(l.{NODE}, r.{NODE}) AS {NODE}_r, "
            f"CASE WHEN {first} THEN p.{C.UNIQUE_ID}_l ELSE p.{C.UNIQUE_ID}_r END AS {C.UNIQUE_ID}_l, "
            f"CASE WHEN {first} THEN p.{C.UNIQUE_ID}_r ELSE p.{C.UNIQUE_ID}_l END AS {C.UNIQUE_ID}_r, "
            f"CAST({key} AS INTEGER) AS match_key, CAST(p.match_weight AS DOUBLE) AS match_weight, "
            f"CAST(p.match_probability AS DOUBLE) AS match_probability "
            f"FROM {pred.physical_name} p JOIN {_RECORDS} l ON l.{C.UNIQUE_ID} = p.{C.UNIQUE_ID}_l "
            f"JOIN {_RECORDS} r ON r.{C.UNIQUE_ID} = p.{C.UNIQUE_ID}_r"
        )
        result = self.con.sql(sql).to_arrow_table()
        pred.drop_table_from_database_and_remove_from_cache()
        return result.cast(EDGE_SCHEMA)


def score_and_cluster(
    slim: pa.Table,
    settings: dict[str, Any],
    rules: Sequence[blocking.Rule],
    *,
    columns: Sequence[str],
    threshold_match_weight: float,
    max_comparisons_per_rule: float,
    spill_parent: str | None = None,
    timings: dict[str, float] | None = None,
    cannot_link: CannotLink | None = None,
) -> Linked:
    """Budget, predict and cluster ``slim`` (unique_id + compacted columns + passengers) in process."""
    import time

    import numpy as np

    timings = {} if timings is None else timings
    with Engine(spill_parent=spill_parent) as engine:
        t = time.perf_counter()
        records = engine.load(slim)
        counts = engine.count_comparisons(rules, cross_source=cross_source(settings))
        counts = blocking.enforce_budget(rules, counts, max_comparisons_per_rule)
        timings["budget"] = time.perf_counter() - t
        t = time.perf_counter()
        edges = engine.predict(settings, threshold_match_weight, columns, rules)
        timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    cluster = np.arange(records.num_rows, dtype=np.int64)
    split = constraints.SplitCounts()
    if edges.num_rows:
        src, dst = edges.column(f"{NODE}_l").to_numpy(), edges.column(f"{NODE}_r").to_numpy()
        nodes, component = clustering.label_components(src, dst)
        guard = constraints.Rules.of(cannot_link, records.column_names, constraints.nhs_key(rules)) if cannot_link is not None else None
        if guard is not None:
            code, nhs, has_nhs = constraints.attributes(guard, records)  # rows are node ids 0..n-1
            component, split = constraints.split_components(
                guard, nodes, component, src, dst, edges.column("match_weight").to_numpy(), code[nodes], nhs[nodes], has_nhs[nodes]
            )
        cluster[nodes] = component  # node ids are 0..n-1, so a node id is its row
    timings["cluster"] = time.perf_counter() - t
    return Linked(
        records=records, edges=edges, cluster_node=pa.array(cluster, pa.int64()), comparisons_per_rule=counts, cannot_link=split.as_dict()
    )
