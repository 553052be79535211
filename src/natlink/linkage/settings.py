"""Splink settings from the model YAML (:mod:`natlink.config.model`), and the input check Splink lacks.

Settings are backend-neutral JSON: the same model scores on Spark or DuckDB.

Link types. natlink links one union of token tables, whose ``dataset`` column says where each
record came from. ``dedupe_only`` compares every pair of the union; ``link_only`` only pairs of
records from different datasets: the ``dataset`` column is Splink's source dataset column
(:func:`for_splink`), and where natlink makes pairs itself it adds the same condition to the join
(:func:`cross_source`). ``link_and_dedupe`` compares the same pairs as ``dedupe_only`` over one
union and is read as it.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame

from natlink import columns as C
from natlink.config.model import ELSE_LABEL, ComparisonSpec, LevelSpec, ModelConfig
from natlink.errors import SchemaError


def rule_sql(rule: str | list[str]) -> str:
    """A blocking rule: a list of columns that must agree, or raw Splink SQL (l./r.)."""
    if isinstance(rule, str):
        return rule
    return " AND ".join(f"l.{col} = r.{col}" for col in rule)


def _level_dict(level: LevelSpec) -> dict[str, Any]:
    if level.exact is not None:
        out: dict[str, Any] = {
            "sql_condition": f"{level.exact}_l = {level.exact}_r",
            "label_for_charts": level.chart_label,
        }
        if level.tf_adjustment:
            out["tf_adjustment_column"] = level.exact
            out["tf_adjustment_weight"] = 1.0
        return out
    if level.dice is not None:
        from natlink.tokens.encode import dice_sql

        return {
            "sql_condition": f"{dice_sql(level.dice)} >= {level.min_similarity}",
            "label_for_charts": level.chart_label,
        }
    return {"sql_condition": level.sql, "label_for_charts": level.chart_label}


def _comparison_dict(spec: ComparisonSpec) -> dict[str, Any]:
    null_cols = spec.null_when or [spec.levels[0].exact or spec.levels[0].dice or ""]
    null_cols = [c for c in null_cols if c]
    levels: list[dict[str, Any]] = []
    if null_cols:
        condition = " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in null_cols)
        levels.append({"sql_condition": condition, "label_for_charts": "null", "is_null_level": True})
    levels += [_level_dict(level) for level in spec.levels]
    levels.append({"sql_condition": "ELSE", "label_for_charts": ELSE_LABEL})
    return {"output_column_name": spec.name, "comparison_levels": levels}


LINK_ONLY = "link_only"


def cross_source(settings: dict[str, Any]) -> bool:
    """Whether the model compares only records of different datasets (``link_only``)."""
    return settings.get("link_type", "dedupe_only") == LINK_ONLY


def for_splink(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as natlink hands them to Splink over one union of token tables: ``link_only``
    with the union's ``dataset`` column as the source dataset column, ``link_and_dedupe`` as the
    ``dedupe_only`` it equals there (Splink would otherwise want a column it names itself)."""
    if cross_source(settings):
        return {**settings, "source_dataset_column_name": C.DATASET}
    if settings.get("link_type") == "link_and_dedupe":
        return {key: value for key, value in settings.items() if key != "source_dataset_column_name"} | {"link_type": "dedupe_only"}
    return settings


def splink_settings(cfg: ModelConfig) -> dict[str, Any]:
    """The Splink settings dict (untrained) described by a model config."""
    source = {"source_dataset_column_name": C.DATASET} if cfg.link_type == LINK_ONLY else {}
    return {
        "link_type": cfg.link_type,
        **source,
        "unique_id_column_name": C.UNIQUE_ID,
        "comparisons": [_comparison_dict(spec) for spec in cfg.comparisons],
        "blocking_rules_to_generate_predictions": [rule_sql(r) for r in cfg.blocking_rules_for_prediction],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": [],
    }


def required_columns(settings: dict[str, Any]) -> set[str]:
    """Token columns a settings dict refers to (from its SQL), for an up-front schema check."""
    import re

    text = json.dumps([settings.get("comparisons", []), settings.get("blocking_rules_to_generate_predictions", [])])
    cols = set(re.findall(r"\b((?:tk|bf)_[a-z0-9_]+?)_[lr]\b", text))
    cols |= set(re.findall(r"\b[lr]\.((?:tk|bf)_[a-z0-9_]+)\b", text))
    return cols


def check_input(df: DataFrame, settings: dict[str, Any]) -> None:
    """Splink only warns about missing columns; natlink refuses before any Spark job."""
    needed = required_columns(settings) | {C.UNIQUE_ID} | ({C.DATASET} if cross_source(settings) else set())
    missing = sorted(needed - set(df.columns))
    if missing:
        raise SchemaError(f"linkage input lacks columns {missing} required by the model; present: {sorted(df.columns)}")
