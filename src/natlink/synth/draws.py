"""Deterministic random draws as native Spark columns.

Every draw is a pure function of (seed, salt, row keys) through ``xxhash64``, so the output
does not depend on partitioning, task order or the number of cores. Different salts give
independent draws; the same (seed, salt, keys) always gives the same value.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column
from pyspark.sql import functions as F

from natlink.synth import tables

__all__ = ["uniform", "index", "choice", "geometric"]


def _salt(seed: int, salt: str) -> int:
    """A signed 64-bit constant for (seed, salt): hashing a long is much cheaper than hashing a string."""
    digest = hashlib.blake2b(f"{seed}\x1f{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def uniform(seed: int, salt: str, *keys: Column) -> Column:
    """A deterministic U[0,1) draw from (seed, salt, keys); independent across salts."""
    h = F.xxhash64(F.lit(_salt(seed, salt)), *keys)
    return F.shiftrightunsigned(h, 11).cast("double") * (1.0 / (1 << 53))


def index(u: Column, n: int | Column) -> Column:
    """floor(u * n) as an int in [0, n): a uniform ``u`` made a uniform index."""
    return F.floor(u * n).cast("int")


def choice(u: Column, values: list | tuple) -> Column:
    """One of a literal list, uniformly."""
    return F.element_at(tables.literal_array(values), index(u, len(values)) + 1)


def geometric(u: Column, mean: Column) -> Column:
    """Failures before the first success with the given mean (0 when the mean is 0)."""
    m = F.greatest(mean, F.lit(1e-9))
    p = F.lit(1.0) / (F.lit(1.0) + m)
    return F.floor(F.log(F.lit(1.0) - u) / F.log(F.lit(1.0) - p)).cast("int")
