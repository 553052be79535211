"""What a provider computes and ships as aggregates: u-probabilities and coarse frequency classes.

u-probabilities: each provider scores random pairs of its own records (Splink's
``estimate_u_using_random_sampling``, on its deterministic per-field values, which it holds before
salting) and ships, per comparison level, only the agreement rate; the centre pools the providers'
rates weighted by their pair counts and fixes them in the model. No value, token or count of a value
leaves the provider: a handful of rates per level.

Frequency classes: a value's share among the provider's non-null values of the field, cut at fixed
thresholds into a few classes (0: rarest). Shipped per record as a small plain integer column
``fc_<field>``; the model splits the exact level by class (a discretised term-frequency
adjustment). What the class reveals is measured in :mod:`.leakage`.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

# Share of the field's values above which a value is in a class: 4 classes (0 rarest ... 3 commonest).
CLASS_CUTS = (0.0002, 0.001, 0.005)


def frequency_classes(values: pd.Series, cuts: Sequence[float] = CLASS_CUTS) -> pd.Series:
    """Class per row of ``values`` (NULL stays NULL) from the value's share among non-null values."""
    share = values.map(values.value_counts(normalize=True))
    cls = pd.Series(np.searchsorted(np.asarray(cuts), share.to_numpy(dtype=float, na_value=np.nan), side="right"), index=values.index)
    return cls.where(values.notna()).astype("Int8")


def level_u(settings: dict[str, Any]) -> list[list[float | None]]:
    """u-probability of every level of every comparison (None for the null level)."""
    return [[lv.get("u_probability") for lv in c["comparison_levels"]] for c in settings["comparisons"]]


def provider_u(table: pa.Table, settings: dict[str, Any], *, max_pairs: float, seed: int) -> tuple[list[list[float | None]], int]:
    """At one provider: u per level from random pairs of its records; and how many records it had."""
    from splink import DuckDBAPI, Linker

    linker = Linker(DuckDBAPI().register(table), settings, log_level=logging.ERROR)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    return level_u(linker.misc.save_model_to_json()), table.num_rows


def pool_u(per_provider: list[tuple[list[list[float | None]], int]]) -> list[list[float | None]]:
    """The centre's u: each level's rate averaged over providers, weighted by their pairs (n^2)."""
    weights = np.array([n * n for _, n in per_provider], dtype=float)
    weights /= weights.sum()
    first = per_provider[0][0]
    out: list[list[float | None]] = []
    for ci, comp in enumerate(first):
        row: list[float | None] = []
        for li, value in enumerate(comp):
            vals = [(u[ci][li], w) for (u, _), w in zip(per_provider, weights) if u[ci][li] is not None]
            row.append(None if not vals else float(sum(v * w for v, w in vals) / sum(w for _, w in vals)))
        out.append(row)
    return out
