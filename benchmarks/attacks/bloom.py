"""Attack b: Bloom filter denoising and decoding against the public name lists.

1. *Denoise.* Per-record noise (keyed bit flips) is cancelled by grouping the filters of one field
   by an exact column that holds the same value: the token column whose groups agree best with
   their own majority filter (today ``tk_family_name`` for ``bf_family_name``). A group's
   majority filter is the filter of the value without the noise. Singletons stay noisy.
2. *Learn.* For groups whose exact token was decoded by frequency alignment (attack a), each
   bigram of the decoded value is credited with the positions its filters share: a position set
   in most filters of names containing a bigram belongs to that bigram. Repeated once so bigrams
   seen in one name only are learnt from what the known bigrams leave unexplained.
3. *Decode.* Every group's filter (rare names, seen once, included) is compared with the filter
   predicted for every value of the public list (Dice); the best match above a threshold wins.

With no exact column (a future encoding), the filters are grouped by their own value, which is
the same as treating an un-noised filter as a token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from .align import Decoded, align_column
from .inputs import AttackTable
from .public import Block, vocabulary

AGREEMENT = 0.8  # mean Jaccard of a group's filters with their majority for a column to count as exact
LEARN_MARGIN = 0.3  # a position belongs to a bigram when set this much more often with it than without
ACCEPT_DICE = 0.75
TRAIN_DICE = 0.9  # a decoded group joins the training pairs of the next round at this Dice
ROUNDS = 3


@dataclass
class BloomResult:
    column: str
    feature: str | None
    exact_column: str | None
    agreement: float
    learnt_bigrams: int
    values: np.ndarray  # decoded value per row (None: not decoded)
    dice: np.ndarray


def bigrams(name: str) -> list[str]:
    letters = "".join(ch for ch in name if ch.isalpha())
    padded = f"_{letters}_"
    return sorted({padded[i:i + 2] for i in range(len(padded) - 1)})


def filter_matrix(table: AttackTable, column: str) -> sparse.csr_matrix:
    arrays = table.rows[column].to_numpy()
    bits = 0
    indptr, indices = [0], []
    for a in arrays:
        if a is not None and len(a):
            indices.extend(int(x) for x in a)
            bits = max(bits, int(max(a)) + 1)
        indptr.append(len(indices))
    spec = table.manifest.get("columns", {}).get("blooms", {}).get(column, {})
    bits = max(bits, int(spec.get("bits", 0)))
    data = np.ones(len(indices), dtype=np.float32)
    return sparse.csr_matrix((data, np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(arrays), bits))


def group_majority(m: sparse.csr_matrix, codes: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(majority filter per group, group size); rows with code -1 are left out."""
    ok = codes >= 0
    g = sparse.csr_matrix((np.ones(ok.sum(), dtype=np.float32), (codes[ok], np.flatnonzero(ok))), shape=(codes.max() + 1, m.shape[0]))
    counts = (g @ m).tocsr()
    size = np.asarray(g.sum(axis=1)).ravel()
    counts.data = (counts.data > (np.repeat(size, np.diff(counts.indptr)) / 2)).astype(np.float32)
    counts.eliminate_zeros()
    return counts, size


def _jaccard_rows(a: sparse.csr_matrix, b: sparse.csr_matrix) -> np.ndarray:
    inter = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    union = np.asarray(a.sum(axis=1)).ravel() + np.asarray(b.sum(axis=1)).ravel() - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def exact_column(table: AttackTable, m: sparse.csr_matrix, candidates: list[str]) -> tuple[str | None, float]:
    """The finest token column whose groups share one filter up to noise."""
    best, best_agree, best_distinct = None, 0.0, 0
    has = np.diff(m.indptr) > 0
    for c in candidates:
        codes = table.codes(c)
        codes = np.where(has, codes, -1)
        if (codes >= 0).sum() == 0:
            continue
        maj, size = group_majority(m, codes)
        in_group = (codes >= 0) & (size[np.maximum(codes, 0)] >= 2)
        if in_group.sum() < 10:
            continue
        rows = np.flatnonzero(in_group)
        agree = float(_jaccard_rows(m[rows], maj[codes[rows]]).mean())
        distinct = int((size > 0).sum())
        if agree >= AGREEMENT and (distinct > best_distinct or (distinct == best_distinct and agree > best_agree)):
            best, best_agree, best_distinct = c, agree, distinct
    return best, best_agree


def learn(names: list[str], filters: sparse.csr_matrix, per_bigram: int | None = None) -> dict[str, np.ndarray]:
    """Bigram -> the positions it sets, from (name, denoised filter) pairs, some of them wrong.

    A bigram's positions are the ``per_bigram`` (default: estimated from filter sizes) positions
    most over-represented in the filters of names that contain it against those that do not,
    each by at least ``LEARN_MARGIN``: robust to a share of wrongly labelled pairs.
    """
    vocab = sorted({b for n in names for b in bigrams(n)})
    index = {b: i for i, b in enumerate(vocab)}
    rows, cols = [], []
    for r, n in enumerate(names):
        for b in bigrams(n):
            rows.append(r)
            cols.append(index[b])
    a = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(names), len(vocab)))
    dense = filters.toarray() > 0
    if per_bigram is None:
        per_bigram = max(1, round(dense.sum() / max(len(rows), 1) * 1.05))
    n_b = np.asarray(a.sum(axis=0)).ravel()
    with_b = np.asarray(a.T @ dense.astype(np.float32))
    freq = with_b / np.maximum(n_b, 1)[:, None]
    without = (dense.sum(axis=0)[None, :] - with_b) / np.maximum(len(names) - n_b, 1)[:, None]
    lift = freq - without
    top = np.argsort(-lift, axis=1)[:, :per_bigram]
    learnt = {}
    for b, i in index.items():
        if n_b[i] >= 2:
            chosen = top[i][lift[i, top[i]] >= LEARN_MARGIN]
            if len(chosen):
                learnt[b] = np.sort(chosen)
    # Second pass: a bigram in one name only gets what that name's filter leaves unexplained,
    # when it is that name's only unknown bigram.
    for r, n in enumerate(names):
        unknown = [b for b in bigrams(n) if b not in learnt]
        if len(unknown) == 1:
            explained = set().union(*(set(learnt[b]) for b in bigrams(n) if b in learnt))
            rest = np.array(sorted(set(np.flatnonzero(dense[r])) - explained))
            if 0 < len(rest) <= 20:
                learnt[unknown[0]] = rest
    return {b: p for b, p in learnt.items() if len(p)}


def predicted(names: list[str], learnt: dict[str, np.ndarray], bits: int) -> sparse.csr_matrix:
    indptr, indices = [0], []
    for n in names:
        pos = set()
        for b in bigrams(n):
            pos.update(learnt.get(b, ()))
        indices.extend(sorted(pos))
        indptr.append(len(indices))
    return sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(names), bits))


def best_match(observed: sparse.csr_matrix, dictionary: sparse.csr_matrix, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Index of the best dictionary row per observed row by Dice, and that Dice."""
    size_o = np.asarray(observed.sum(axis=1)).ravel()
    size_d = np.asarray(dictionary.sum(axis=1)).ravel()
    dt = dictionary.T.tocsc()
    best = np.zeros(observed.shape[0], dtype=np.int64)
    score = np.zeros(observed.shape[0])
    for start in range(0, observed.shape[0], chunk):
        inter = (observed[start:start + chunk] @ dt).toarray()
        dice = 2 * inter / np.maximum(size_o[start:start + chunk, None] + size_d[None, :], 1)
        best[start:start + chunk] = dice.argmax(axis=1)
        score[start:start + chunk] = dice.max(axis=1)
    return best, score


def bloom_attack(table: AttackTable, decoded: Decoded, blocks: list[Block], mapping: dict[str, str]) -> list[BloomResult]:
    results = []
    for column in table.blooms:
        m = filter_matrix(table, column)
        feature = mapping.get(column)
        same_field = [c for c in table.tokens if feature and decoded.feature.get(c, "").split("_")[0] == feature.split("_")[0]]
        exact, agreement = exact_column(table, m, same_field or table.tokens)
        codes = table.codes(exact) if exact else table.codes(column)
        codes = np.where(np.diff(m.indptr) > 0, codes, -1)
        maj, size = group_majority(m, codes)
        # A group's filter: the majority of its members (a singleton's own noisy filter).
        first = pd.Series(np.arange(len(codes)))[codes >= 0].groupby(codes[codes >= 0]).first()
        observed = maj.tolil()
        for g, r in first.items():
            if size[g] == 1:
                observed[g] = m[r]
        observed = observed.tocsr()
        n = len(codes)
        values = np.full(n, None, dtype=object)
        dice = np.zeros(n)
        if feature is None:
            results.append(BloomResult(column, feature, exact, agreement, 0, values, dice))
            continue
        # No exact column: the filters themselves are aligned by frequency, as tokens (attack a).
        labels = decoded.values[exact] if exact in decoded.values else align_column(table, column, feature, blocks, decoded, mapping)
        # Training pairs: denoised groups (2+ members) whose exact token was decoded; then, for a
        # few rounds, also the groups the previous round decoded confidently (self-training).
        known = pd.Series(labels)[codes >= 0].groupby(codes[codes >= 0]).first()
        train = {g: v for g, v in known.items() if v is not None and size[g] >= 2}
        names = vocabulary(blocks, feature).index.astype(str).tolist()
        for _ in range(ROUNDS):
            groups = list(train)
            learnt = learn([train[g] for g in groups], observed[groups])
            best, score = best_match(observed, predicted(names, learnt, m.shape[1]))
            confident = {g: names[best[g]] for g in range(len(best)) if score[g] >= TRAIN_DICE and size[g] >= 1}
            train = {**confident, **{g: v for g, v in train.items() if g not in confident}}
        group_value = np.array([names[i] if s >= ACCEPT_DICE else None for i, s in zip(best, score)] + [None], dtype=object)
        idx = np.where(codes >= 0, codes, len(group_value) - 1)
        values = group_value[idx]
        if exact is None:  # the filters' own frequency alignment where the decode is not sure
            values = np.where(pd.notna(values.astype(object)), values, labels)
        dice = np.append(score, 0.0)[idx]
        results.append(BloomResult(column, feature, exact, agreement, len(learnt), values, dice))
    return results


def with_bloom(decoded: Decoded, results: list[BloomResult]) -> Decoded:
    """The frequency decode, with each Bloom-decoded value put in for its field where there is one."""
    out = Decoded(dict(decoded.feature), dict(decoded.values))
    for r in results:
        if r.feature is None:
            continue
        column = r.exact_column or r.column  # no exact column: the filter column carries the field
        base = decoded.values.get(column, np.full(len(r.values), None, dtype=object))
        out.values[column] = np.where(pd.notna(r.values.astype(object)), r.values, base)
        out.feature[column] = r.feature
    return out
