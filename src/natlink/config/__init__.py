"""Typed, frozen configuration from ``conf/*.yaml``; unknown keys are rejected.

One module per file kind: :mod:`~natlink.config.environment`, :mod:`~natlink.config.datasets`,
:mod:`~natlink.config.model`, :mod:`~natlink.config.link`, :mod:`~natlink.config.demo`, :mod:`~natlink.config.run`,
:mod:`~natlink.config.synth`, :mod:`~natlink.config.case_study`, :mod:`~natlink.config.providers`
(the trusted manifest signers); :func:`load` reads any of them.
"""

from natlink.config.base import Frozen, load, project_root, resolve
from natlink.config.datasets import DatasetConfig, SourceSpec, load_dataset
from natlink.config.demo import DemoConfig
from natlink.config.environment import EnvironmentConfig
from natlink.config.link import LinkConfig
from natlink.config.model import ComparisonSpec, LevelSpec, ModelConfig, TrainingSpec
from natlink.config.run import RunConfig

__all__ = [
    "Frozen",
    "load",
    "project_root",
    "resolve",
    "DatasetConfig",
    "SourceSpec",
    "load_dataset",
    "DemoConfig",
    "RunConfig",
    "EnvironmentConfig",
    "LinkConfig",
    "ComparisonSpec",
    "LevelSpec",
    "ModelConfig",
    "TrainingSpec",
]
