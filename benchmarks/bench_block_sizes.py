"""What salted block sizes tell the linkage centre as the population grows: one table.

A block-salted table hides each field's value frequencies, but not how many records share a block
key. The centre counts the records of every block of a rule on a name field and a date, ranks the
blocks by size, and names them after the most probable public (name, date) values in the same
order: the biggest blocks are the commonest names'. This benchmark measures that attack at
national sizes without tokenising: a block key is one-to-one with its (name, date) value, so the
centre's counts are the counts of the values. The population is drawn from the attacker's own
public tables (``benchmarks/attacks/public.py``: surnames with the generator's 40% rare tail; dates
of birth from the age pyramid; sex from the pyramid's share by age, then a given name of that sex
and birth era, nicknames included), so the attacker's knowledge is exact: an upper bound.

    python benchmarks/bench_block_sizes.py                                   # 100k, 1M, 10M, 60M
    python benchmarks/bench_block_sizes.py --persons 100000 1000000

A rule is a name field and a date feature (any order, as conf/model.yaml spells it). Given names
depend on sex and birth era, so the public (given name, date) distribution is P(date) P(name | the
date's year), not a product: the blocks are ranked against it year by year. Per rule and size:
records, blocks, the largest block, the share of records in blocks of two or more, and the share of
records whose name field the rank alignment names correctly (for ``given_initial``, the initial:
one of ~23 letters, which alone names no one). Beside it the floor no encoding removes: guessing
the field's commonest value for everyone.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import load_avg, print_table  # noqa: E402
from attacks import public  # noqa: E402

# The rules measured, spelt as in conf/model.yaml: a name field and a date feature
# (attacks.public.date_block). [family_name, dob] and [dob, given_name] are shipped; the two others
# were shipped until 2026-12-02 and issue 18.
RULES = (("family_name", "dob_year"), ("family_name", "dob"), ("dob", "given_initial"), ("dob", "given_name"))
NAMED = {"family_name": "surname", "given_name": "given name", "given_initial": "initial (names no one alone)"}
CHUNK = 10_000_000  # persons drawn per step (bounded memory at 60M)


class Public(NamedTuple):
    """The attacker's public distribution of a rule's (name, date value) pairs, which the population
    is drawn from: a date, then a group of the name table (sex and birth year for given names; one
    group for surnames) given the date's year, then a name given the group."""

    w_date: np.ndarray  # P(date of birth)
    date_value: np.ndarray  # each date's value index (of the rule's date feature)
    date_year: np.ndarray  # each date's year row of group_by_year (all 0 if the name ignores the year)
    group_by_year: np.ndarray  # [years, groups] P(group | year)
    name_by_group: np.ndarray  # [groups, names] P(name | group)
    w_value: np.ndarray  # P(date value)
    value_year: np.ndarray  # each value's year row (a value spans one year)

    @property
    def name_by_year(self) -> np.ndarray:
        """[years, names] P(name | year)."""
        return self.group_by_year @ self.name_by_group


def split(rule: tuple[str, str]) -> tuple[str, str]:
    """(name field, date feature) of a rule of two fields."""
    name = [f for f in rule if f in NAMED]
    if len(rule) != 2 or len(name) != 1:
        raise ValueError(f"a rule is one name field of {sorted(NAMED)} and one date feature: {list(rule)}")
    return name[0], next(f for f in rule if f != name[0])


def label(rule: tuple[str, str]) -> str:
    return f"[{', '.join(rule)}]"


def name_table(field: str, tail_share: float) -> pd.DataFrame:
    """P(``field``, group columns) from the public tables (column ``w``)."""
    if field == "family_name":
        return public.family_distribution(tail_share)
    given = public.given_distribution(public.DEFAULT_REFERENCE_DATE)
    if field == "given_initial":
        given = given.assign(given_initial=given["given_name"].str[0]).drop(columns="given_name")
    return given


@lru_cache(maxsize=None)
def distributions(rule: tuple[str, str], tail_share: float = 0.4) -> Public:
    """The public distribution of ``rule``'s pairs (:class:`Public`)."""
    field, date_field = split(rule)
    dates = public.date_block(public.DEFAULT_REFERENCE_DATE, 10, 90).table
    w_date = dates["w"].to_numpy() / dates["w"].sum()
    codes, date_value = np.unique(dates[date_field].to_numpy(), return_inverse=True)
    names = name_table(field, tail_share)
    keys = [c for c in names.columns if c not in (field, "w")] or None
    group = names.groupby(keys).ngroup().to_numpy() if keys else np.zeros(len(names), dtype=np.int64)
    name, _ = pd.factorize(names[field])
    by_group = np.zeros((group.max() + 1, name.max() + 1))
    np.add.at(by_group, (group, name), names["w"].to_numpy())
    w_group = by_group.sum(axis=1)
    if keys and "dob_year" in keys:  # the group is drawn given the date's year
        years, date_year = np.unique(dates["dob_year"].astype(int).to_numpy(), return_inverse=True)
        group_year = np.searchsorted(years, names.groupby(keys)["dob_year"].first().to_numpy())
        group_by_year = np.zeros((len(years), len(w_group)))
        group_by_year[group_year, np.arange(len(w_group))] = w_group
    else:
        date_year, group_by_year = np.zeros(len(dates), dtype=np.int64), w_group[None, :]
    group_by_year /= group_by_year.sum(axis=1, keepdims=True)
    value_year = np.zeros(len(codes), dtype=np.int64)
    value_year[date_value] = date_year
    if len(np.unique(date_value * len(group_by_year) + date_year)) != len(codes):
        raise ValueError(f"{date_field} does not determine the birth year, on which {field} depends")
    return Public(w_date, date_value, date_year, group_by_year, by_group / w_group[:, None],
                  np.bincount(date_value, weights=w_date, minlength=len(codes)), value_year)


def block_size_attack(persons: int, rule: tuple[str, str], *, tail_share: float = 0.4, seed: int = 42) -> dict[str, float]:
    """The rank-alignment attack on the blocks of ``rule`` (a name field and a date) of ``persons``."""
    p = distributions(tuple(rule), tail_share)
    ids, counts = block_counts(persons, p, seed)
    floor = (np.bincount(p.value_year, weights=p.w_value, minlength=len(p.name_by_year)) @ p.name_by_year).max()
    return {**attack(ids, counts, p.w_value, p.name_by_year, p.value_year), "floor": float(floor)}


def cdf(w: np.ndarray) -> np.ndarray:
    """Cumulative distributions of the rows of ``w`` ([rows, values]), each ending at exactly 1."""
    c = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    c[:, -1] = 1.0
    return c


def draw(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per person, an index drawn from row ``rows[i]`` of the cumulative distributions ``cdf``
    with the uniform ``u[i]``: one search in the rows laid end to end."""
    n = cdf.shape[1]
    flat = (cdf + np.arange(len(cdf))[:, None]).ravel()
    return np.minimum(np.searchsorted(flat, rows + u) - rows * n, n - 1)


def block_counts(n: int, p: Public, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (name, value) blocks of ``n`` persons: (block ids, name * values + value; records per block)."""
    rng = np.random.default_rng(seed)
    c_name, c_date, c_group = cdf(p.name_by_group), cdf(p.w_date[None, :]), cdf(p.group_by_year)
    parts = []
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        u_name, u_date = rng.random(m), rng.random(m)
        d = draw(c_date, np.zeros(m, dtype=np.int64), u_date)
        g = draw(c_group, p.date_year[d], rng.random(m)) if c_group.shape[1] > 1 else np.zeros(m, dtype=np.int64)
        parts.append(draw(c_name, g, u_name).astype(np.int64) * len(p.w_value) + p.date_value[d])
    return np.unique(np.concatenate(parts), return_counts=True)


def top_names(w_value: np.ndarray, name_by_year: np.ndarray, value_year: np.ndarray, k: int) -> np.ndarray:
    """The name of each of the ``k`` most probable public (name, value) pairs, most probable first,
    where P(name, value) = P(value) P(name | the value's year) (``name_by_year`` one row a year)."""
    n_names = name_by_year.shape[1]
    groups, name_orders = [], []
    for y, w_name in enumerate(name_by_year):
        values = np.flatnonzero(value_year == y)
        name_order = np.argsort(-w_name, kind="stable")
        groups.append((np.sort(w_value[values])[::-1], w_name[name_order]))
        name_orders.append(name_order)
    g, _, ib = public.top_pairs_grouped(groups, k)
    return np.concatenate(name_orders)[g * n_names + ib]


def attack(ids: np.ndarray, counts: np.ndarray, w_value: np.ndarray, name_by_year: np.ndarray,
           value_year: np.ndarray) -> dict[str, float]:
    """Rank alignment of the blocks (ids: name * values + value) of two or more records with the most
    probable public (name, value) pairs: the share of records whose name their block is given.
    Blocks of one size are alike to the centre (their keys are salted), so the names given to their
    ranks fall on them in any order: a size level of S blocks of c records, given the names A and
    holding the names B, names c * sum_n A(n) B(n) / S records (the expectation, not an order's luck)."""
    n, n_names = counts.sum(), name_by_year.shape[1]
    shared = np.flatnonzero(counts >= 2)
    order = shared[np.argsort(-counts[shared], kind="stable")]  # biggest blocks first
    named = top_names(w_value, name_by_year, value_year, len(order))  # the name each rank is given
    size = counts[order]
    level = np.cumsum(np.r_[0, size[1:] != size[:-1]])  # each rank's size level
    given, n_given = np.unique(level[: len(named)] * n_names + named, return_counts=True)
    held, n_held = np.unique(level * n_names + ids[order] // len(w_value), return_counts=True)
    _, ig, ih = np.intersect1d(given, held, assume_unique=True, return_indices=True)
    lv = given[ig] // n_names
    hit = (n_given[ig] * n_held[ih] * size[np.searchsorted(level, lv)] / np.bincount(level)[lv]).sum()
    return {
        "blocks": len(ids),
        "largest block": int(counts.max()),
        "records in blocks of 2+": float(counts[shared].sum() / n),
        "named by block size": float(hit / n),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000, 60_000_000])
    parser.add_argument("--tail-share", type=float, default=0.4, help="share of rare generated surnames (conf/synth.yaml)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    load_start = load_avg()
    rows = []
    for n in args.persons:
        for rule in RULES:
            t = time.perf_counter()
            got = block_size_attack(n, rule, tail_share=args.tail_share, seed=args.seed)
            rows.append([f"{n:,}", label(rule), NAMED[split(rule)[0]], f"{got['blocks']:,}", f"{got['largest block']:,}",
                         f"{100 * got['records in blocks of 2+']:.1f}%", f"{100 * got['named by block size']:.2f}%",
                         f"{100 * got['floor']:.2f}%", f"{time.perf_counter() - t:.0f}"])
    print(f"\nbench_block_sizes: load average at start {load_start}, at end {load_avg()}")
    print_table(["persons", "rule", "field named", "blocks", "largest block", "records in blocks of 2+",
                 "named correctly by block size", "floor: commonest value for all", "s"], rows)


if __name__ == "__main__":
    main()
