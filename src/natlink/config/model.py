"""The linkage model's YAML (``conf/model*.yaml``): comparisons, levels, blocking and training rules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from natlink.config.base import Frozen
from natlink.errors import ConfigError


class LevelSpec(Frozen):
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


class ComparisonSpec(Frozen):
    name: str
    null_when: list[str] = Field(default_factory=list)  # columns whose NULL means "no information"
    levels: list[LevelSpec]


class TrainingSpec(Frozen):
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


class ModelConfig(Frozen):
    name: str
    link_type: Literal["dedupe_only", "link_only", "link_and_dedupe"] = "dedupe_only"
    # deterministic: one token per field and value (natlink.tokens.encode). salted: comparison
    # tokens salted by the block of each prediction rule, so value frequencies are hidden from the
    # linkage centre (natlink.tokens.salted); the providers then tokenise with this model (its rules
    # and compared fields are part of the encoding) and ship u-probabilities with their manifests.
    encoding: Literal["deterministic", "salted"] = "deterministic"
    comparisons: list[ComparisonSpec]
    blocking_rules_for_prediction: list[str | list[str]]
    training: TrainingSpec

    def model_post_init(self, __context: Any) -> None:
        if self.encoding == "salted":
            tf = [lv.exact for c in self.comparisons for lv in c.levels if lv.tf_adjustment]
            if tf:
                raise ValueError(f"encoding salted: term-frequency adjustments ({tf}) need global value frequencies, which salted tokens hide; remove tf_adjustment")
            dice = [c.name for c in self.comparisons for lv in c.levels if lv.dice]
            if dice:
                raise ValueError(f"encoding salted: comparisons {dice} use Bloom filters, which salted tables do not carry")

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
