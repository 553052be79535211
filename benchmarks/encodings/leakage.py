"""What the linkage centre can learn from a block-salted table, measured against the truth.

* :func:`block_sizes`: per rule, the share of rows in blocks of 1, 2-5 and more than 5 rows, and
  the largest blocks.
* :func:`rank_attack` / :func:`rank_attack_slices`: frequency alignment that scales to 100k+
  records: token groups ranked by size paired with values ranked by their exact frequency among
  the attacked records (an upper bound for rank alignment; ties broken at random). Run on today's
  tokens and on each rule's slice of the salted table (a field counts as recovered when any slice
  recovers it); :func:`reidentified` scores unique combinations.
* :func:`suite_attack`: the project's attack suite (``benchmarks/attacks`` on the attacks branch,
  imported read-only when present), the same per slice; its one-to-one assignment grows with the
  number of distinct tokens, so it is run on small populations only.
* :func:`equivalence_classes` + :func:`class_attack`: the strongest cross-rule attack we found.
  Records that certainly share a value of field f are chained: same block of a rule containing f,
  or equal salted f-token inside any block, joined across rules through the record key. Connected
  components are pseudo-tokens of f, whose sizes are then rank-aligned like today's tokens. With
  per-rule record pseudonyms only records the link output names can be joined across rules.
* :func:`size_alignment`: block keys are deterministic, so their sizes follow the joint
  distribution of the rule's fields; blocks are ranked by size and matched to the ranked public
  joint distribution (and, as an upper bound, to the true one).
* :func:`class_guess`: what a frequency class column gives an attacker who knows the exact
  distribution: guess the commonest value of the record's class.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .salted import BLOCK_KEY, RULE, SaltedSpec

ATTACKS_HOME = Path("/work/wt-i15-attacks/benchmarks")


def block_sizes(salted: pd.DataFrame, spec: SaltedSpec) -> list[dict]:
    out = []
    for i in range(len(spec.rules)):
        part = salted[salted[RULE] == i]
        sizes = part.groupby(BLOCK_KEY, sort=False).size()
        per_row = part[BLOCK_KEY].map(sizes).to_numpy()
        n = max(len(per_row), 1)
        top = sizes.sort_values(ascending=False).head(3).tolist()
        out.append({
            "rule": spec.rule_name(i), "rows": len(part), "blocks": len(sizes),
            "in_1": float((per_row == 1).sum() / n), "in_2_5": float(((per_row >= 2) & (per_row <= 5)).sum() / n),
            "in_gt5": float((per_row > 5).sum() / n), "largest": top,
        })
    return out


# ------------------------------------------------------------------------------------------
# The attack suite, read-only


def attack_suite():
    """The attack suite's modules (align, inputs, public, score), or None when it is not there."""
    if not (ATTACKS_HOME / "attacks" / "align.py").exists():
        return None
    if str(ATTACKS_HOME) not in sys.path:
        sys.path.append(str(ATTACKS_HOME))
    try:
        return {m: importlib.import_module(f"attacks.{m}") for m in ("align", "inputs", "public", "score")}
    except Exception:  # noqa: BLE001 - an incompatible suite: fall back to our own measures
        return None


def _attack_rows(suite, spark, root: Path, rows: pd.DataFrame, blocks=None) -> tuple[pd.DataFrame, list]:
    """Run frequency alignment on ``rows`` (record_id + token columns); per-row correctness of each QI."""
    tokens = [c for c in rows.columns if c.startswith("tk_") or c == BLOCK_KEY]
    manifest = {"dataset": "gp", "columns": {"tokens": {c: c for c in tokens}}}
    table = suite["inputs"].from_rows("gp", manifest, rows.reset_index(drop=True))
    align, public = suite["align"], suite["public"]
    if blocks is None:
        blocks = public.knowledge(spark, manifest, family_tail_share=0.4)
    mapping = align.map_columns(table, blocks)
    decoded = align.frequency_attack(table, blocks, mapping)
    truth = suite["score"].truth_frame(root, table)
    ok = suite["score"].correct(suite["score"].guesses(decoded), truth)
    ok.insert(0, "record_id", table.rows["record_id"].to_numpy())
    return ok, blocks


def suite_attack(spark, root: Path, salted_gp: pd.DataFrame, spec: SaltedSpec, fields=("given_name", "family_name", "year_of_birth", "postcode_district")) -> dict:
    """Share of gp records whose field is recovered from any rule slice, per field; None without the suite."""
    suite = attack_suite()
    if suite is None:
        return {}
    n = salted_gp["record_id"].nunique()
    hits: dict[str, set] = {f: set() for f in fields}
    blocks = None
    per_rule = {}
    for i in range(len(spec.rules)):
        rows = salted_gp[salted_gp[RULE] == i].drop(columns=[RULE, "dataset", "record_index", "unique_id"], errors="ignore")
        ok, blocks = _attack_rows(suite, spark, root, rows, blocks)
        per_rule[spec.rule_name(i)] = {f: float(ok[f].sum() / n) for f in fields}
        for f in fields:
            hits[f] |= set(ok.loc[ok[f], "record_id"])
    return {"any_rule": {f: len(hits[f]) / n for f in fields}, "per_rule": per_rule}


def suite_on_classes(spark, root: Path, record_ids: np.ndarray, labels: np.ndarray, sizes: np.ndarray, extra: pd.DataFrame, field: str, min_size: int = 6) -> float | None:
    """The suite's alignment of cross-rule classes of ``field`` (those of at least ``min_size``
    records; smaller ones are NULL, which keeps its assignment tractable): share recovered."""
    suite = attack_suite()
    if suite is None:
        return None
    big = sizes[labels] >= min_size
    rows = pd.DataFrame({"record_id": record_ids, f"tk_{field}": pd.array(np.where(big, labels, None), dtype="Int64")})
    ok, _ = _attack_rows(suite, spark, root, rows.merge(extra, on="record_id", how="left"))
    return float(ok[field].mean())


def suite_attack_today(spark, root: Path, today_gp: pd.DataFrame) -> dict:
    """The same alignment on today's gp token table (record_id + tk_*), for the side-by-side."""
    suite = attack_suite()
    if suite is None:
        return {}
    ok, _ = _attack_rows(suite, spark, root, today_gp)
    return {c: float(ok[c].mean()) for c in ok.columns if c != "record_id"}


# ------------------------------------------------------------------------------------------
# Rank alignment: the compact attack that scales (the suite's assignment is quadratic in tokens)


def ranked(counts: pd.Series, seed: int) -> pd.Series:
    """Largest first, ties in random order (never in the data's row order, which would leak the pairing)."""
    return counts.sample(frac=1.0, random_state=seed).sort_values(ascending=False, kind="stable")


def rank_attack(token: pd.Series, truth: pd.Series, reference: pd.Series) -> np.ndarray:
    """Per row: is the value guessed for its token right? Tokens ranked by count are paired with
    reference values ranked by mass (``reference``: value -> mass; the exact distribution of the
    attacked rows makes this an upper bound for rank alignment). NULL tokens are never right."""
    counts = ranked(token.dropna().value_counts(), 1)
    ref = ranked(reference, 2)
    k = min(len(counts), len(ref))
    guess = pd.Series(ref.index[:k].to_numpy(dtype=object), index=counts.index[:k])
    guessed = token.map(guess)
    return (guessed.notna() & (guessed.astype(object) == truth.astype(object))).to_numpy()


def rank_attack_slices(salted_gp: pd.DataFrame, truth: pd.DataFrame, spec: SaltedSpec, fields: dict[str, str]) -> dict[str, np.ndarray]:
    """Per QI (truth column) -> per gp record (truth's order, by record_id): recovered from any rule slice.

    ``fields``: token column -> truth column; ``truth``: record_id + truth columns of every gp record."""
    pos = pd.Series(np.arange(len(truth)), index=truth["record_id"].to_numpy())
    out = {qi: np.zeros(len(truth), dtype=bool) for qi in fields.values()}
    for i in range(len(spec.rules)):
        part = salted_gp[salted_gp[RULE] == i]
        rows = pos.reindex(part["record_id"].to_numpy()).to_numpy()
        for col, qi in fields.items():
            t = truth[qi].iloc[rows].reset_index(drop=True)
            hit = rank_attack(part[col].reset_index(drop=True), t, t.value_counts())
            out[qi][rows[hit]] = True
    return out


def reidentified(ok: dict[str, np.ndarray], truth: pd.DataFrame, parts: Sequence[str]) -> float:
    """Share of records with every part recovered AND a combination unique to one person."""
    key = truth[list(parts)].astype(str).agg("|".join, axis=1)
    complete = truth[list(parts)].notna().all(axis=1)
    persons = pd.DataFrame({"k": key, "p": truth["true_person_id"]}).groupby("k")["p"].nunique()
    unique = (complete & key.map(persons).eq(1)).to_numpy()
    hit = unique.copy()
    for p in parts:
        hit &= ok[p]
    return float(hit.mean())


# ------------------------------------------------------------------------------------------
# Cross-rule equivalence classes


def equivalence_classes(salted: pd.DataFrame, spec: SaltedSpec, field: str, n_records: int, joinable: np.ndarray | None = None) -> np.ndarray:
    """Per node: a component id of nodes proven to share ``field`` (singletons otherwise).

    A node is a record (all its rows carry one record key: ``joinable`` None or True for it), or,
    for a record whose rows the centre cannot join across rules (``joinable`` False: per-rule
    pseudonyms and no link output), one node per row, numbered ``n_records + row position``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    column = f"tk_{field}"
    idx_all = salted["record_index"].to_numpy()
    node_all = idx_all if joinable is None else np.where(joinable[idx_all], idx_all, n_records + np.arange(len(salted)))
    nodes = n_records if joinable is None else n_records + len(salted)
    src, dst = [], []
    for i, rule in enumerate(spec.rules):
        mask = (salted[RULE] == i).to_numpy()
        part = salted[mask].assign(_node=node_all[mask])
        keys = [BLOCK_KEY] if field in rule else [BLOCK_KEY, column]
        part = part.dropna(subset=keys)
        first = part.groupby(keys, sort=False)["_node"].transform("first").to_numpy()
        node = part["_node"].to_numpy()
        keep = first != node
        src.append(first[keep])
        dst.append(node[keep])
    s, d = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(s), dtype=np.int8), (s, d)), shape=(nodes, nodes))
    _, labels = connected_components(graph, directed=False)
    return labels


def node_records(salted: pd.DataFrame, n_records: int, joinable: np.ndarray | None) -> np.ndarray:
    """Record index of every node of :func:`equivalence_classes` (-1: a node no row uses)."""
    if joinable is None:
        return np.arange(n_records)
    idx = salted["record_index"].to_numpy()
    out = np.concatenate([np.where(joinable, np.arange(n_records), -1), np.where(joinable[idx], -1, idx)])
    return out


def class_attack(labels: np.ndarray, owner: np.ndarray, truth_of_record: pd.Series, target: np.ndarray) -> np.ndarray:
    """Rank-align class labels of the nodes of ``target`` records; per record: any node right."""
    keep = (owner >= 0) & target[np.maximum(owner, 0)]
    lab, rec = labels[keep], owner[keep]
    truth = truth_of_record.iloc[rec].reset_index(drop=True)
    hit = rank_attack(pd.Series(lab), truth, truth.value_counts())
    out = np.zeros(len(truth_of_record), dtype=bool)
    out[rec[hit]] = True
    return out


# ------------------------------------------------------------------------------------------
# Block sizes against joint distributions


def size_alignment(block_of_row: pd.Series, truth_key: pd.Series, reference: pd.Series) -> float:
    """Share of rows whose block is matched to its true value when blocks (ranked by size) are
    paired with ``reference`` values ranked by expected mass (ties broken arbitrarily)."""
    sizes = ranked(block_of_row.value_counts(), 1)
    ref = ranked(reference, 2)
    k = min(len(sizes), len(ref))
    guess = pd.Series(ref.index[:k], index=sizes.index[:k])
    guessed = block_of_row.map(guess)
    return float((guessed.astype(object) == truth_key.astype(object)).mean())


def class_guess(values: pd.Series, classes: pd.Series | None) -> float:
    """Share of records an attacker knowing the exact distribution gets right: the commonest value
    overall (no class), or the commonest value of each record's class."""
    v = values.dropna()
    if classes is None:
        return float(v.value_counts().iloc[0] / len(values))
    c = classes.loc[v.index]
    best = pd.DataFrame({"v": v, "c": c}).groupby(["c", "v"]).size().groupby(level=0).max().sum()
    return float(best / len(values))


def classes_table(values: pd.Series, classes: pd.Series) -> list[dict]:
    """Per class: records, distinct values, share of its commonest value."""
    df = pd.DataFrame({"v": values, "c": classes}).dropna()
    out = []
    for k, g in df.groupby("c"):
        counts = g["v"].value_counts()
        out.append({"class": int(k), "records": len(g), "values": len(counts), "top_share_in_class": float(counts.iloc[0] / len(g))})
    return out


def truth_keys(plain: pd.DataFrame, fields: Sequence[str]) -> pd.Series:
    return pd.Series(list(zip(*[plain[f].astype(object) for f in fields])), index=plain.index)
