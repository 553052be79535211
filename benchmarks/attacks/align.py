"""Attack a: frequency alignment of every exported column against public distributions.

1. Each exported column is mapped to a public feature (:mod:`attacks.public`): by its name
   (``tk_given_soundex`` -> ``given_soundex``), else by the shape of its value frequencies
   (a column whose sorted frequencies and number of distinct values fit a feature's).
2. Plaintext columns (region, age band) are known outright.
3. Token columns are decoded coarse to fine (fewest distinct values first). A column's *parents*
   are the columns already decoded whose feature it determines (publicly, and in the table):
   a given-name token lies within one initial, Soundex and NYSIIS token and one sex; a district
   within one region. Tokens are aligned to candidate values *within the group of their parents'
   decoded values*, and by their counts per *cell* of the conditioning columns (sex, age band):
   each token's vector of counts is matched to each candidate's expected vector under a Poisson
   likelihood, and tokens are assigned to candidates by an optimal one-to-one assignment (Hungarian),
   with an "unlisted value" option for tokens that fit nothing (typos, unlisted names).
4. A group with more than ``HUNGARIAN_MAX`` tokens or ``HUNGARIAN_MAX_ENTRIES`` costs (a
   block-salted table has about one token per record in every column) is solved by *classes*:
   tokens with the same counts (per cell, and signature) have the same costs, so a frequency
   attacker cannot tell them apart. Each class of
   ``k`` tokens may take up to ``k`` distinct values, each value at most one token (as one-to-one
   as the Hungarian assignment; an unlimited "unlisted" otherwise): a transportation problem with
   the same optimum as the Hungarian assignment of the tokens, solved as a linear programme
   (integral at its vertices). Which tokens of a class take its values is arbitrary to the
   attacker; it is picked deterministically: the class's tokens in order of first appearance in
   the table take its values in order of cost (best first), the rest stay unlisted. Rows are in no
   order related to the values, so this scores, on average, the expected share of a uniform pick.
5. A column is a parent, or a conditioning cell, only where it is decoded for at least
   ``MIN_DECODED`` of the column's rows (on salted tables the one-to-one assignment decodes few
   tokens, and a parent known for few rows would leave most tokens out of every group).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment, linprog

from .inputs import AttackTable
from .public import Block

MAX_COND_VALUES = 40  # a decoded feature with at most this many public values can condition others
MAX_CELLS = 2000
SIGNATURE_K = 8  # a value's signature: the counts of its K most common finer values
# Used only where no conditioning cells are known: with sex x age cells it added noise (given names
# 99.8% -> 97.8% at 100k); without (family names) it lifted the Soundex level from 50% to 82%.
SIGNATURE_ONLY_UNCONDITIONED = True
PUBLIC_FD_SHARE = 0.99  # a feature determines another when it does for this share of public mass
DATA_FD_SHARE = 0.9  # ...and for this share of the table's records
SMOOTHING = 0.05
UNLISTED_EXPECTED = 0.05  # expected records of a value that is not in any public list
HUNGARIAN_MAX = 2000  # tokens in a group above which tokens are assigned as count classes
HUNGARIAN_MAX_ENTRIES = 4_000_000  # ...or this many costs, tokens x (candidates + tokens)
MIN_DECODED = 0.5  # share of a column's rows a parent or conditioning column must have decoded


@dataclass
class Decoded:
    """Per exported column: its public feature and the decoded plaintext value of every row (None: not decoded)."""

    feature: dict[str, str] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def share_decoded(self, column: str) -> float:
        v = self.values[column]
        return float(np.mean([x is not None for x in v])) if len(v) else 0.0


# ------------------------------------------------------------------------------------------
# Mapping columns to features


def _features(blocks: list[Block]) -> dict[str, Block]:
    out: dict[str, Block] = {}
    for b in blocks:
        for f in b.features:
            out.setdefault(f, b)
    return out


def _expected_distinct(mass: np.ndarray, n: int) -> float:
    return float(np.sum(1 - np.power(1 - mass, n)))


def _shape_distance(counts: np.ndarray, mass: np.ndarray) -> float:
    a = np.sort(counts)[::-1] / counts.sum()
    b = np.sort(mass)[::-1] / mass.sum()
    k = max(len(a), len(b))
    return float(np.abs(np.pad(a, (0, k - len(a))) - np.pad(b, (0, k - len(b)))).sum())


def map_columns(table: AttackTable, blocks: list[Block]) -> dict[str, str]:
    """Exported column -> public feature; columns with no fitting feature are left out."""
    features = _features(blocks)
    mapping: dict[str, str] = {}
    # A salted table's block keys: the rule's compound feature (attacks.public.rule_blocks).
    for i, rule in enumerate((table.manifest.get("encoding") or {}).get("rules", [])):
        column, feature = f"tk_block__r{i}", "+".join(rule)
        if column in table.tokens and feature in features:
            mapping[column] = feature
    for c in table.plain:
        values = set(table.rows[c].dropna().astype(str).unique())
        best = max(features, key=lambda f: len(values & set(features[f].table[f].dropna().astype(str))))
        overlap = len(values & set(features[best].table[best].dropna().astype(str)))
        if values and overlap / len(values) >= 0.5:
            mapping[c] = best
    for c in table.tokens + table.blooms:
        if c in mapping:
            continue
        base = c.split("_", 1)[1] if c[:3] in ("tk_", "bf_") else c
        named = [f for f in features if f == base or (f in base and base.startswith(f))]
        if named:
            mapping[c] = max(named, key=len) if c in table.tokens else min(named, key=len)
    # By shape: token columns the names did not place.
    taken = set(mapping.values())
    for c in table.tokens:
        if c in mapping:
            continue
        counts = table.rows[c].value_counts().to_numpy().astype(float)
        if len(counts) < 2:
            continue
        n = int(counts.sum())
        best, best_d = None, 0.25
        for f, b in features.items():
            if f in taken:
                continue
            mass = b.table.groupby(f)["w"].sum().to_numpy()
            ratio = len(counts) / max(_expected_distinct(mass, n), 1.0)
            d = _shape_distance(counts, mass)
            if 0.7 <= ratio <= 1.5 and d < best_d:
                best, best_d = f, d
        if best:
            mapping[c] = best
    return mapping


# ------------------------------------------------------------------------------------------
# Functional dependencies


@lru_cache(maxsize=None)
def _public_fd_cached(block_id: int, f: str, g: str) -> bool:
    table = _BLOCKS[block_id].table
    sub = table[[f, g, "w"]].dropna()
    if sub.empty:
        return False
    top = sub.groupby([f, g])["w"].sum().groupby(level=0).max().sum()
    return bool(top / sub["w"].sum() >= PUBLIC_FD_SHARE)


_BLOCKS: dict[int, Block] = {}


def public_fd(block: Block, f: str, g: str) -> bool:
    """Does feature ``f`` determine feature ``g`` in the public block?"""
    _BLOCKS[id(block)] = block
    return _public_fd_cached(id(block), f, g)


def data_fd(codes: np.ndarray, parent: np.ndarray) -> bool:
    ok = (codes >= 0) & pd.notna(parent)
    if ok.sum() == 0:
        return False
    df = pd.DataFrame({"t": codes[ok], "p": parent[ok]})
    top = df.groupby(["t", "p"]).size().groupby(level=0).max().sum()
    return bool(top / ok.sum() >= DATA_FD_SHARE)


# ------------------------------------------------------------------------------------------
# Alignment


def _as_object(values) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    return np.where(pd.isna(arr), None, arr)


def _cells(columns: list[np.ndarray], n: int) -> np.ndarray:
    """Cell label per row from the conditioning values; None when any is unknown."""
    if not columns:
        return np.full(n, "", dtype=object)
    out = np.full(n, "", dtype=object)
    known = np.ones(n, dtype=bool)
    for col in columns:
        known &= pd.notna(col)
        out = out + "|" + pd.Series(col).astype(str).to_numpy(dtype=object)
    return np.where(known, out, None)


def assign(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Candidate index per token (-1: unlisted) maximising the Poisson likelihood of its cell counts.

    counts: tokens x cells; expected: candidates x cells (expected counts for the whole group).
    """
    group_cells = counts.sum(axis=0)
    share = (group_cells + 1e-9) / (group_cells.sum() + 1e-9 * len(group_cells))
    unlisted = UNLISTED_EXPECTED * share
    return _assign_cost(_poisson(counts, expected), _poisson(counts, unlisted[None, :])[:, 0])


def _dedupe(columns: list[str], decoded: Decoded) -> list[str]:
    seen: set[str] = set()
    return [c for c in columns if not (decoded.feature[c] in seen or seen.add(decoded.feature[c]))]


def _coverage(codes: np.ndarray, values: np.ndarray) -> float:
    """Share of the rows with a token in ``codes`` whose ``values`` are decoded."""
    has = codes >= 0
    return float(pd.notna(values[has]).mean()) if has.any() else 0.0


def _conditioning(block: Block, feature: str, pfeat: list[str], decoded: Decoded, covered: set[str]) -> list[str]:
    """Decoded low-cardinality columns of the block's other features: the cells counts are taken in."""
    cond = [
        c for c, f in decoded.feature.items()
        if c in covered and f in block.features and f != feature and f not in pfeat and block.table[f].nunique() <= MAX_COND_VALUES
        and not public_fd(block, feature, f)
    ]
    cond = _dedupe(cond, decoded)
    cond.sort(key=lambda c: block.table[decoded.feature[c]].nunique())
    kept, cells = [], 1
    for c in cond:
        k = block.table[decoded.feature[c]].nunique()
        if cells * k <= MAX_CELLS:
            kept.append(c)
            cells *= k
    return kept


def _descendant(table: AttackTable, column: str, feature: str, block: Block, mapping: dict[str, str]) -> str | None:
    """The finest other column whose feature determines this one's (e.g. the name under a Soundex)."""
    codes = table.codes(column)
    best, best_n = None, 0
    for c in table.tokens:
        f = mapping.get(c)
        if c == column or f is None or f == feature or f not in block.features or not public_fd(block, f, feature):
            continue
        n = table.rows[c].nunique()
        if n > best_n and data_fd(table.codes(c), np.where(codes >= 0, codes, None)):
            best, best_n = c, n
    return best


def _signatures(child: np.ndarray, tok: np.ndarray) -> pd.DataFrame:
    """Per token: the counts of its K most common child values, largest first (zeros padded)."""
    ok = (child >= 0) & (tok >= 0)
    counts = pd.DataFrame({"t": tok[ok], "c": child[ok]}).groupby(["t", "c"]).size().reset_index(name="n")
    counts = counts.sort_values(["t", "n"], ascending=[True, False])
    counts["k"] = counts.groupby("t").cumcount()
    counts = counts[counts["k"] < SIGNATURE_K]
    return counts.pivot(index="t", columns="k", values="n").reindex(columns=range(SIGNATURE_K)).fillna(0.0)


def _expected_signatures(sub: pd.DataFrame, feature: str, child: str, values: np.ndarray, scale: float) -> np.ndarray:
    """candidates x SIGNATURE_K: each candidate's K largest child masses (largest first), times ``scale``."""
    mass = sub.groupby([feature, child])["w"].sum().rename("m").reset_index()
    mass = mass.sort_values("m", ascending=False, kind="stable")
    mass["k"] = mass.groupby(feature, sort=False).cumcount()
    top = mass[mass["k"] < SIGNATURE_K]
    e = np.zeros((len(values), SIGNATURE_K))
    e[pd.Index(values).get_indexer(top[feature]), top["k"].to_numpy()] = top["m"].to_numpy() * scale
    return e


def _poisson(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """tokens x candidates: -log likelihood (without constants) of counts under expected counts."""
    e = np.maximum(expected, 1e-6)
    return e.sum(axis=1)[None, :] - counts @ np.log(e).T


def _assign_cost(cost: np.ndarray, cost_unlisted: np.ndarray) -> np.ndarray:
    full = np.hstack([cost, np.repeat(cost_unlisted[:, None], cost.shape[0], axis=1)])
    rows, cols = linear_sum_assignment(full)
    out = np.full(cost.shape[0], -1)
    real = cols < cost.shape[1]
    out[rows[real]] = cols[real]
    return out


def _assign_classes(cost: np.ndarray, cost_unlisted: np.ndarray, size: np.ndarray) -> list[np.ndarray]:
    """Per class of ``size[c]`` exchangeable tokens (rows of ``cost``): the candidates it takes, best first.

    The transportation problem of :func:`_assign_cost` with a class's tokens as one supply: each
    candidate to at most one token, a class at most ``size[c]`` candidates, the rest unlisted. Only
    pairs that beat unlisted enter (an optimum never uses another: moving its token to unlisted
    costs no more and frees the candidate). Its constraint matrix is totally unimodular, so the
    simplex's vertex is integral: the same optimum as the Hungarian assignment of every token."""
    gain = cost - cost_unlisted[:, None]
    ci, vi = np.nonzero(gain < 0)
    out = [np.zeros(0, dtype=np.int64) for _ in range(cost.shape[0])]
    if not len(ci):
        return out
    n_cls, n_val, n_var = cost.shape[0], cost.shape[1], len(ci)
    a = sparse.csr_matrix(
        (np.ones(2 * n_var), (np.r_[ci, n_cls + vi], np.r_[np.arange(n_var), np.arange(n_var)])), shape=(n_cls + n_val, n_var)
    )
    b = np.r_[size.astype(float), np.ones(n_val)]
    res = linprog(gain[ci, vi], A_ub=a, b_ub=b, bounds=(0, 1), method="highs-ds")
    if res.status != 0:
        raise RuntimeError(f"class assignment: {res.message}")
    take = res.x > 0.5
    picked = pd.DataFrame({"c": ci[take], "v": vi[take], "g": gain[ci[take], vi[take]]}).sort_values(["c", "g", "v"])
    for c, part in picked.groupby("c"):
        out[int(c)] = part["v"].to_numpy()
    return out


def _classes(parts: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens with equal rows in every part: (first token of each class, class of each token, class sizes)."""
    parts = [p for p in parts if p.shape[1]]
    if not parts:
        return np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64), np.array([n])
    _, first, inverse, size = np.unique(np.hstack(parts), axis=0, return_index=True, return_inverse=True, return_counts=True)
    return first, inverse.reshape(-1), size


class _View:
    """One public block as seen by one column: its reference grouped by the parents, with cells."""

    def __init__(self, block: Block, feature: str, pfeat: list[str], cond: list[str], decoded: Decoded, n: int):
        self.block, self.feature, self.pfeat, self.cond = block, feature, pfeat, cond
        cfeat = [decoded.feature[c] for c in cond]
        self.cell = _cells([decoded.values[c] for c in cond], n)
        ref = block.table.dropna(subset=[feature])
        self.ref = ref.assign(cell=_cells([ref[f].to_numpy(dtype=object) for f in cfeat], len(ref)))
        self.groups = self.ref.groupby(pfeat, sort=False) if pfeat else None

    def sub(self, key: tuple) -> pd.DataFrame | None:
        if not self.pfeat:
            return self.ref
        try:
            return self.groups.get_group(key)
        except KeyError:
            return None


def align_column(
    table: AttackTable, column: str, feature: str, blocks: list[Block], decoded: Decoded, mapping: dict[str, str]
) -> np.ndarray:
    codes = table.codes(column)
    n = len(codes)
    fblocks = [b for b in blocks if feature in b.features]
    primary = fblocks[0]
    covered = {c for c, v in decoded.values.items() if _coverage(codes, v) >= MIN_DECODED}
    parents = [
        p for p, f in decoded.feature.items()
        if p in covered and f in primary.features and f != feature and public_fd(primary, feature, f) and data_fd(codes, decoded.values[p])
    ]
    parents = _dedupe(parents, decoded)
    pfeat = [decoded.feature[p] for p in parents]
    views = [
        _View(b, feature, pfeat, _conditioning(b, feature, pfeat, decoded, covered), decoded, n)
        for b in fblocks if all(f in b.features for f in pfeat)
    ]
    frame = pd.DataFrame({"tok": codes})
    for i, p in enumerate(parents):
        frame[f"p{i}"] = decoded.values[p]
    frame = frame[frame["tok"] >= 0]
    pcols = [f"p{i}" for i in range(len(parents))]
    # Each token's parent values: the most common decoded tuple among its rows.
    if pcols:
        known = frame.dropna(subset=pcols)
        tuples = known.groupby(["tok", *pcols]).size().reset_index(name="n")
        tuples = tuples.sort_values("n", ascending=False).drop_duplicates("tok")
        token_parent = tuples.set_index("tok")[pcols]
    else:
        token_parent = pd.DataFrame(index=pd.Index(frame["tok"].unique(), name="tok"))
    cell_counts = []
    for v in views:
        f = pd.DataFrame({"tok": codes, "cell": v.cell})
        f = f[(f["tok"] >= 0) & f["cell"].notna()]
        cell_counts.append(f.groupby(["tok", "cell"]).size().unstack(fill_value=0))
    totals = frame.groupby("tok").size()
    desc = _descendant(table, column, feature, primary, mapping)
    sigs = _signatures(table.codes(desc), codes) if desc else None
    dfeat = mapping.get(desc) if desc else None

    result: dict[int, object] = {}
    groups = token_parent.groupby(pcols, sort=False) if pcols else [((), token_parent)]
    for key, toks in groups:
        key = key if isinstance(key, tuple) else (key,)
        tok_ids = toks.index.to_numpy()
        subs = [v.sub(key) for v in views]
        if subs[0] is None:
            continue
        candidates = subs[0].groupby(feature)["w"].sum()
        values = candidates.index.to_numpy()
        n_group = float(totals.loc[tok_ids].sum())
        mats = [None if sub is None else cc.reindex(index=tok_ids, fill_value=0) for sub, cc in zip(subs, cell_counts)]
        conditioned = any(m is not None and len(m.columns) > 1 for m in mats)
        use_sig = sigs is not None and not (conditioned and SIGNATURE_ONLY_UNCONDITIONED)
        sig = sigs.reindex(index=tok_ids, fill_value=0.0).to_numpy() if use_sig else None
        size = None  # None: one row per token (Hungarian); else one row per class of equal tokens
        if len(tok_ids) > HUNGARIAN_MAX or len(tok_ids) * (len(values) + len(tok_ids)) > HUNGARIAN_MAX_ENTRIES:
            parts = [m.to_numpy(dtype=float) for m in mats if m is not None] + ([sig] if use_sig else [])
            first, inverse, size = _classes(parts, len(tok_ids))
            mats = [None if m is None else m.iloc[first] for m in mats]
            sig = sig[first] if use_sig else None
        rows = len(tok_ids) if size is None else len(size)
        cost = np.zeros((rows, len(values)))
        cost_unlisted = np.zeros(rows)
        for v, sub, c in zip(views, subs, mats):
            if sub is None:
                continue
            cells = list(c.columns)
            c = c.to_numpy(dtype=float)
            if not cells:
                continue
            by_cell = sub.groupby([feature, "cell"])["w"].sum().unstack(fill_value=0.0)
            by_cell = by_cell.reindex(index=values, columns=cells, fill_value=0.0)
            marginal = sub.groupby(feature)["w"].sum().reindex(values).fillna(0.0).to_numpy()
            p_marg = marginal / max(marginal.sum(), 1e-300)
            cell_mass = by_cell.sum(axis=0).to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                p_cell = np.where(cell_mass > 0, by_cell.to_numpy() / cell_mass, p_marg[:, None])
            p = (1 - SMOOTHING) * p_cell + SMOOTHING * p_marg[:, None]
            group_cells = c.sum(axis=0) if size is None else size.astype(float) @ c
            cost += _poisson(c, p * group_cells[None, :])
            share = (group_cells + 1e-9) / (group_cells.sum() + 1e-9 * len(group_cells))
            cost_unlisted += UNLISTED_EXPECTED * share.sum() - c @ np.log(UNLISTED_EXPECTED * share)
        if use_sig:
            s = sig
            scale = n_group / max(candidates.sum(), 1e-300)
            e = _expected_signatures(subs[0], feature, dfeat, values, scale)
            cost += _poisson(s, e)
            unl = np.zeros(SIGNATURE_K)
            unl[0] = UNLISTED_EXPECTED
            cost_unlisted += _poisson(s, unl[None, :])[:, 0]
        if size is None:
            chosen = _assign_cost(cost, cost_unlisted)
            for t, j in zip(tok_ids, chosen):
                if j >= 0:
                    result[int(t)] = values[j]
            continue
        taken = _assign_classes(cost, cost_unlisted, size)
        members = pd.Series(tok_ids).groupby(inverse).apply(lambda t: np.sort(t.to_numpy()))
        for k, toks in members.items():
            for t, j in zip(toks, taken[k]):
                result[int(t)] = values[j]
    lookup = np.array([result.get(i) for i in range(codes.max() + 1)] + [None], dtype=object)
    return lookup[np.where(codes >= 0, codes, len(lookup) - 1)]


def frequency_attack(table: AttackTable, blocks: list[Block], mapping: dict[str, str] | None = None) -> Decoded:
    """Decode every exported column that maps to a public feature."""
    mapping = mapping if mapping is not None else map_columns(table, blocks)
    decoded = Decoded()
    for c in table.plain:
        if c in mapping:
            decoded.feature[c] = mapping[c]
            decoded.values[c] = _as_object(table.rows[c].to_numpy())
    order = sorted((c for c in table.tokens if c in mapping), key=lambda c: table.rows[c].nunique())
    for c in order:
        f = mapping[c]
        decoded.values[c] = align_column(table, c, f, blocks, decoded, mapping)
        decoded.feature[c] = f
    return decoded
