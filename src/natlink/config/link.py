"""Link settings (``conf/link.yaml``): threshold, budget, mode and engine. The only place their defaults live."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from natlink.config.base import Frozen


class LinkConfig(Frozen):
    threshold_match_probability: float = Field(0.9, gt=0, lt=1)
    max_comparisons_per_rule: float = 5e8
    mode: Literal["auto", "full", "incremental"] = "auto"
    # With term-frequency adjustments, auto runs full once the record count has moved by more than
    # this share since the last full run (frequencies drift; see natlink.linkage.run._tf_drift_ok).
    max_incremental_growth: float = Field(0.2, ge=0)
    cluster_method: Literal["auto", "driver", "spark"] = "auto"
    # Where pairs are scored and clustered (natlink.linkage.inprocess): auto runs in process (Splink's DuckDB
    # backend and scipy on the driver) while the population has at most in_process_max_records.
    engine: Literal["auto", "spark", "in_process"] = "auto"
    in_process_max_records: int = Field(1_000_000, ge=0)
    evaluation_thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 0.99])
    # History every output table keeps for time travel and VACUUM (docs/delta.md); set after each
    # completed run when it differs (Delta's own defaults: 7 days of files, 30 of log).
    retention_days: int = Field(400, ge=7)
    # `natlink discover --token-column C --token T`: the only token columns a lookup may use (a
    # person-level identifier; never sex, initial, year or a name alone), and the most persons one
    # lookup may return: a token shared by a group is refused, so nobody can list a group's datasets.
    # Every lookup, refused or not, is a row of TABLES/discover_audit.
    discover_columns: list[str] = Field(default_factory=lambda: ["tk_nhs_number"])
    discover_max_persons: int = Field(1, ge=1)
