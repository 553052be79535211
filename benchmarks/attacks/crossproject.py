"""Attack c: joining two projects' research extracts of one link run, without any key.

The attacker holds the extracts ``natlink extract`` made for two projects from the same link run
(:func:`attacks.inputs.load_extract`): per dataset, rows of ``project_person_id`` and the
project's allow-listed columns, and each extract's ``extract.json``. Each join uses only that:

* ``row position`` (rows): row i of a dataset in one extract with row i of the same dataset in the
  other, as the tables are read (what joined two ``natlink rekey`` extracts 100%);
* ``person order`` (persons): the k-th person to appear in one extract with the k-th in the other;
* ``person id`` (persons): equal project person ids;
* ``row counts`` (persons): a person's number of rows in each dataset (the shape of the person's
  cluster, no values);
* ``shared values, one row`` (rows): a row with the other extract's rows of the same dataset that
  hold the same values in every column both extracts carry (condition codes, event date, age band,
  region: whatever both projects were allowed);
* ``profile`` (persons): a person's frequency profile, the multiset of the person's rows, each row
  being its dataset and its values in the shared columns. The two extracts carry identical values
  for one person, so joining on all shared columns is at least as good as joining on any subset of
  them (a finer label never separates a person from their counterpart, and leaves fewer ties):
  this is the best join by any combination of shared column values.
  :func:`profile_by_columns` gives the same join restricted to chosen columns: what two projects
  that shared only those columns would get (the values are the same, only fewer of them).

Scored with the truth (which persons are the same: the linkage centre's id tables, read only by
:mod:`attacks.score`) as the expected share of one extract's units (rows or persons) joined to
their own counterpart when each unit picks uniformly among the other extract's units with its
label. *Chance* is the same share for a join that carries no information: for persons, 1/P (P:
persons in the other extract); for rows, the probability that a random row of the same dataset in
the other extract belongs to the same person (sum over persons of a_p * b_p / (N_a * N_b) per
dataset, a_p, b_p: the person's rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .inputs import Extract

DATASET_FIELD = "__dataset"


@dataclass(frozen=True)
class Join:
    """One join's score: ``share`` of ``units`` (rows or persons) joined to their own counterpart."""

    share: float
    chance: float
    units: int
    unit: str

    @property
    def hits(self) -> float:
        """Expected number of units joined correctly."""
        return self.share * self.units

    @property
    def expected(self) -> float:
        """The same number for a join that carries no information."""
        return self.chance * self.units


def expected_correct(label_a: np.ndarray, label_b: np.ndarray, partner: np.ndarray) -> float:
    """Expected share of A's units joined to their counterpart (``partner``: B unit of each A unit, -1 none),
    when each A unit picks uniformly among B's units with its label (one counterpart per unit)."""
    sizes = pd.Series(label_b).value_counts()
    has = partner >= 0
    same = np.zeros(len(label_a), dtype=bool)
    same[has] = label_a[has] == label_b[partner[has]]
    k = pd.Series(label_a).map(sizes).fillna(0).to_numpy()
    return float(np.sum(np.where(same & (k > 0), 1.0 / np.maximum(k, 1), 0.0)) / len(label_a))


def row_labels(t: Extract, dataset: str, columns: list[str]) -> np.ndarray:
    """One label per row of ``dataset``: its dataset and its values in ``columns``."""
    frame = t.tables[dataset][columns].astype(str)
    frame.insert(0, DATASET_FIELD, dataset)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def _digest(values: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(values).tobytes(), digest_size=8).digest(), "little")


def profiles(t: Extract, shared: dict[str, list[str]]) -> np.ndarray:
    """Per person of ``t``: a label of the multiset of the person's row labels over ``shared`` columns."""
    rows = pd.concat(
        [pd.DataFrame({"p": t.person_rows(d), "h": row_labels(t, d, cols)}) for d, cols in shared.items()],
        ignore_index=True,
    ).sort_values(["p", "h"], kind="stable")
    per = rows.groupby("p", sort=True)["h"].agg(lambda h: _digest(h.to_numpy(dtype=np.uint64)))
    out = np.zeros(len(t.persons), dtype=np.uint64)
    out[per.index.to_numpy()] = per.to_numpy(dtype=np.uint64)
    return out


def row_counts(t: Extract, datasets: list[str]) -> np.ndarray:
    """Per person of ``t``: a label of the number of the person's rows in each of ``datasets``."""
    counts = np.stack([np.bincount(t.person_rows(d), minlength=len(t.persons)) for d in datasets], axis=1)
    return pd.util.hash_pandas_object(pd.DataFrame(counts), index=False).to_numpy(dtype=np.uint64)


def _rows_chance(a: Extract, b: Extract, partner: np.ndarray, datasets: list[str], limit: dict[str, int] | None = None) -> float:
    total, expected = 0, 0.0
    for d in datasets:
        pa, pb = a.person_rows(d), b.person_rows(d)
        n = len(pa) if limit is None else limit[d]
        q = partner[pa[:n]]
        b_rows = np.bincount(pb, minlength=len(b.persons))
        expected += float(np.sum(np.where(q >= 0, b_rows[np.maximum(q, 0)], 0)) / max(len(pb), 1))
        total += len(pa)
    return expected / max(total, 1)


def row_position(a: Extract, b: Extract, partner: np.ndarray, datasets: list[str]) -> Join:
    hits, total, limit = 0, 0, {}
    for d in datasets:
        pa, pb = a.person_rows(d), b.person_rows(d)
        n = limit[d] = min(len(pa), len(pb))
        hits += int(np.sum(partner[pa[:n]] == pb[:n]))
        total += len(pa)
    return Join(hits / max(total, 1), _rows_chance(a, b, partner, datasets, limit), total, "rows")


def shared_values(a: Extract, b: Extract, partner: np.ndarray, shared: dict[str, list[str]]) -> Join:
    """Each row of ``a`` picks uniformly among ``b``'s rows of its dataset with the same shared values."""
    correct, total = 0.0, 0
    for d, cols in shared.items():
        fb = pd.DataFrame({"l": row_labels(b, d, cols), "p": b.person_rows(d)})
        per_label = fb.groupby("l").size()
        per_person = fb.groupby(["l", "p"]).size()
        la, q = row_labels(a, d, cols), partner[a.person_rows(d)]
        k = pd.Series(la).map(per_label).fillna(0).to_numpy()
        c = per_person.reindex(pd.MultiIndex.from_arrays([la, q])).fillna(0).to_numpy()
        correct += float(np.sum(np.where(k > 0, c / np.maximum(k, 1), 0.0)))
        total += len(la)
    return Join(correct / max(total, 1), _rows_chance(a, b, partner, list(shared)), total, "rows")


def shared_columns(a: Extract, b: Extract, only: list[str] | None = None) -> dict[str, list[str]]:
    """Per dataset both extracts hold: the columns both hold (restricted to ``only`` when given)."""
    datasets = [d for d in sorted(a.tables) if d in b.tables]
    return {d: [c for c in a.columns(d) if c in b.columns(d) and (only is None or c in only)] for d in datasets}


def _person_join(a: Extract, b: Extract, partner: np.ndarray, label_a: np.ndarray, label_b: np.ndarray) -> Join:
    chance = float(np.mean(partner >= 0)) / max(len(b.persons), 1)
    return Join(expected_correct(label_a, label_b, partner), chance, len(a.persons), "persons")


def profile_by_columns(a: Extract, b: Extract, partner: np.ndarray, only: list[str]) -> Join:
    """The profile join on the shared columns among ``only`` (none: the row counts per dataset)."""
    shared = shared_columns(a, b, only)
    return _person_join(a, b, partner, profiles(a, shared), profiles(b, shared))


def cross_project(a: Extract, b: Extract, partner: np.ndarray) -> dict[str, Join]:
    """Join shares per method; ``partner[i]``: the index in ``b.persons`` of ``a.persons[i]`` (-1: none; scoring only)."""
    shared = shared_columns(a, b)
    datasets = list(shared)
    n_a, n_b = len(a.persons), len(b.persons)

    def persons(label_a: np.ndarray, label_b: np.ndarray) -> Join:
        return _person_join(a, b, partner, label_a, label_b)

    def id_labels(t: Extract) -> np.ndarray:
        return pd.util.hash_array(np.asarray(t.persons, dtype=object)).astype(np.uint64)

    return {
        "row position": row_position(a, b, partner, datasets),
        "person order": persons(np.arange(n_a, dtype=np.uint64), np.arange(n_b, dtype=np.uint64)),
        "person id": persons(id_labels(a), id_labels(b)),
        "row counts": persons(row_counts(a, datasets), row_counts(b, datasets)),
        "shared values, one row": shared_values(a, b, partner, shared),
        "profile": persons(profiles(a, shared), profiles(b, shared)),
    }
