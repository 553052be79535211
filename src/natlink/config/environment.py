"""Where Spark runs: ``conf/environments/*.yaml``."""

from __future__ import annotations

from pydantic import Field

from natlink.config.base import Frozen


class EnvironmentConfig(Frozen):
    """Where Spark runs: ``local`` (embedded default) or ``cluster`` (under spark-submit)."""

    name: str
    master: str | None = None  # None: local[*] locally, spark-submit's master on a cluster
    spark_conf: dict[str, str] = Field(default_factory=dict)
    checkpoint_dir: str | None = None
