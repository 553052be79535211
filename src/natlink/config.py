"""Typed, frozen configuration loaded from ``conf/*.yaml``; unknown keys are rejected.

Every loader names the file and the key path in its error, and never echoes values
that might be secrets (config holds key *references* only, e.g. ``env:NATLINK_KEY``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from natlink.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- environments --------------------------------------------------------------------------


class EnvironmentConfig(_Frozen):
    """Where Spark runs: ``local`` (embedded default) or ``cluster`` (under spark-submit)."""

    name: str
    master: str | None = None  # None: local[*] locally, spark-submit's master on a cluster
    spark_conf: dict[str, str] = Field(default_factory=dict)
    checkpoint_dir: str | None = None


# --- model ---------------------------------------------------------------------------------


class LevelSpec(_Frozen):
    """One comparison level: exact agreement of a token column, or a Spark SQL condition."""

    exact: str | None = None
    sql: str | None = None
    dice: str | None = None  # a Bloom filter column (bf_*): Dice similarity >= min_similarity
    min_similarity: float | None = Field(None, gt=0, le=1)
    label: str | None = None
    tf_adjustment: bool = False

    @field_validator("sql")
    @classmethod
    def _sql_mentions_sides(cls, value: str | None) -> str | None:
        if value is not None and "_l" not in value and "_r" not in value:
            raise ValueError("a sql level must compare the left (_l) and right (_r) records")
        return value

    def model_post_init(self, __context: Any) -> None:
        if sum(x is not None for x in (self.exact, self.sql, self.dice)) != 1:
            raise ValueError("a level needs exactly one of 'exact', 'sql' or 'dice'")
        if (self.dice is None) != (self.min_similarity is None):
            raise ValueError("a 'dice' level needs 'min_similarity' (and only a dice level takes it)")


class ComparisonSpec(_Frozen):
    name: str
    null_when: list[str] = Field(default_factory=list)  # columns whose NULL means "no information"
    levels: list[LevelSpec]


class TrainingSpec(_Frozen):
    seed: int = 42
    u_max_pairs: float = 2e6
    deterministic_rules: list[str | list[str]] = Field(default_factory=list)
    deterministic_recall: float = 0.8
    em_blocking_rules: list[str | list[str]]
    # Training needs a sample, not the population: records beyond max_records are sampled
    # (seeded). Splink's estimates are ratios of pair counts, unbiased under record sampling.
    max_records: int | None = 300_000
    # Which Splink backend estimates the parameters: "duckdb" trains on the driver over the
    # (bounded) sample; "spark" trains on the cluster. The model JSON is the same either way.
    backend: Literal["duckdb", "spark"] = "duckdb"
    em_max_pairs: float | None = None

    @field_validator("em_blocking_rules")
    @classmethod
    def _two_or_more(cls, value: list) -> list:
        if len(value) < 2:
            raise ValueError("EM needs two or more blocking rules so every comparison is trained")
        return value


class ModelConfig(_Frozen):
    name: str
    link_type: Literal["dedupe_only", "link_only", "link_and_dedupe"] = "dedupe_only"
    comparisons: list[ComparisonSpec]
    blocking_rules_for_prediction: list[str | list[str]]
    training: TrainingSpec

    @property
    def tf_columns(self) -> list[str]:
        """Token columns whose exact-agreement level is adjusted for term frequency."""
        return [lv.exact for c in self.comparisons for lv in c.levels if lv.tf_adjustment and lv.exact]

    def with_term_frequencies(self, columns: list[str] | tuple[str, ...]) -> "ModelConfig":
        """This model with TF adjustments on exactly the exact-agreement levels of ``columns``.

        Term frequencies are computed where the model scores (inside the secure environment,
        from the population being linked); they are never written to the model JSON or outputs.
        """
        wanted = set(columns)
        known = {lv.exact for c in self.comparisons for lv in c.levels if lv.exact}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(f"model {self.name}: no exact-agreement level on {unknown} to adjust for term frequency")
        comparisons = [
            c.model_copy(update={"levels": [lv.model_copy(update={"tf_adjustment": lv.exact in wanted}) for lv in c.levels]})
            for c in self.comparisons
        ]
        return self.model_copy(update={"comparisons": comparisons})


class LinkConfig(_Frozen):
    threshold_match_probability: float = Field(0.9, gt=0, lt=1)
    max_comparisons_per_rule: float = 5e8
    mode: Literal["auto", "full", "incremental"] = "auto"
    # With term-frequency adjustments, auto runs full once the record count has moved by more than
    # this share since the last full run (frequencies drift; see natlink.linkrun._tf_drift_ok).
    max_incremental_growth: float = Field(0.2, ge=0)
    cluster_method: Literal["auto", "driver", "spark"] = "auto"
    # Where pairs are scored and clustered (natlink.inprocess): auto runs in process (Splink's DuckDB
    # backend and scipy on the driver) while the population has at most in_process_max_records.
    engine: Literal["auto", "spark", "in_process"] = "auto"
    in_process_max_records: int = Field(1_000_000, ge=0)
    evaluation_thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 0.99])


# --- datasets: defined in natlink.datasets (onboarding), re-exported here ---------------------

from natlink.datasets import DatasetConfig, SourceSpec  # noqa: E402,F401  (older imports keep working)


# --- demo ----------------------------------------------------------------------------------


class DemoConfig(_Frozen):
    persons: int = 10_000
    seed: int = 42
    output_dir: str = "output/demo"
    key: str | None = None  # key reference; None -> a random demo key file under output_dir
    environment: str = "conf/environments/local.yaml"
    model: str = "conf/model.yaml"
    link: str = "conf/link.yaml"
    datasets: list[str] = Field(default_factory=lambda: ["conf/datasets/gp.yaml", "conf/datasets/hes.yaml"])
    model_dir: str = "linkage_models"


def load(path: str | Path, model: type[T], *, base_dir: str | Path | None = None) -> T:
    """Load one YAML file into ``model``; errors name the file and the offending keys."""
    path = Path(path)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def project_root() -> Path:
    """The checkout holding ``conf/`` (cwd first, then the package's source checkout)."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "conf").is_dir():
            return candidate
    return Path.cwd()
