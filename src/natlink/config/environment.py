"""Where Spark runs: ``conf/environments/*.yaml``."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from natlink.config.base import Frozen

# Confs whose value is a secret (Spark redacts the same names); a path to one (".file") or a switch is not.
_SECRET_CONF = re.compile(r"(?i)secret|password|passwd|oauthtoken|access[._-]?key")
_NOT_A_SECRET = (".file", ".enabled")


class EnvironmentConfig(Frozen):
    """Where Spark runs: ``local`` (embedded default) or ``cluster`` (under spark-submit)."""

    name: str
    master: str | None = None  # None: local[*] locally, spark-submit's master on a cluster
    spark_conf: dict[str, str] = Field(default_factory=dict)
    checkpoint_dir: str | None = None
    # Key *reference* (env:NAME, file:PATH, ...) of the shared secret for spark.authenticate on a
    # standalone cluster (YARN and Kubernetes generate one per application): resolved when the
    # session is built (natlink.commands.spark_conf_for), never written in the YAML itself.
    auth_secret: str | None = None

    @field_validator("spark_conf")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        secret = sorted(k for k in value if _SECRET_CONF.search(k) and not k.lower().endswith(_NOT_A_SECRET))
        if secret:
            raise ValueError(f"{secret} look like secrets: config holds key references only (auth_secret for spark.authenticate.secret)")
        return value
