"""The report's numbers: every Spark aggregate of one link run, gathered into one small dict.

All Spark work of ``natlink report`` happens here, with native functions; only the aggregates
reach the driver. The dict (:func:`collect`) is JSON-able and holds counts, dataset names, fixed
reason names and model labels only; :mod:`natlink.outputs.report.sections` renders it.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import DeltaTableError, NatlinkError, ReportError
from natlink.linkage.runs import RunView, completed_view
from natlink.outputs.disclosure import DEFAULT_MIN_CELL_COUNT, withhold_columns, withhold_keys
from natlink.store import delta
from natlink.store import quarantine as Q

__all__ = ["collect", "find_run", "truth_frame"]

_HIST_BINS = 30
_PROBABILITY_BANDS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)
_EXTRA_THRESHOLDS = (0.95, 0.99, 0.999)


def find_run(spark, tables: Path, run_id: str) -> dict[str, Any]:
    """The runs-table row of ``run_id`` (``latest``: the last completed run)."""
    return _view(spark, tables, run_id).run


def _view(spark, tables: Path, run_id: str) -> RunView:
    try:
        view = completed_view(spark, tables, run_id)
    except DeltaTableError as error:
        raise ReportError(str(error)) from None
    if view is None:
        raise ReportError(f"no completed link runs under {tables} (no runs table)")
    return view


def collect(spark, tables: str | Path, run_id: str, *, model_path: str | Path | None = None,
            truth: DataFrame | None = None, thresholds: Sequence[float] | None = None,
            min_cell_count: int = DEFAULT_MIN_CELL_COUNT) -> dict[str, Any]:
    """Every number the report shows, as a JSON-able dict (all Spark work happens here).

    Counts from 1 to ``min_cell_count - 1`` are withheld (None) in every section but the
    accuracy one (only made against synthetic truth); see :mod:`natlink.outputs.disclosure`.
    """
    tables = Path(tables)
    view = _view(spark, tables, run_id)
    run, run_id = view.run, view.run_id
    model_info = json.loads(run["model"])
    inputs = json.loads(run["inputs"])
    notes: list[str] = []
    clusters = _table_at(view, "clusters")
    edges = _table_at(view, "edges")

    manifests = [_manifest_for(item, notes) for item in inputs]
    linked = {r[C.DATASET]: int(r["n"]) for r in clusters.groupBy(C.DATASET).agg(F.count(F.lit(1)).alias("n")).collect()}
    quarantine = _quarantine_section(spark, inputs, manifests, notes)
    data: dict[str, Any] = {
        "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": _run_section(run, model_info),
        "inputs": _inputs_section(inputs, manifests, linked, quarantine),
        "quarantine": quarantine,
        "model": _model_section(model_path or model_info.get("path"), run, model_info, notes),
        "scores": _scores_section(edges, float(model_info.get("threshold_match_probability") or 0.0)),
        "clusters": _clusters_section(clusters),
        "id_events": _id_events_section(view),
        "accuracy": None,
        "notes": notes,
    }
    if truth is not None:
        threshold = float(model_info.get("threshold_match_probability") or 0.0)
        data["accuracy"] = _accuracy_section(clusters, edges, truth, threshold, thresholds)
    return _finite(_withhold_small_counts(data, min_cell_count))


_INPUT_COUNTS = ("rows_in", "quarantined_onboarding", "duplicates_collapsed", "quarantined_tokenise", "rows_linked", "records_in_clusters")


def _withhold_small_counts(data: dict[str, Any], n: int) -> dict[str, Any]:
    """Every count a data owner reads, with the small ones withheld (the checks were made before)."""
    if n <= 1:
        data["min_cell_count"] = n
        data["input_totals"] = {k: sum(r[k] or 0 for r in data["inputs"]) for k in _INPUT_COUNTS}
        return data
    totals = {k: sum(r[k] or 0 for r in data["inputs"]) for k in _INPUT_COUNTS}
    data["input_totals"] = withhold_columns(data["inputs"], _INPUT_COUNTS, n, totals)
    withhold_columns(data["quarantine"], ("rows",), n)
    withhold_keys(data["run"], ("records", "persons", "edges"), n)
    withhold_columns(data["scores"].get("histogram", []), ("count_rows",), n)
    withhold_columns(data["scores"].get("bands", []), ("edges",), n)
    withhold_keys(data["scores"], ("edges",), n)
    withhold_columns(data["clusters"].get("by_size", []), ("persons",), n)
    withhold_columns(data["clusters"].get("by_datasets", []), ("persons", "records"), n)
    withhold_keys(data["clusters"], ("persons", "records"), n)
    withhold_columns(data["id_events"], ("events", "records", "old_ids"), n)
    data["min_cell_count"] = n
    return data


def _table_at(view: RunView, name: str) -> DataFrame:
    """The run's own rows of ``name``, at the version the run recorded (a later run's writes are not seen)."""
    try:
        return view.table(name, this_run_only=True)
    except DeltaTableError as error:
        raise ReportError(str(error)) from None


def _manifest_for(item: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """The manifest beside the run's token table, if it still describes the table the run read."""
    from natlink.tokens.manifest import TokenManifest, manifest_path

    table = Path(item["table"])
    path = manifest_path(table.parent, item["dataset"])
    try:
        manifest = TokenManifest.load(path)
    except NatlinkError:
        notes.append(f"{item['dataset']}: no token manifest beside its table; onboarding counts unavailable")
        return None
    same = manifest.rows == int(item["rows"]) and manifest.data.get("delta_version") == item.get("delta_version")
    if not same:
        notes.append(
            f"{item['dataset']}: the manifest beside its table now describes a later delivery "
            f"(table version {manifest.data.get('delta_version')}, the run read {item.get('delta_version')}); "
            "onboarding counts unavailable"
        )
        return None
    return dict(manifest.data, _dir=str(path.parent))


def _run_section(run: dict[str, Any], model_info: dict[str, Any]) -> dict[str, Any]:
    started, finished = run["started_at"], run["finished_at"]
    counts = json.loads(run["counts"])
    return {
        "run_id": run[C.RUN_ID],
        "mode": run["mode"],
        "previous_run_id": run["previous_run_id"],
        "started_at": started.isoformat(timespec="seconds") if started else None,
        "finished_at": finished.isoformat(timespec="seconds") if finished else None,
        "seconds": round((finished - started).total_seconds(), 1) if started and finished else None,
        "key_fingerprint": run["key_fingerprint"],
        "threshold_match_probability": model_info.get("threshold_match_probability"),
        "model_file": Path(str(model_info.get("path", ""))).name,
        "splink_version": model_info.get("splink_version"),
        "records": counts.get("records"),
        "persons": counts.get("persons"),
        "edges": counts.get("edges"),
        "comparisons_per_rule": counts.get("comparisons_per_rule"),
        "block_splits": counts.get("block_splits") or [],
        "timings": json.loads(run["timings"]),
    }


def _quarantine_section(spark, inputs: list[dict], manifests: list[dict | None], notes: list[str]) -> list[dict[str, Any]]:
    """Quarantined rows by dataset, stage and reason, from the quarantine table each manifest names."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    fallback: list[tuple[str, dict]] = []
    for item, m in zip(inputs, manifests):
        if m is None:
            continue
        path = str(Path(m["_dir"]) / m["quarantine_table"]) if m.get("quarantine_table") else None
        if path is None or not Q.exists(path):
            notes.append(f"{item['dataset']}: its quarantine table is missing; its counts come from the manifest")
            fallback.append((item["dataset"], m))
            continue
        wanted.setdefault(path, []).append((m.get("run_id"), item["dataset"]))
    rows = [dict(r, source="table") for path, runs in wanted.items() for r in Q.counts(spark, path, runs)]
    rows += [
        {C.DATASET: name, C.STAGE: stage, C.REASON: reason, "rows": int(n), "source": "manifest"}
        for name, m in fallback
        for stage, reasons in m.get("quarantined", {}).items() if stage in Q.STAGES
        for reason, n in reasons.items() if n
    ]
    order = {stage: i for i, stage in enumerate(Q.STAGES)}
    return sorted(rows, key=lambda r: (r[C.DATASET], order[r[C.STAGE]], -r["rows"], r[C.REASON] or ""))


def _stage_totals(m: dict[str, Any]) -> dict[str, int]:
    """Rows quarantined per stage, as the manifest counts them."""
    return {stage: sum(int(n) for n in m.get("quarantined", {}).get(stage, {}).values()) for stage in Q.STAGES}


def _inputs_row(item: dict, m: dict | None, linked: dict[str, int], in_table: dict[tuple[str, str], int]) -> dict[str, Any]:
    """One dataset: rows in = rows linked + quarantined + duplicates collapsed, every link checked."""
    name = item["dataset"]
    row: dict[str, Any] = {
        "dataset": name,
        "rows_linked": int(item["rows"]),
        "records_in_clusters": linked.get(name, 0),
        "rows_in": None,
        "quarantined_onboarding": None,
        "duplicates_collapsed": None,
        "quarantined_tokenise": None,
        "checks": {},
    }
    checks = row["checks"]
    checks["clusters hold every linked row"] = row["records_in_clusters"] == row["rows_linked"]
    if m is not None:
        ob = m.get("onboarding") or {}
        stages = _stage_totals(m)
        row.update(
            rows_in=ob.get("rows_in", m.get("rows_in")),
            quarantined_onboarding=stages[Q.ONBOARDING],
            duplicates_collapsed=ob.get("duplicates_collapsed", 0),
            quarantined_tokenise=stages[Q.TOKENISE],
        )
        total = row["rows_linked"] + row["quarantined_onboarding"] + row["duplicates_collapsed"] + row["quarantined_tokenise"]
        checks["rows in = linked + quarantined + duplicates"] = row["rows_in"] == total
        if (name, Q.ONBOARDING) in in_table or ob:
            checks["onboarding quarantine table agrees"] = in_table.get((name, Q.ONBOARDING), 0) == stages[Q.ONBOARDING]
        checks["tokenise quarantine table agrees"] = in_table.get((name, Q.TOKENISE), 0) == stages[Q.TOKENISE]
    row["reconciled"] = bool(m is not None and all(checks.values()))
    return row


def _inputs_section(inputs: list[dict], manifests: list[dict | None], linked: dict[str, int], quarantine: list[dict]) -> list[dict[str, Any]]:
    """Per dataset: the manifest's counts, checked against the quarantine table and the clusters."""
    in_table: dict[tuple[str, str], int] = {}
    for r in quarantine:
        if r["source"] == "table":
            in_table[(r[C.DATASET], r[C.STAGE])] = in_table.get((r[C.DATASET], r[C.STAGE]), 0) + r["rows"]
    return [_inputs_row(item, m, linked, in_table) for item, m in zip(inputs, manifests)]


def _model_section(model_path: str | Path | None, run: dict[str, Any], model_info: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    from natlink.linkage import model_store

    if not model_path:
        notes.append("no model file recorded for the run and none given: model section left out")
        return None
    try:
        settings, meta = model_store.load(model_path, key_fingerprint=run["key_fingerprint"])
    except NatlinkError as exc:
        notes.append(f"model not shown: {exc}")
        return None
    same = meta.get("settings_hash") == model_info.get("settings_hash")
    if not same:
        notes.append(f"the model file {Path(model_path).name} is not the model this run used (settings hash differs)")
    # Where each m and u came from (EM, exact count, sampling, or a named floor): the sidecar's fit.
    fit = meta.get("fit") or {}
    sources = {(r.get("comparison"), r.get("level")): r for r in fit.get("parameters", [])}
    params = [
        {k: r[k] for k in ("comparison", "level", "m", "u", "match_weight")}
        | {k: sources.get((r["comparison"], r["level"]), {}).get(k) for k in ("m_source", "u_source")}
        for r in model_store.parameter_table(settings)
    ]
    floors = [{k: f.get(k) for k in ("comparison", "level", "parameter", "value", "estimate")} for f in fit.get("floors", [])]
    lam = settings.get("probability_two_random_records_match")
    return {
        "file": Path(model_path).name,
        "same_as_run": same,
        "splink_version": meta.get("splink_version"),
        "trained_utc": meta.get("created_utc") or meta.get("trained_utc"),
        "probability_two_random_records_match": lam,
        "prior_match_weight": math.log2(lam / (1 - lam)) if lam and 0 < lam < 1 else None,
        "parameters": params,
        "floors": floors,
        "charts": _splink_model_charts(settings),
    }


def _splink_model_charts(settings: dict[str, Any]) -> dict[str, Any]:
    """Splink's own match weights and m/u charts for the model (labels only, no SQL shown)."""
    from splink.internals.settings_creator import SettingsCreator

    obj = SettingsCreator.from_path_or_dict(json.loads(json.dumps(settings))).get_settings("spark")
    charts = {}
    for name, chart in (("match_weights", obj.match_weights_chart()), ("m_u", obj.m_u_parameters_chart())):
        spec = chart.chart_dict
        spec["data"]["values"] = [{k: v for k, v in r.items() if k != "sql_condition"} for r in spec["data"]["values"]]
        charts[name] = spec
    return charts


def _scores_section(edges: DataFrame, threshold: float) -> dict[str, Any]:
    stats = edges.agg(
        F.count(F.lit(1)).alias("edges"),
        F.min("match_weight").alias("lo"),
        F.max("match_weight").alias("hi"),
        F.percentile_approx("match_weight", [0.05, 0.5, 0.95], 1000).alias("q"),
    ).first()
    n = int(stats["edges"])
    section: dict[str, Any] = {"edges": n, "threshold_match_probability": threshold, "histogram": [], "bands": []}
    if not n:
        return section
    lo, hi = float(stats["lo"]), float(stats["hi"])
    width = _nice_width((hi - lo) / _HIST_BINS) if hi > lo else 1.0
    start = math.floor(lo / width) * width
    bins = (
        edges.select(F.floor((F.col("match_weight") - F.lit(start)) / F.lit(width)).cast("int").alias("b"))
        .groupBy("b")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    )
    section["histogram"] = [
        {"splink_score_bin_low": round(start + r["b"] * width, 6), "splink_score_bin_high": round(start + (r["b"] + 1) * width, 6), "count_rows": int(r["n"])}
        for r in sorted(bins, key=lambda r: r["b"])
    ]
    section["match_weight"] = {"min": lo, "max": hi, "p05": stats["q"][0], "median": stats["q"][1], "p95": stats["q"][2]}
    edges_b = [b for b in _PROBABILITY_BANDS if b >= threshold] or [threshold]
    if edges_b[0] > threshold:
        edges_b = [threshold, *edges_b]
    band = F.lit(None).cast("int")
    for i, b in enumerate(edges_b):  # the last (highest) band wraps the others, so it is tested first
        band = F.when(F.col("match_probability") >= F.lit(b), F.lit(i)).otherwise(band)
    counted = {r["band"]: int(r["n"]) for r in edges.groupBy(band.alias("band")).agg(F.count(F.lit(1)).alias("n")).collect()}
    for i, b in enumerate(edges_b):
        upper = edges_b[i + 1] if i + 1 < len(edges_b) else None
        label = f"{b:g} \u2264 p < {upper:g}" if upper is not None else f"p \u2265 {b:g}"
        section["bands"].append({"band": label, "low": b, "high": upper, "edges": counted.get(i, 0)})
    if counted.get(None):
        section["bands"].append({"band": f"p < {edges_b[0]:g} (below the threshold)", "low": None, "high": edges_b[0], "edges": counted[None]})
    return section


def _nice_width(raw: float) -> float:
    exp = math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if step * 10**exp >= raw:
            return step * 10**exp
    return 10 ** (exp + 1)


def _clusters_section(clusters: DataFrame) -> dict[str, Any]:
    persons = clusters.groupBy(C.PERSON_ID).agg(
        F.count(F.lit(1)).alias("size"),
        F.concat_ws(" + ", F.array_sort(F.collect_set(C.DATASET))).alias("datasets"),
    )
    persons = persons.cache()
    try:
        sizes = persons.groupBy("size").agg(F.count(F.lit(1)).alias("persons")).collect()
        spans = persons.groupBy("datasets").agg(F.count(F.lit(1)).alias("persons"), F.sum("size").alias("records")).collect()
    finally:
        persons.unpersist()
    by_size = sorted(({"size": int(r["size"]), "persons": int(r["persons"])} for r in sizes), key=lambda r: r["size"])
    return {
        "persons": sum(r["persons"] for r in by_size),
        "records": sum(r["size"] * r["persons"] for r in by_size),
        "by_size": by_size,
        "by_datasets": sorted(({"datasets": r["datasets"], "persons": int(r["persons"]), "records": int(r["records"])} for r in spans), key=lambda r: -r["persons"]),
    }


def _id_events_section(view: RunView) -> list[dict[str, Any]]:
    counted = (
        _table_at(view, "id_events")
        .groupBy("event", C.REASON)
        .agg(F.count(F.lit(1)).alias("events"), F.sum("records").alias("records"), F.sum(F.size("old_ids")).alias("old_ids"))
        .collect()
    )
    order = {"new": 0, "merge": 1, "split": 2, "retire": 3}
    return sorted(
        ({"event": r["event"], "reason": r[C.REASON], "events": int(r["events"]), "records": int(r["records"] or 0), "old_ids": int(r["old_ids"] or 0)} for r in counted),
        key=lambda r: (order.get(r["event"], 9), r["reason"] or ""),
    )


def _accuracy_section(clusters: DataFrame, edges: DataFrame, truth: DataFrame, threshold: float, thresholds: Sequence[float] | None) -> dict[str, Any]:
    """Metrics of the run's clusters as linked, then re-clustered from its edges at higher thresholds."""
    from natlink.outputs import evaluate
    from natlink.linkage.engine import NODE

    # Every metric reads these again and again: computed once (truth is narrow, one row per record).
    truth = truth.select(C.DATASET, C.RECORD_ID, C.TRUE_PERSON_ID).localCheckpoint()
    judged = (
        clusters.select(C.DATASET, C.RECORD_ID, C.PERSON_ID)
        .join(truth.select(C.DATASET, C.RECORD_ID), on=[C.DATASET, C.RECORD_ID], how="left_semi")
        .localCheckpoint()
    )
    as_linked = {
        "pairwise": evaluate.pairwise(judged, truth).as_dict(),
        "cluster": evaluate.cluster_level(judged, truth).as_dict(),
    }
    wanted = sorted({round(float(t), 6) for t in (thresholds or (threshold, *_EXTRA_THRESHOLDS))})
    below = [t for t in wanted if t < threshold]
    usable = [t for t in wanted if t >= threshold]
    # Node ids for the sweep's connected components: fixed once by a checkpoint (they are not deterministic).
    records = clusters.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.PERSON_ID).withColumn(NODE, F.monotonically_increasing_id()).localCheckpoint()
    ids = records.select(C.UNIQUE_ID, NODE)
    scored = (
        edges.select("unique_id_l", "unique_id_r", "match_probability")
        .join(ids.select(F.col(C.UNIQUE_ID).alias("unique_id_l"), F.col(NODE).alias(f"{NODE}_l")), on="unique_id_l", how="inner")
        .join(ids.select(F.col(C.UNIQUE_ID).alias("unique_id_r"), F.col(NODE).alias(f"{NODE}_r")), on="unique_id_r", how="inner")
        .select(f"{NODE}_l", f"{NODE}_r", "match_probability")
    )
    # Re-clustered as the run's cannot-link split would at each threshold: the edges within a person.
    scored = evaluate.within_clusters(scored, records.select(NODE, C.PERSON_ID), C.PERSON_ID).localCheckpoint()
    sweep = evaluate.threshold_sweep(records.select(NODE, C.DATASET, C.RECORD_ID), scored, truth, usable) if usable else []
    return {"threshold_match_probability": threshold, "as_linked": as_linked, "sweep": sweep, "not_evaluable": below}


def _finite(value: Any) -> Any:
    """NaN / infinity become None: JSON.parse refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def truth_frame(spark, truth: str | Path | DataFrame | None) -> DataFrame | None:
    """The truth table: a DataFrame, or a Delta / Parquet table of (dataset, record_id, true_person_id)."""
    if truth is None or isinstance(truth, DataFrame):
        return truth
    path = str(truth)
    if delta.exists(path):
        return delta.read(spark, path)
    if not Path(path).exists():
        raise ReportError(f"truth table not found: {path}")
    return spark.read.parquet(path)  # the synthetic truth is plain Parquet, not Delta
