"""Splink settings from the model YAML (:mod:`natlink.config.model`), and the input check Splink lacks.

Settings are backend-neutral JSON: the same model scores on Spark or DuckDB.
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


def splink_settings(cfg: ModelConfig) -> dict[str, Any]:
    """The Splink settings dict (untrained) described by a model config."""
    return {
        "link_type": cfg.link_type,
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
    needed = required_columns(settings) | {C.UNIQUE_ID}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise SchemaError(f"linkage input lacks columns {missing} required by the model; present: {sorted(df.columns)}")
