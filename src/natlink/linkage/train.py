"""Training a Splink model on token tables: lambda, u and m, on a bounded sample; never silently incomplete.

1. u of equality levels is counted exactly over the whole population (:mod:`natlink.linkage.u_exact`)
   and fixed; Splink samples random pairs (``u_max_pairs``) for the other levels.
2. lambda from deterministic rules; m by EM over two or more blocking rules (``em_max_pairs`` caps
   the pairs of each), on at most ``max_records`` records, in DuckDB under ``duckdb_memory_limit``.
A ``link_only`` model is trained on pairs of records from different datasets only, in every step:
exact u counts pairs across datasets, Splink (given the ``dataset`` column as its source dataset
column) samples u, counts the deterministic rules' pairs for lambda and runs EM over them, and
the pair counts checked and reported here are of those pairs.

3. Every non-null level must then have m and u. One that training never saw stops it with
   :class:`UntrainedLevelError` (which level, in how many pairs, what to change), unless the model
   lists it in ``training.allow_unobserved``: then it gets the Jeffreys estimate 0.5 / (n + 1) for
   a level seen 0 times in n pairs, recorded in the sidecar (``fit.floors``) and the report.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.model import ModelConfig, TrainingSpec
from natlink.errors import ConfigError, EmptyTrainingRuleError, NatlinkError, TrainingError
from natlink.linkage.blocking import count_comparisons, parse_rule
from natlink.linkage.engine import compact_columns
from natlink.linkage.model_store import TrainedModel, parameter_table, save
from natlink.linkage.model_store import load as load_model
from natlink.linkage.settings import check_input, cross_source, for_splink, required_columns, rule_sql, splink_settings
from natlink.linkage.completeness import TrainingEvidence, complete_levels
from natlink.linkage.u_exact import exact_u
from natlink.tokens.reader import as_manifests, load_tokens

log = logging.getLogger(__name__)


def make_linker(df: DataFrame, settings: dict[str, Any] | str | Path, backend: str = "spark", *,
                memory_limit: str | None = None, temp_dir: str | Path | None = None):
    """A Splink Linker over one token DataFrame, on the Spark or (driver-side) DuckDB backend.

    DuckDB runs under ``memory_limit`` (e.g. "2GB"), spilling to ``temp_dir`` beyond it.
    """
    from splink import Linker

    if backend == "duckdb":
        import duckdb
        from splink import DuckDBAPI

        config = {} if memory_limit is None else {"memory_limit": memory_limit}
        if temp_dir is not None:
            config["temp_directory"] = str(temp_dir)
        db = DuckDBAPI(connection=duckdb.connect(":memory:", config=config))
        return Linker(db.register(df.toArrow()), _splink(settings), log_level=logging.WARNING)
    from splink.backends.spark import SparkAPI

    # Measured on the demo (20k records, 2 cores): "parquet" 33 s vs "persist" 91 s for
    # predict + cluster + write, because persisted views are recomputed by later jobs.
    db_api = SparkAPI(spark_session=df.sparkSession, break_lineage_method="parquet")
    return Linker(db_api.register(df), _splink(settings), log_level=logging.WARNING)


def _splink(settings: dict[str, Any] | str | Path) -> dict[str, Any] | str | Path:
    return for_splink(settings) if isinstance(settings, dict) else settings


def train(df: DataFrame, cfg: ModelConfig) -> TrainedModel:
    """Estimate lambda (deterministic rules), u (exact counts, then seeded sampling) and m (EM, 2+ rules)."""
    settings = splink_settings(cfg)
    check_input(df, settings)
    t = cfg.training
    timings: dict[str, float] = {}

    start = time.perf_counter()
    # Cached (memory, then disk) while training runs: exact u and the sample both read it.
    population = model_frame(df, settings).persist(StorageLevel.MEMORY_AND_DISK)
    sample = None
    # DuckDB's spill files hold (hashed) tokens: a private folder, removed when training ends.
    spill = Path(tempfile.mkdtemp(prefix="natlink-duckdb-")) if t.backend == "duckdb" else None
    try:
        exact = exact_u(population, settings) if t.u_exact else {}
        timings["u_exact_seconds"] = time.perf_counter() - start

        start = time.perf_counter()
        sample, sample_info = training_sample(population, t.max_records, t.seed, cross_source=cross_source(settings))
        em_pairs, em_columns = _check_training_rules(sample, t, sample_info, cross_source=cross_source(settings))
        timings["sample_seconds"] = time.perf_counter() - start

        fixed_settings, exact_levels = _with_exact_u(settings, exact)
        linker = make_linker(sample, fixed_settings, backend=t.backend, memory_limit=t.duckdb_memory_limit, temp_dir=spill)
        trained = _estimate(linker, t, timings, sampled_u_needed=_needs_sampling(fixed_settings))
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
        if sample is not None:
            sample.unpersist()
        population.unpersist()

    evidence = TrainingEvidence(
        sample_info["records"], sample_info["sampled_records"], int(min(t.u_max_pairs, sample_info["sampled_pairs"])), em_pairs, em_columns, exact,
        population_pairs=sample_info["pairs"] if cross_source(settings) else None,
    )
    trained, floors = complete_levels(trained, cfg, evidence)
    sources = _sources(trained, exact_levels, floors)
    return TrainedModel(
        settings=trained,
        diagnostics={
            "timings": timings,
            "backend": t.backend,
            "sample": sample_info,
            "em_blocking_rules": list(em_pairs),
            "em_pairs": em_pairs,
            "u_sampled_pairs": evidence.u_pairs,
            "u_exact_levels": [f"{c}/{lv}" for c, lv in exact_levels],
            "floors": floors,
            "parameters": [dict(row, **sources.get((row["comparison"], row["level"]), {})) for row in parameter_table(trained)],
        },
    )


def _estimate(linker, t: TrainingSpec, timings: dict[str, float], *, sampled_u_needed: bool) -> dict[str, Any]:
    from splink.internals.exceptions import EMTrainingException

    start = time.perf_counter()
    if t.deterministic_rules:
        linker.training.estimate_probability_two_random_records_match(
            [rule_sql(r) for r in t.deterministic_rules], recall=t.deterministic_recall
        )
    timings["lambda_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    if sampled_u_needed:
        linker.training.estimate_u_using_random_sampling(max_pairs=t.u_max_pairs, seed=t.seed)
    timings["u_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    for rule in t.em_blocking_rules:
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule_sql(rule), max_pairs=t.em_max_pairs)
        except EMTrainingException:
            raise EmptyTrainingRuleError(
                f"training.em_blocking_rules: {rule_sql(rule)!r} gives no record pairs in the training sample: "
                "remove it or block on columns these data fill"
            ) from None
    timings["em_seconds"] = time.perf_counter() - start
    return linker.misc.save_model_to_json()


def model_frame(df: DataFrame, settings: dict[str, Any]) -> DataFrame:
    """unique_id (and, for link_only, dataset) and the model's columns, tokens compacted to 64-bit
    integers as for prediction."""
    needed = sorted(required_columns(settings))
    ids = [C.UNIQUE_ID, *([C.DATASET] if cross_source(settings) else [])]
    slim = df.select(*ids, *needed)
    return slim.select(*ids, *compact_columns(slim, needed))


def training_sample(df: DataFrame, max_records: int | None, seed: int, *, cross_source: bool = False) -> tuple[DataFrame, dict]:
    """``df`` sampled (seeded) to at most ``max_records`` records, cached. Its info holds the
    record pairs of the population (``pairs``) and of the sample (``sampled_pairs``): every pair,
    or with ``cross_source`` the pairs across datasets, refused unless the sample has two datasets."""
    population = _sizes_by_dataset(df) if cross_source else {"": df.count()}
    total = sum(population.values())
    fraction = 1.0 if not max_records or total <= max_records else max_records / total
    sample = df if fraction >= 1.0 else df.sample(fraction=fraction, seed=seed)
    if not sample.is_cached:
        sample = sample.cache()
    sampled = _sizes_by_dataset(sample) if cross_source else {"": sample.count()}
    if cross_source and len(sampled) < 2:
        raise TrainingError(
            f"link_type link_only compares records of different datasets, but the training records come from "
            f"{len(sampled)} dataset(s): train on the token tables of two or more datasets"
        )
    n = sum(sampled.values())
    info = {"records": total, "fraction": round(fraction, 6), "max_records": max_records, "sampled_records": n,
            "pairs": _pairs(population, cross_source), "sampled_pairs": _pairs(sampled, cross_source)}
    return sample, info


def _sizes_by_dataset(df: DataFrame) -> dict[str, int]:
    return {r[C.DATASET]: int(r["n"]) for r in df.groupBy(C.DATASET).agg(F.count(F.lit(1)).alias("n")).collect()}


def _pairs(sizes: dict[str, int], cross_source: bool) -> int:
    """Record pairs among groups of ``sizes``: all of them, or (``cross_source``) those across groups."""
    n = sum(sizes.values())
    return (n * n - sum(x * x for x in sizes.values())) // 2 if cross_source else n * (n - 1) // 2


def _rule_columns(rule: str | list[str]) -> set[str]:
    try:
        return set(parse_rule(rule).keys)
    except ConfigError:
        return set(re.findall(r"\b[lr]\.`?([A-Za-z_][A-Za-z0-9_]*)", rule_sql(rule)))


def _check_training_rules(
    sample: DataFrame, t: TrainingSpec, info: dict, *, cross_source: bool = False
) -> tuple[dict[str, int | None], dict[str, set[str]]]:
    """Pairs per EM rule in the sample (capped by em_max_pairs); a rule with none is refused up front,
    as are deterministic rules that all give none (lambda would be 0)."""
    rules = [*t.em_blocking_rules, *t.deterministic_rules]
    parsed: dict[int, Any] = {}
    for i, rule in enumerate(rules):
        try:
            parsed[i] = parse_rule(rule)
        except ConfigError:
            pass  # raw SQL natlink cannot count: Splink reports it if it gives no pairs
    counted = dict(zip(parsed, count_comparisons(sample, list(parsed.values()), cross_source=cross_source)))
    n_em = len(t.em_blocking_rules)
    em_pairs: dict[str, int | None] = {}
    for i, rule in enumerate(t.em_blocking_rules):
        pairs = counted.get(i)
        if pairs == 0:
            raise EmptyTrainingRuleError(
                f"training.em_blocking_rules: {rule_sql(rule)!r} gives no record pairs among the "
                f"{info['sampled_records']:,} training records (are its columns {sorted(_rule_columns(rule))} empty in "
                "these data?): remove it, or block on columns these data fill"
            )
        em_pairs[rule_sql(rule)] = None if pairs is None else int(min(pairs, t.em_max_pairs or pairs))
    deterministic = [counted.get(n_em + i) for i in range(len(t.deterministic_rules))]
    if deterministic and all(p == 0 for p in deterministic):
        raise EmptyTrainingRuleError(
            f"training.deterministic_rules: {[rule_sql(r) for r in t.deterministic_rules]} give no record pairs among the "
            f"{info['sampled_records']:,} training records, so lambda cannot be estimated: use rules on columns these data fill"
        )
    return em_pairs, {rule_sql(r): _rule_columns(r) for r in t.em_blocking_rules}


def _with_exact_u(settings: dict[str, Any], exact: dict[str, list[float | None]]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Settings with each exactly counted u set and fixed (sampling and EM leave it alone).

    A u counted as 0 (no pair of the population at that level) is not set: Splink cannot take it,
    and the level is reported as never observed after training.
    """
    fixed: list[tuple[str, str]] = []
    comparisons = []
    for comparison in settings["comparisons"]:
        us = exact.get(comparison["output_column_name"]) or [None] * len(comparison["comparison_levels"])
        levels = []
        for level, u in zip(comparison["comparison_levels"], us):
            if u is not None and u > 0 and not level.get("is_null_level"):
                level = dict(level, u_probability=u, fix_u_probability=True)
                fixed.append((comparison["output_column_name"], level["label_for_charts"]))
            levels.append(level)
        comparisons.append(dict(comparison, comparison_levels=levels))
    return dict(settings, comparisons=comparisons), fixed


def _needs_sampling(settings: dict[str, Any]) -> bool:
    return any(
        not lv.get("is_null_level") and not lv.get("fix_u_probability")
        for c in settings["comparisons"] for lv in c["comparison_levels"]
    )


def _sources(trained: dict[str, Any], exact_levels: list[tuple[str, str]], floors: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """Where each level's m and u came from: EM / sampled / exact / floor."""
    exact = set(exact_levels)
    floored = {(f["comparison"], f["level"], f["parameter"]) for f in floors}
    out = {}
    for c in trained["comparisons"]:
        for lv in c["comparison_levels"]:
            if lv.get("is_null_level"):
                continue
            key = (c["output_column_name"], lv["label_for_charts"])
            out[key] = {
                "m_source": "floor" if (*key, "m") in floored else "EM",
                "u_source": "floor" if (*key, "u") in floored else ("exact" if key in exact else "sampled"),
            }
    return out


def train_job(spark, *, manifests: list, cfg: ModelConfig, out_path: str | Path, overwrite: bool = False) -> Path:
    """Train on the union of token tables (one key) and save the model with its sidecar."""
    loaded = as_manifests(manifests)
    tokens, fingerprint = load_tokens(spark, loaded)
    if cfg.encoding == "salted":
        from natlink.linkage.salted_training import train_salted

        trained = train_salted(tokens, cfg, loaded)
    else:
        trained = train(tokens, cfg)
    return save(trained, out_path, key_fingerprint=fingerprint, training_manifest=training_manifest(loaded, cfg), overwrite=overwrite)


def training_manifest(manifests: list, cfg: ModelConfig) -> dict[str, Any]:
    """What a model was trained on (its sidecar's ``training_data``): rows, tables and Delta
    versions per dataset, the tokenise runs that made them and a hash of the model config."""
    loaded = as_manifests(manifests)
    return {
        "datasets": {m["dataset"]: m.get("rows") for m in loaded},
        "tables": {m["dataset"]: m["table"] for m in loaded},
        "delta_versions": {m["dataset"]: m.get("delta_version") for m in loaded},
        "tokenise_runs": {m["dataset"]: m.get("run_id") for m in loaded},
        "config_sha256": hashlib.sha256(cfg.model_dump_json().encode()).hexdigest(),
    }


def trained_on(model_path: str | Path, manifests: list, cfg: ModelConfig) -> bool:
    """True when ``model_path`` (and its sidecar) holds a model trained with ``cfg`` on exactly these
    token tables, at the versions and tokenise runs their manifests record: a rerun need not train again."""
    try:
        _settings, meta = load_model(model_path, key_fingerprint=as_manifests(manifests)[0].key_fingerprint)
    except NatlinkError:
        return False
    return meta.get("training_data") == training_manifest(manifests, cfg)
