"""natlink: privacy-preserving record linkage of patient datasets at national scale.

The package face is a handful of verbs, the same functions the ``natlink`` command and the
spark-submit jobs call (:mod:`natlink.commands`)::

    import natlink

    manifest = natlink.tokenise("conf/datasets/gp.yaml", "env:NATLINK_KEY", "outbox/", data_dir="extract/")
    model = natlink.train([manifest.path, ...], "conf/model.yaml", "linkage_models/national.json")
    summary = natlink.link([manifest.path, ...], model, "tables/", run_id="2026-12")
    natlink.report(summary.run_id, "tables/")

Everything else lives in the stage subpackages: ``config``, ``spark``, ``store``, ``provider``,
``tokens``, ``linkage``, ``outputs``, ``synth`` (see ``docs/architecture.md``). Verbs load lazily,
so ``import natlink`` does not start Spark or import pyspark.
"""

from __future__ import annotations

import importlib
from typing import Any

from natlink.version import __version__

__all__ = ["__version__", "tokenise", "profile", "train", "link", "evaluate", "discover", "report", "demo", "run"]

_VERBS = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _VERBS:
        return getattr(importlib.import_module("natlink.commands"), name)
    raise AttributeError(f"module 'natlink' has no attribute {name!r}")
