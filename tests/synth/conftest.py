"""Shared by the synth tests."""

from __future__ import annotations

import hashlib

import pytest


def _rows_digest(df) -> str:
    lines = sorted(repr(tuple(r)) for r in df.collect())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.fixture(scope="session")
def rows_digest():
    """sha256 over the sorted repr() of every row of a frame, for golden digests (rows, not file
    bytes: file names carry a random id and the Parquet footer names the writer's version)."""
    return _rows_digest
