"""Link settings (``conf/link.yaml``): threshold, budget, mode and engine. The only place their defaults live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Literal

from pydantic import Field, model_validator

from natlink.config.base import Frozen

if TYPE_CHECKING:
    from natlink.config.datasets import DatasetConfig


class CannotLink(Frozen):
    """Records that must never end in one cluster, and what happens to a component that holds some.

    Clusters are connected components of the match edges, so one wrong edge joins two persons and,
    as a population grows, chains of such edges join many (``benchmarks/bench_chaining.py``). A
    component that breaks one of these rules is split at its weakest edges
    (:mod:`natlink.linkage.constraints`): its edges are taken strongest first and an edge that would
    join two parts breaking a rule is dropped. A component that breaks none comes out as before.
    """

    enabled: bool = True
    # Two records with NHS-number tokens that are both present and different are two persons
    # (standardise nulls numbers that fail the modulus 11 check, so a token is a valid number).
    # Applies where the model reads tk_nhs_number (the engine holds it compacted to 64 bits).
    nhs_number: bool = True
    # Datasets that hold at most one row per person (``one_row_per_person: true`` in their
    # conf/datasets file; LinkConfig.declaring adds those): two of their rows are two persons.
    one_row_per_person: list[str] = Field(default_factory=list)
    # A component that breaks a rule is split on the driver, strongest edge first: one with more
    # edges than this is refused (natlink.errors.ComponentTooLargeError), never split partly or dropped.
    max_component_edges: int = Field(2_000_000, ge=1)


class BlockSplit(Frozen):
    """A prediction rule whose blocks of more than ``above`` records are split by ``by``.

    Comparisons per record of a rule grow with the population when its blocks do (a date of birth and
    a common given name: more people share them as the population grows). A block of the rule with
    more than ``above`` records (counted over the population being linked) is compared only within
    its sub-blocks: records that also agree on ``by`` (model columns; on block-salted tables the
    rule's own salted columns, so agreement is seen only inside the block, as before). Records
    lacking ``by`` form one sub-block. Small blocks are compared whole. Every run counts the blocks
    split, their records and the pairs not compared (:mod:`natlink.linkage.block_splits`).
    """

    rule: list[str] = Field(min_length=1)  # the prediction rule's columns, as the model lists them
    above: int = Field(ge=2)
    by: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _by_not_in_rule(self) -> "BlockSplit":
        inside = sorted(set(self.by) & set(self.rule))
        if inside:
            raise ValueError(f"split_large_blocks {self.rule}: by {inside} is already a column of the rule; split by another column")
        return self


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
    # Clusters that do not chain: cannot-link rules and splitting a component at its weakest edges.
    cannot_link: CannotLink = Field(default_factory=CannotLink)
    # Prediction rules whose large blocks are split (BlockSplit; counted in every run).
    split_large_blocks: list[BlockSplit] = Field(default_factory=list)

    def declaring(self, datasets: Iterable["DatasetConfig"]) -> "LinkConfig":
        """This config with every dataset of ``datasets`` that declares ``one_row_per_person`` added to
        ``cannot_link.one_row_per_person`` (the linkage centre reads token tables, not dataset configs,
        so where both are at hand this carries the dataset's declaration over)."""
        names = list(self.cannot_link.one_row_per_person)
        names += [d.name for d in datasets if d.one_row_per_person and d.name not in names]
        return self.model_copy(update={"cannot_link": self.cannot_link.model_copy(update={"one_row_per_person": names})})
