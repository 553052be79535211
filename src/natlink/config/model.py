"""The linkage model's YAML (``conf/model*.yaml``): comparisons, levels, blocking and training rules.

Every key, its default and meaning: docs/model.md. Unknown keys are refused, naming the key and
the keys allowed there (:func:`natlink.config.base.load`); every rule below names its key.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from natlink.config.base import Frozen
from natlink.errors import ConfigError


_TOKEN = re.compile(r"^tk_[a-z0-9_]+$")  # a keyed token column: the model never sees plaintext
_BLOOM = re.compile(r"^bf_[a-z0-9_]+$")  # a Bloom filter column
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # becomes a Splink output column name
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")  # a DuckDB memory size
_RESERVED_LABELS = {"null"}
ELSE_LABEL = "all other comparisons"  # the level added after a comparison's own levels


def _check_rules(rules: list[str | list[str]]) -> list[str | list[str]]:
    """A rule is a list of token columns that must agree, or Splink SQL comparing ``l.`` and ``r.``."""
    for i, rule in enumerate(rules):
        if isinstance(rule, str):
            if "l." not in rule or "r." not in rule:
                raise ValueError(f"rule [{i}] {rule!r}: SQL must compare the left (l.col) and right (r.col) records")
        elif not rule:
            raise ValueError(f"rule [{i}] is an empty list: name the token columns that must agree")
        else:
            bad = [c for c in rule if not _TOKEN.match(c)]
            if bad:
                raise ValueError(f"rule [{i}]: {bad} are not token columns (tk_...)")
    return rules


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
        if value is not None and not re.search(r"\b(tk|bf)_[a-z0-9_]+_[lr]\b", value):
            raise ValueError("a sql level must compare token columns of the left (tk_..._l) and right (tk_..._r) records")
        return value

    @field_validator("exact")
    @classmethod
    def _exact_token(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN.match(value):
            raise ValueError(f"{value!r} is not a token column (tk_...): the model compares tokens only")
        return value

    @field_validator("dice")
    @classmethod
    def _dice_bloom(cls, value: str | None) -> str | None:
        if value is not None and not _BLOOM.match(value):
            raise ValueError(f"{value!r} is not a Bloom filter column (bf_...)")
        return value

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value in _RESERVED_LABELS or value == ELSE_LABEL):
            raise ValueError(f"{value!r} cannot label a level (empty, or the name of a level natlink adds)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "LevelSpec":
        if sum(x is not None for x in (self.exact, self.sql, self.dice)) != 1:
            raise ValueError("a level needs exactly one of 'exact', 'sql' or 'dice'")
        if (self.dice is None) != (self.min_similarity is None):
            raise ValueError("a 'dice' level needs 'min_similarity' (and only a dice level takes it)")
        if self.tf_adjustment and self.exact is None:
            raise ValueError("tf_adjustment applies to an 'exact' level only")
        return self

    @property
    def chart_label(self) -> str:
        """The level's name in the model JSON, charts, sidecar and errors: ``label`` or one made from the level."""
        if self.label:
            return self.label
        if self.exact is not None:
            return f"exact {self.exact}"
        if self.dice is not None:
            return f"Dice {self.dice} >= {self.min_similarity}"
        return str(self.sql)


class ComparisonSpec(Frozen):
    name: str
    null_when: list[str] = Field(default_factory=list)  # columns whose NULL means "no information"
    levels: list[LevelSpec] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: lower-case letters, digits and '_', starting with a letter")
        return value

    @field_validator("null_when")
    @classmethod
    def _null_tokens(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if not (_TOKEN.match(c) or _BLOOM.match(c))]
        if bad:
            raise ValueError(f"{bad} are not token or Bloom filter columns")
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> "ComparisonSpec":
        labels = self.level_labels
        twice = sorted({lb for lb in labels if labels.count(lb) > 1})
        if twice:
            raise ValueError(f"comparison {self.name}: level labels must be unique, repeated: {twice} (set 'label')")
        return self

    @property
    def level_labels(self) -> list[str]:
        """Labels of the levels that get m and u: the configured ones, then the ELSE level."""
        return [lv.chart_label for lv in self.levels] + [ELSE_LABEL]


class TrainingSpec(Frozen):
    seed: int = 42
    u_max_pairs: float = Field(2e6, gt=0)
    # u of equality levels counted exactly from value frequencies over the whole population
    # (natlink.linkage.u_exact); sampling (u_max_pairs) gives the other levels' u.
    u_exact: bool = True
    deterministic_rules: list[str | list[str]] = Field(default_factory=list)
    deterministic_recall: float = Field(0.8, gt=0, le=1)
    em_blocking_rules: list[str | list[str]]
    # Training needs a sample, not the population: records beyond max_records are sampled
    # (seeded). Splink's estimates are ratios of pair counts, unbiased under record sampling.
    max_records: int | None = Field(300_000, ge=2)
    # Which Splink backend estimates the parameters: "duckdb" trains on the driver over the
    # (bounded) sample; "spark" trains on the cluster. The model JSON is the same either way.
    backend: Literal["duckdb", "spark"] = "duckdb"
    # EM's memory is bounded by default: at most em_max_pairs pairs per EM session (Splink samples
    # beyond it; None: no cap) and DuckDB under duckdb_memory_limit (a DuckDB size; None: DuckDB's
    # default, 80% of RAM), spilling to a temporary folder beyond it. Measured at 100k + 100k
    # records: benchmarks/bench_train_memory.py, docs/model.md (Memory).
    em_max_pairs: float | None = Field(2e6, gt=0)
    duckdb_memory_limit: str | None = "2GB"
    # Levels allowed to be seen 0 times in training (comparison name -> level labels). Their m (or
    # u) is then the Jeffreys estimate 0.5 / (pairs + 1) over the pairs that could have shown it,
    # recorded in the sidecar and the report. Any other level left untrained stops training.
    allow_unobserved: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("em_blocking_rules")
    @classmethod
    def _two_or_more(cls, value: list) -> list:
        if len(value) < 2:
            raise ValueError("EM needs two or more blocking rules so every comparison is trained")
        return _check_rules(value)

    @field_validator("deterministic_rules")
    @classmethod
    def _rules(cls, value: list) -> list:
        return _check_rules(value)

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE.match(value.strip()):
            raise ValueError(f"{value!r} is not a size DuckDB takes, e.g. '2GB' or '1536MiB'")
        return value


class ModelConfig(Frozen):
    name: str
    # Which pairs of the union of token tables are compared (docs/model.md, link_type): dedupe_only
    # every pair; link_only only pairs of records from different datasets (the `dataset` column).
    # link_and_dedupe is read as dedupe_only: over one union Splink's link_and_dedupe compares
    # exactly the same pairs, so the model JSON says dedupe_only.
    link_type: Literal["dedupe_only", "link_only", "link_and_dedupe"] = "dedupe_only"
    # deterministic: one token per field and value (natlink.tokens.encode). salted: comparison
    # tokens salted by the block of each prediction rule, so value frequencies are hidden from the
    # linkage centre (natlink.tokens.salted); the providers then tokenise with this model (its rules
    # and compared fields are part of the encoding) and ship u-probabilities with their manifests.
    encoding: Literal["deterministic", "salted"] = "deterministic"
    comparisons: list[ComparisonSpec] = Field(min_length=1)
    blocking_rules_for_prediction: list[str | list[str]] = Field(min_length=1)
    training: TrainingSpec

    @field_validator("blocking_rules_for_prediction")
    @classmethod
    def _rules(cls, value: list) -> list:
        return _check_rules(value)

    @field_validator("link_type")
    @classmethod
    def _alias(cls, value: str) -> str:
        return "dedupe_only" if value == "link_and_dedupe" else value

    @model_validator(mode="after")
    def _known_names(self) -> "ModelConfig":
        names = [c.name for c in self.comparisons]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"comparisons: names must be unique, repeated: {repeated}")
        by_name = {c.name: c for c in self.comparisons}
        for name, labels in self.training.allow_unobserved.items():
            if name not in by_name:
                raise ValueError(f"training.allow_unobserved.{name}: no comparison named {name!r}; comparisons: {names}")
            unknown = [lb for lb in labels if lb not in by_name[name].level_labels]
            if unknown:
                raise ValueError(
                    f"training.allow_unobserved.{name}: no level labelled {unknown}; its levels: {by_name[name].level_labels}"
                )
        if self.encoding == "salted":
            tf = [lv.exact for c in self.comparisons for lv in c.levels if lv.tf_adjustment]
            if tf:
                raise ValueError(f"encoding salted: term-frequency adjustments ({tf}) need global value frequencies, which salted tokens hide; remove tf_adjustment")
            dice = [c.name for c in self.comparisons for lv in c.levels if lv.dice]
            if dice:
                raise ValueError(f"encoding salted: comparisons {dice} use Bloom filters, which salted tables do not carry")
        return self

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
