"""Training and linking on a block-salted table, with Splink on DuckDB (in process).

* Settings: today's model (``conf/model.yaml``) with blocking ``l.bk = r.bk`` only; term-frequency
  adjustments removed (a salted token's frequency is that of its (block, value) pair, so Splink's
  TF tables would be wrong), or, with frequency classes, each TF-adjusted exact level split into one
  level per class (``tk_x_l = tk_x_r AND fc_x_l = k``).
* u: the providers' pooled aggregates (:mod:`.provider`), fixed (``fix_u_probability``).
* lambda: from the deterministic rules, counted in the slice of the first prediction rule whose
  fields the deterministic rule contains (same bk and equal salted tokens of its other fields),
  divided by the recall and by the record pairs, as Splink's estimator does.
* m: EM at the centre, one session per EM rule of the model, inside the blocks of a prediction rule
  containing it; the session's blocking SQL names the rule's salted columns as well (redundant:
  they are equal inside a block) so Splink leaves those comparisons out of that session.
* Predict: pairs within blocks, every rule (a pair met by several rules is scored by each, with
  the same score, and deduplicated here keeping the maximum), clusters by connected components
  (natlink's :func:`~natlink.linkage.clustering.label_components`).

Row ids: ``unique_id = record_index * 8 + rule``, so a row's record is ``unique_id // 8``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .salted import BLOCK_KEY, RULE, SaltedSpec

RULE_SLOTS = 8
LOG = logging.ERROR


def salted_settings(natlink_settings: dict[str, Any], *, classes: Sequence[str] = (), n_classes: int = 4) -> dict[str, Any]:
    """Today's Splink settings for the salted table (see the module doc)."""
    s = copy.deepcopy(natlink_settings)
    for comp in s["comparisons"]:
        levels = []
        for lv in comp["comparison_levels"]:
            col = lv.pop("tf_adjustment_column", None)
            lv.pop("tf_adjustment_weight", None)
            if col and col in classes:
                fc = "fc_" + col[len("tk_"):]
                for k in range(n_classes - 1, -1, -1):
                    levels.append({"sql_condition": f"({lv['sql_condition']}) AND {fc}_l = {k}", "label_for_charts": f"{lv['label_for_charts']} (class {k})"})
            else:
                levels.append(lv)
        comp["comparison_levels"] = levels
    s["blocking_rules_to_generate_predictions"] = [f"l.{BLOCK_KEY} = r.{BLOCK_KEY}"]
    s["unique_id_column_name"] = "unique_id"
    return s


def with_u(settings: dict[str, Any], u: list[list[float | None]]) -> dict[str, Any]:
    s = copy.deepcopy(settings)
    for comp, us in zip(s["comparisons"], u):
        for lv, value in zip(comp["comparison_levels"], us):
            if value is not None and not lv.get("is_null_level"):
                lv["u_probability"] = max(float(value), 1e-9)
                lv["fix_u_probability"] = True
    return s


def rule_containing(spec: SaltedSpec, columns: Sequence[str]) -> int:
    """The first prediction rule whose fields are all in ``columns`` (token column names)."""
    wanted = {c[len("tk_"):] for c in columns}
    for i, rule in enumerate(spec.rules):
        if set(rule) <= wanted:
            return i
    raise ValueError(f"no prediction rule within {sorted(wanted)}")


def rule_covering(spec: SaltedSpec, columns: Sequence[str]) -> int:
    """The first prediction rule that contains every field of ``columns``."""
    wanted = {c[len("tk_"):] for c in columns}
    for i, rule in enumerate(spec.rules):
        if wanted <= set(rule):
            return i
    raise ValueError(f"no prediction rule contains {sorted(wanted)}")


def pairs_in_groups(df: pd.DataFrame, keys: list[str]) -> int:
    n = df.dropna(subset=keys).groupby(keys, sort=False).size().to_numpy(dtype=np.int64)
    return int((n * (n - 1) // 2).sum())


def estimate_lambda(salted: pd.DataFrame, spec: SaltedSpec, rules: Sequence[Sequence[str]], recall: float, n_records: int) -> float:
    """P(two random records match) from deterministic rules counted inside the salted blocks."""
    matched = 0
    for rule in rules:
        i = rule_containing(spec, rule)
        part = salted[salted[RULE] == i]
        others = [c for c in rule if c[len("tk_"):] not in spec.rules[i]]
        matched += pairs_in_groups(part, [BLOCK_KEY, *others])
    total = n_records * (n_records - 1) / 2
    return min(max(matched / recall / total, 1e-12), 0.5)


def train(salted: pa.Table, settings: dict[str, Any], spec: SaltedSpec, cfg, n_records: int) -> tuple[dict[str, Any], dict]:
    """lambda (deterministic rules), m (EM within blocks, u fixed): the trained settings."""
    from splink import DuckDBAPI, Linker

    t = cfg.training
    timings = {}
    start = time.perf_counter()
    cols = [BLOCK_KEY, RULE, *{c for r in t.deterministic_rules for c in r}]
    lam = estimate_lambda(salted.select(cols).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), spec, t.deterministic_rules, t.deterministic_recall, n_records)
    s = copy.deepcopy(settings)
    s["probability_two_random_records_match"] = lam
    timings["lambda_s"] = time.perf_counter() - start
    start = time.perf_counter()
    linker = Linker(DuckDBAPI().register(salted), s, log_level=LOG)
    for em_rule in t.em_blocking_rules:
        i = rule_covering(spec, em_rule)
        redundant = " AND ".join(f"l.tk_{f} = r.tk_{f}" for f in spec.rules[i])
        linker.training.estimate_parameters_using_expectation_maximisation(f"l.{BLOCK_KEY} = r.{BLOCK_KEY} AND {redundant}", max_pairs=t.em_max_pairs)
    timings["em_s"] = time.perf_counter() - start
    return linker.misc.save_model_to_json(), {"lambda": lam, **timings}


@dataclass
class Linked:
    cluster: np.ndarray  # per record index: the smallest record index of its cluster
    edges: int  # distinct record pairs at or above the threshold
    scored_pairs: int  # row pairs scored (over all rules, before deduplication)
    timings: dict = field(default_factory=dict)


def predict_and_cluster(salted: pa.Table, trained: dict[str, Any], threshold: float, n_records: int) -> Linked:
    from splink import DuckDBAPI, Linker

    from natlink.linkage.clustering import label_components

    timings = {}
    start = time.perf_counter()
    db = DuckDBAPI()
    linker = Linker(db.register(salted), trained, log_level=LOG)
    pred = linker.inference.predict(threshold_match_probability=threshold)
    rel = pred.as_duckdbpyrelation()
    pairs = rel.select("unique_id_l, unique_id_r, match_probability").to_arrow_table()
    timings["predict_s"] = time.perf_counter() - start
    start = time.perf_counter()
    a = pairs.column("unique_id_l").to_numpy() // RULE_SLOTS
    b = pairs.column("unique_id_r").to_numpy() // RULE_SLOTS
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    edges = pd.DataFrame({"l": lo, "r": hi, "p": pairs.column("match_probability").to_numpy()})
    edges = edges.groupby(["l", "r"], sort=False)["p"].max().reset_index()  # max over the rules that met the pair
    cluster = np.arange(n_records, dtype=np.int64)
    if len(edges):
        nodes, comp = label_components(edges["l"].to_numpy(), edges["r"].to_numpy())
        cluster[nodes] = comp
    timings["dedupe_cluster_s"] = time.perf_counter() - start
    return Linked(cluster=cluster, edges=len(edges), scored_pairs=pairs.num_rows, timings=timings)


def comparisons(salted: pd.DataFrame) -> int:
    """Row pairs the centre scores: within-block pairs summed over rules (a pair met twice counts twice)."""
    return pairs_in_groups(salted, [BLOCK_KEY])
