"""What salted block sizes tell the linkage centre as the population grows: one table.

A block-salted table hides each field's value frequencies, but not how many records share a block
key. The centre counts the records of every block of a rule on a name field and a date, ranks the
blocks by size, and names them after the most probable public (surname, date) values in the same
order: the biggest blocks are the commonest surnames'. This benchmark measures that attack at
national sizes without tokenising: a block key is one-to-one with its (surname, date) value, so
the centre's counts are the counts of the values. The population is drawn from the attacker's own
public tables (``benchmarks/attacks/public.py``: surnames with the generator's 40% rare tail,
dates of birth from the age pyramid), so the attacker's knowledge is exact: an upper bound.

    python benchmarks/bench_block_sizes.py                                   # 100k, 1M, 10M, 60M
    python benchmarks/bench_block_sizes.py --persons 100000 1000000

Per rule and size: records, blocks, the largest block, the share of records in blocks of two or
more, and the share of records whose surname the rank alignment names correctly. Beside it the
floor no encoding removes: guessing the commonest surname for everyone.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import load_avg, print_table  # noqa: E402
from attacks import public  # noqa: E402

# The rules on a family name and a date measured, by the date's feature (attacks.public.date_block).
DATE_FIELDS = ("dob_year", "dob")
CHUNK = 10_000_000  # persons drawn per step (bounded memory at 60M)


@lru_cache(maxsize=None)
def distributions(tail_share: float, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """P(surname), P(date of birth), P(the date's ``field`` value) and each date's value index."""
    family = public.family_distribution(tail_share)["w"].to_numpy()
    dates = public.date_block(public.DEFAULT_REFERENCE_DATE, 10, 90).table
    w_date = dates["w"].to_numpy() / dates["w"].sum()
    codes, values = np.unique(dates[field].to_numpy(), return_inverse=True)
    return family / family.sum(), w_date, np.bincount(values, weights=w_date, minlength=len(codes)), values


def block_size_attack(persons: int, field: str, *, tail_share: float = 0.4, seed: int = 42) -> dict[str, float]:
    """The rank-alignment attack on the blocks of the rule [family_name, ``field``] of ``persons``."""
    w_family, w_date, w_value, date_value = distributions(tail_share, field)
    ids, counts = block_counts(persons, w_family, w_date, date_value, len(w_value), seed)
    return {**attack(ids, counts, w_family, w_value, len(w_value)), "floor": float(w_family.max())}


def block_counts(n: int, w_family: np.ndarray, w_date: np.ndarray, date_value: np.ndarray, n_values: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (surname, value) blocks of ``n`` persons: (block ids, surname * n_values + value; records per block)."""
    rng = np.random.default_rng(seed)
    cf, cd = np.cumsum(w_family), np.cumsum(w_date)
    parts = []
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        s = np.minimum(np.searchsorted(cf, rng.random(m) * cf[-1]), len(cf) - 1)
        d = np.minimum(np.searchsorted(cd, rng.random(m) * cd[-1]), len(cd) - 1)
        parts.append(s.astype(np.int64) * n_values + date_value[d])
    return np.unique(np.concatenate(parts), return_counts=True)


def attack(ids: np.ndarray, counts: np.ndarray, w_family: np.ndarray, w_value: np.ndarray, n_values: int) -> dict[str, float]:
    """Rank alignment of the blocks of two or more records with the most probable public pairs."""
    n = counts.sum()
    shared = np.flatnonzero(counts >= 2)
    order = shared[np.argsort(-counts[shared], kind="stable")]  # biggest blocks first
    fam_order, val_order = np.argsort(-w_family, kind="stable"), np.argsort(-w_value, kind="stable")
    ia, _ = public.top_pairs(w_family[fam_order], w_value[val_order], len(order))
    named = fam_order[ia]  # the surname each ranked block is given
    ranked = order[: len(named)]
    hit = counts[ranked][named == ids[ranked] // n_values].sum()
    return {
        "blocks": len(ids),
        "largest block": int(counts.max()),
        "records in blocks of 2+": float(counts[shared].sum() / n),
        "surname named by block size": float(hit / n),
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
        for field in DATE_FIELDS:
            t = time.perf_counter()
            got = block_size_attack(n, field, tail_share=args.tail_share, seed=args.seed)
            rows.append([f"{n:,}", f"[family_name, {field}]", f"{got['blocks']:,}", got["largest block"],
                         f"{100 * got['records in blocks of 2+']:.1f}%", f"{100 * got['surname named by block size']:.2f}%",
                         f"{100 * got['floor']:.2f}%", f"{time.perf_counter() - t:.0f}"])
    print(f"\nbench_block_sizes: load average at start {load_start}, at end {load_avg()}")
    print_table(["persons", "rule", "blocks", "largest block", "records in blocks of 2+", "surname named by block size",
                 "floor: commonest surname for all", "s"], rows)


if __name__ == "__main__":
    main()
