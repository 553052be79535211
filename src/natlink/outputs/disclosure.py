"""Small-count suppression for everything a person outside the linkage centre reads.

A count from 1 to ``min_cell_count - 1`` (default 10) can single a person out ("the 2 persons
with 7 records each"), so the HTML report and research extracts withhold it: the value becomes
None (shown as "–", with the reason in the page) or ``"<10"`` in JSON. Zero is not disclosive
and stays. Where a row of cells has a published total, withholding one cell alone would let it
be recovered by subtraction, so the total is withheld too (secondary suppression).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, MutableMapping, Sequence

__all__ = ["DEFAULT_MIN_CELL_COUNT", "is_small", "withhold", "withhold_columns", "withhold_keys"]

DEFAULT_MIN_CELL_COUNT = 10


def is_small(value: Any, min_cell_count: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < min_cell_count


def withhold(value: Any, min_cell_count: int) -> Any:
    """None for a small count, else the value unchanged."""
    return None if is_small(value, min_cell_count) else value


def withhold_keys(record: MutableMapping[str, Any], keys: Iterable[str], min_cell_count: int) -> list[str]:
    """Withhold the small counts of ``record`` under ``keys`` in place; returns the keys withheld."""
    done = []
    for key in keys:
        if key in record and is_small(record[key], min_cell_count):
            record[key] = None
            done.append(key)
    return done


def withhold_columns(rows: Sequence[MutableMapping[str, Any]], keys: Sequence[str], min_cell_count: int,
                     totals: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Withhold small counts in every row; with ``totals`` (column -> total over the rows), return
    the totals with a column's total withheld whenever exactly one of its cells was (secondary)."""
    withheld_per_key = {k: 0 for k in keys}
    for row in rows:
        for key in withhold_keys(row, keys, min_cell_count):
            withheld_per_key[key] += 1
    if totals is None:
        return None
    out = dict(totals)
    for key in keys:
        if withheld_per_key[key] == 1 or is_small(out.get(key), min_cell_count):
            out[key] = None
    return out
