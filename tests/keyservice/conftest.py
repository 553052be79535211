"""Fixtures of the key service tests (helpers: ks_support.py beside this file)."""

from __future__ import annotations

import pytest

from ks_support import make_setup


@pytest.fixture
def keyservice(tmp_path):
    setup = make_setup(tmp_path, limits={"hes": {"evaluations": 300, "window_seconds": 3600}})
    setup.start()
    yield setup
    setup.stop()
