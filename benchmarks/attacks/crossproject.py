"""Attack c: joining two projects' research extracts of one source table, without any key.

Each extract's pseudonyms differ (per-project keys), so equal values never match across projects.
What survives re-keying is *structure*, and each join below uses only that:

* ``row order``: row i of one extract with row i of the other, as the files are read;
* ``profile``: a record's value-frequency profile (per column, how many records share its value)
  is the same in both extracts; records are joined on equal profiles;
* ``profile+refine``: the profile refined by whom a record shares values with (colour refinement:
  a value's label is the multiset of its holders' labels; a record's new label combines its
  values' labels), a few rounds;
* ``plaintext``: the plaintext columns carried into both (region, age band, condition codes);
* ``all``: refined profile and plaintext together.

A join is scored as the expected share of one extract's records joined to their own counterpart
when each record picks uniformly among the other extract's records with the same label.
Chance (a random one-to-one pairing) is 1/N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .inputs import ID_COLUMNS, AttackTable

ROUNDS = 3


def _hash(values: pd.Series | np.ndarray) -> np.ndarray:
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=True).astype(np.uint64)


def _combine(parts: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(len(parts[0]), dtype=np.uint64) if parts else np.zeros(0, dtype=np.uint64)
    for i, p in enumerate(parts):
        out = _hash(pd.Series(out).astype(str) + f"/{i}:" + pd.Series(p).astype(str))
    return out


def shared_columns(a: AttackTable, b: AttackTable) -> tuple[list[str], list[str]]:
    """(pseudonym-like columns, plaintext columns) present in both extracts."""
    pseudo = [c for c in a.tokens + a.blooms if c in b.rows.columns]
    pseudo += [c for c in ID_COLUMNS if c in a.rows.columns and c in b.rows.columns and c != "dataset"]
    plain = [c for c in a.plain if c in b.plain]
    return pseudo, plain


def profile(t: AttackTable, pseudo: list[str]) -> np.ndarray:
    parts = []
    for c in pseudo:
        codes = t.codes(c)
        counts = np.bincount(codes[codes >= 0], minlength=max(codes.max() + 1, 1))
        parts.append(np.where(codes >= 0, counts[np.maximum(codes, 0)], 0))
    return _combine(parts)


def refine(t: AttackTable, pseudo: list[str], labels: np.ndarray, rounds: int = ROUNDS) -> np.ndarray:
    codes = {c: t.codes(c) for c in pseudo}
    for _ in range(rounds):
        parts = [labels]
        for c, k in codes.items():
            ok = k >= 0
            # A value's label: the order-free sum of its holders' label hashes.
            sums = np.zeros(max(k.max() + 1, 1), dtype=np.uint64)
            np.add.at(sums, k[ok], _hash(labels[ok]))
            parts.append(np.where(ok, sums[np.maximum(k, 0)], np.uint64(0)))
        labels = _combine(parts)
    return labels


def plain_labels(t: AttackTable, plain: list[str]) -> np.ndarray:
    return _combine([t.rows[c].astype(str).to_numpy() for c in plain]) if plain else np.zeros(len(t), dtype=np.uint64)


def expected_correct(label_a: np.ndarray, label_b: np.ndarray, partner: np.ndarray) -> float:
    """Expected share of A's records joined to their counterpart (``partner``: B row of each A row, -1 none)."""
    sizes = pd.Series(label_b).value_counts()
    has = partner >= 0
    same = np.zeros(len(label_a), dtype=bool)
    same[has] = label_a[has] == label_b[partner[has]]
    k = pd.Series(label_a).map(sizes).fillna(0).to_numpy()
    return float(np.sum(np.where(same & (k > 0), 1.0 / np.maximum(k, 1), 0.0)) / len(label_a))


def cross_project(a: AttackTable, b: AttackTable, partner: np.ndarray) -> dict[str, float]:
    """Join shares per method; ``partner[i]``: the row of ``b`` holding ``a``'s row i (scoring only)."""
    pseudo, plain = shared_columns(a, b)
    n = min(len(a), len(b))
    order = float(np.mean(partner[:n] == np.arange(n))) * n / len(a)
    pa, pb = profile(a, pseudo), profile(b, pseudo)
    ra, rb = refine(a, pseudo, pa), refine(b, pseudo, pb)
    la, lb = plain_labels(a, plain), plain_labels(b, plain)
    return {
        "row order": order,
        "profile": expected_correct(pa, pb, partner),
        "profile+refine": expected_correct(ra, rb, partner),
        "plaintext": expected_correct(la, lb, partner),
        "all": expected_correct(refine(a, pseudo, _combine([pa, la])), refine(b, pseudo, _combine([pb, lb])), partner),
        "chance": 1.0 / len(b),
    }
