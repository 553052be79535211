"""Splink settings from ``conf/model.yaml``, training on tokens, save/load of ``linkage_models/``.

Settings are backend-neutral JSON: the same model can score on Spark or DuckDB. A model file
is accompanied by a sidecar (``NAME.sidecar.json``) that pins the Splink and natlink versions,
the key fingerprint of the data it was trained on, the training data manifest, a hash of the
settings and fit diagnostics. A model is refused for data under a different key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame

from natlink import columns as C
from natlink.config import ComparisonSpec, LevelSpec, ModelConfig
from natlink.errors import FingerprintMismatchError, ModelError, SchemaError

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".sidecar.json"


def rule_sql(rule: str | list[str]) -> str:
    """A blocking rule: a list of columns that must agree, or raw Splink SQL (l./r.)."""
    if isinstance(rule, str):
        return rule
    return " AND ".join(f"l.{col} = r.{col}" for col in rule)


def _level_dict(level: LevelSpec) -> dict[str, Any]:
    if level.exact is not None:
        out: dict[str, Any] = {
            "sql_condition": f"{level.exact}_l = {level.exact}_r",
            "label_for_charts": level.label or f"exact {level.exact}",
        }
        if level.tf_adjustment:
            out["tf_adjustment_column"] = level.exact
            out["tf_adjustment_weight"] = 1.0
        return out
    if level.dice is not None:
        from natlink.encode import dice_sql

        return {
            "sql_condition": f"{dice_sql(level.dice)} >= {level.min_similarity}",
            "label_for_charts": level.label or f"Dice {level.dice} >= {level.min_similarity}",
        }
    return {"sql_condition": level.sql, "label_for_charts": level.label or level.sql}


def _comparison_dict(spec: ComparisonSpec) -> dict[str, Any]:
    null_cols = spec.null_when or [spec.levels[0].exact or spec.levels[0].dice or ""]
    null_cols = [c for c in null_cols if c]
    levels: list[dict[str, Any]] = []
    if null_cols:
        condition = " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in null_cols)
        levels.append({"sql_condition": condition, "label_for_charts": "null", "is_null_level": True})
    levels += [_level_dict(level) for level in spec.levels]
    levels.append({"sql_condition": "ELSE", "label_for_charts": "all other comparisons"})
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


def make_linker(df: DataFrame, settings: dict[str, Any] | str | Path, backend: str = "spark"):
    """A Splink Linker over one token DataFrame, on the Spark or (driver-side) DuckDB backend."""
    from splink import Linker

    if backend == "duckdb":
        from splink import DuckDBAPI

        db = DuckDBAPI()
        return Linker(db.register(df.toArrow()), settings, log_level=logging.WARNING)
    from splink.backends.spark import SparkAPI

    # Measured on the demo (20k records, 2 cores): "parquet" 33 s vs "persist" 91 s for
    # predict + cluster + write, because persisted views are recomputed by later jobs.
    db_api = SparkAPI(spark_session=df.sparkSession, break_lineage_method="parquet")
    return Linker(db_api.register(df), settings, log_level=logging.WARNING)


@dataclass
class TrainedModel:
    settings: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def train(df: DataFrame, cfg: ModelConfig) -> TrainedModel:
    """Estimate lambda (deterministic rules), u (seeded random sampling) and m (EM, 2+ rules)."""
    settings = splink_settings(cfg)
    check_input(df, settings)
    t = cfg.training
    timings: dict[str, float] = {}
    start = time.perf_counter()
    df, sample_info = training_sample(df, settings, t.max_records, t.seed)
    linker = make_linker(df, settings, backend=t.backend)
    timings["sample_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    if t.deterministic_rules:
        linker.training.estimate_probability_two_random_records_match(
            [rule_sql(r) for r in t.deterministic_rules], recall=t.deterministic_recall
        )
    timings["lambda_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=t.u_max_pairs, seed=t.seed)
    timings["u_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    sessions = []
    for rule in t.em_blocking_rules:
        session = linker.training.estimate_parameters_using_expectation_maximisation(rule_sql(rule), max_pairs=t.em_max_pairs)
        sessions.append(rule_sql(rule))
        del session
    timings["em_seconds"] = time.perf_counter() - start

    trained = linker.misc.save_model_to_json()
    return TrainedModel(
        settings=trained,
        diagnostics={
            "timings": timings,
            "backend": t.backend,
            "sample": sample_info,
            "em_blocking_rules": sessions,
            "parameters": parameter_table(trained),
        },
    )


def training_sample(df: DataFrame, settings: dict[str, Any], max_records: int | None, seed: int) -> tuple[DataFrame, dict]:
    """The model's columns (tokens compacted as for prediction), sampled to at most ``max_records``."""
    from natlink.link import compact_columns

    needed = sorted(required_columns(settings))
    slim = df.select(C.UNIQUE_ID, *needed)
    slim = slim.select(C.UNIQUE_ID, *compact_columns(slim, needed))
    total = slim.count()
    fraction = 1.0 if not max_records or total <= max_records else max_records / total
    sample = slim if fraction >= 1.0 else slim.sample(fraction=fraction, seed=seed)
    return sample.cache(), {"records": total, "fraction": round(fraction, 6), "max_records": max_records}


def parameter_table(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """m, u and match weight for every non-null comparison level (for sidecars and reports)."""
    import math

    rows = []
    for comparison in settings.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": comparison["output_column_name"],
                    "level": level.get("label_for_charts"),
                    "m": m,
                    "u": u,
                    "match_weight": weight,
                }
            )
    return rows


def settings_hash(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def save(
    model: TrainedModel,
    path: str | Path,
    *,
    key_fingerprint: str,
    training_manifest: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write the model JSON and its sidecar; refuse to overwrite unless asked."""
    import splink

    import natlink

    path = Path(path)
    sidecar = path.with_name(path.stem + SIDECAR_SUFFIX)
    if path.exists() and not overwrite:
        raise ModelError(f"model file {path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.settings, indent=2, sort_keys=True), encoding="utf-8")
    meta = {
        "splink_version": splink.__version__,
        "natlink_version": natlink.__version__,
        "key_fingerprint": key_fingerprint,
        "training_data": training_manifest,
        "settings_hash": settings_hash(model.settings),
        "fit": model.diagnostics,
    }
    sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    log.info("model saved: %s (settings hash %s)", path, meta["settings_hash"][:12])
    return path


def load(path: str | Path, *, key_fingerprint: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a model and its sidecar; refuse it for data under a different key fingerprint."""
    path = Path(path)
    sidecar = path.with_name(path.stem + SIDECAR_SUFFIX)
    if not path.is_file() or not sidecar.is_file():
        raise ModelError(f"model {path} or its sidecar {sidecar.name} is missing")
    settings = json.loads(path.read_text(encoding="utf-8"))
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if meta.get("settings_hash") != settings_hash(settings):
        raise ModelError(f"model {path} does not match the settings hash in its sidecar")
    if key_fingerprint is not None and meta.get("key_fingerprint") != key_fingerprint:
        raise FingerprintMismatchError(
            f"model {path} was trained on data under key fingerprint {meta.get('key_fingerprint')}, "
            f"but the data to link has fingerprint {key_fingerprint}"
        )
    return settings, meta


def train_job(spark, *, manifests: list, cfg: ModelConfig, out_path: str | Path, overwrite: bool = False) -> Path:
    """Train on the union of token tables (one key) and save the model with its sidecar."""
    from natlink.linkrun import _inputs, load_tokens

    loaded = _inputs(manifests)
    tokens, fingerprint = load_tokens(spark, loaded)
    trained = train(tokens, cfg)
    manifest = {
        "datasets": {m["dataset"]: m.get("rows") for m in loaded},
        "tables": {m["dataset"]: m["table"] for m in loaded},
        "delta_versions": {m["dataset"]: m.get("delta_version") for m in loaded},
    }
    return save(trained, out_path, key_fingerprint=fingerprint, training_manifest=manifest, overwrite=overwrite)
