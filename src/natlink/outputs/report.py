"""`natlink report`: one self-contained HTML page per link run, for data owners. Counts only.

The page works offline: Splink's own copies of vega, vega-lite and vega-embed (shipped inside its
wheel) are inlined, and nothing refers to the network. It shows

* ``inputs``: per dataset, rows in = rows linked + quarantined (onboarding, tokenise) + duplicates
  collapsed, from the token manifests, checked against the quarantine tables and the run's clusters;
* ``quarantine``: quarantined rows by dataset, stage and reason (the quarantine Delta tables);
* ``model``: lambda, m and u per comparison level and Splink's match weights chart (model JSON);
* ``scores``: the distribution of the run's edges by match weight and match probability;
* ``clusters``: persons by cluster size and by the combination of datasets they span;
* ``id-events``: the run's new / merge / split / retire events by reason;
* ``accuracy`` (with a truth table): pairwise and cluster precision / recall / F1 at several thresholds.

Nothing identifying is shown: no record ids, person ids, tokens or values, only counts, dataset
names, fixed reason names and model labels. As a last guard the page is refused when any text in
it looks like a token (64 hex digits). All aggregation runs in Spark with native functions; only
the small aggregates reach the driver.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import delta
from natlink.errors import NatlinkError

__all__ = ["ReportError", "SECTIONS", "collect", "render", "write_report"]

log = logging.getLogger(__name__)

# Section ids: stable, tests and readers find sections by them.
SECTIONS = {
    "run": "Run",
    "inputs": "Inputs and counts reconciled",
    "quarantine": "Quarantine reasons",
    "model": "Model parameters",
    "scores": "Score distribution",
    "clusters": "Cluster sizes",
    "id-events": "Person id events",
    "accuracy": "Precision, recall and F1",
}
CHART_LIBRARIES = ("vega", "vega-lite", "vega-embed")
_TOKEN_LIKE = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
_HIST_BINS = 30
_PROBABILITY_BANDS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)
_EXTRA_THRESHOLDS = (0.95, 0.99, 0.999)


class ReportError(NatlinkError):
    """A report cannot be made (unknown run, missing tables) or would not be safe to share."""


# ---------------------------------------------------------------------------------------------
# Collect: Spark aggregates -> one small dict


def find_run(spark, tables: Path, run_id: str) -> dict[str, Any]:
    """The runs-table row of ``run_id`` (``latest``: the last completed run)."""
    from natlink.linkage.run import completed_runs

    runs = completed_runs(spark, tables)
    if not runs:
        raise ReportError(f"no completed link runs under {tables} (no runs table)")
    if run_id == "latest":
        return runs[-1]
    found = [r for r in runs if r[C.RUN_ID] == run_id]
    if not found:
        known = [r[C.RUN_ID] for r in runs][-10:]
        raise ReportError(f"run {run_id!r} is not in {tables / 'runs'}; the last runs there: {known}")
    return found[-1]


def collect(spark, tables: str | Path, run_id: str, *, model_path: str | Path | None = None,
            truth: DataFrame | None = None, thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Every number the report shows, as a JSON-able dict (all Spark work happens here)."""
    tables = Path(tables)
    run = find_run(spark, tables, run_id)
    run_id = run[C.RUN_ID]
    versions = json.loads(run["versions"])
    model_info = json.loads(run["model"])
    inputs = json.loads(run["inputs"])
    notes: list[str] = []
    clusters = _table_at(spark, tables, "clusters", versions.get("clusters"))
    edges = _table_at(spark, tables, "edges", versions.get("edges"))
    clusters = clusters.where(F.col(C.RUN_ID) == run_id)
    edges = edges.where(F.col(C.RUN_ID) == run_id)

    manifests = [_manifest_for(item, notes) for item in inputs]
    linked = {r[C.DATASET]: int(r["n"]) for r in clusters.groupBy(C.DATASET).agg(F.count(F.lit(1)).alias("n")).collect()}
    quarantine = _quarantine_counts(spark, tables, inputs, manifests, notes)
    data: dict[str, Any] = {
        "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": _run_section(run, model_info),
        "inputs": _inputs_section(inputs, manifests, linked, quarantine),
        "quarantine": quarantine,
        "model": _model_section(model_path or model_info.get("path"), run, model_info, notes),
        "scores": _scores_section(edges, float(model_info.get("threshold_match_probability") or 0.0)),
        "clusters": _clusters_section(clusters),
        "id_events": _id_events_section(spark, tables, run_id),
        "accuracy": None,
        "notes": notes,
    }
    if truth is not None:
        threshold = float(model_info.get("threshold_match_probability") or 0.0)
        data["accuracy"] = _accuracy_section(clusters, edges, truth, threshold, thresholds)
    return _finite(data)


def _table_at(spark, tables: Path, name: str, version: int | None) -> DataFrame:
    path = tables / name
    if not delta.exists(str(path)):
        raise ReportError(f"the run's {name} table is missing: {path}")
    return delta.read(spark, str(path), version=version)


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
        "timings": json.loads(run["timings"]),
    }


def _quarantine_counts(spark, tables: Path, inputs: list[dict], manifests: list[dict | None], notes: list[str]) -> list[dict[str, Any]]:
    """Quarantined rows by dataset, stage and reason, from the onboarding and tokenise tables."""
    frames = []
    onboarding_tables: dict[str, list[tuple[str, str]]] = {}
    tokenise_tables: dict[str, list[str]] = {}
    for item, m in zip(inputs, manifests):
        if m is None:
            continue
        onboarding = m.get("onboarding_quarantine_table") or str(tables / "quarantine")
        onboarding_tables.setdefault(onboarding, []).append((m.get("run_id"), item["dataset"]))
        if m.get("quarantine_table"):
            tokenise_tables.setdefault(str(Path(m["_dir"]) / m["quarantine_table"]), []).append(item["dataset"])
    for path, keys in onboarding_tables.items():
        if not delta.exists(path):
            notes.append(f"onboarding quarantine table {Path(path).name} is missing; its counts come from the manifests")
            continue
        wanted = F.lit(False)
        for run_id, dataset in keys:
            wanted = wanted | ((F.col(C.RUN_ID) == F.lit(run_id)) & (F.col(C.DATASET) == F.lit(dataset)))
        frames.append(delta.read(spark, path).where(wanted).select(C.DATASET, F.lit("onboarding").alias("stage"), C.REASON))
    for path, datasets in tokenise_tables.items():
        if not delta.exists(path):
            notes.append(f"tokenise quarantine table {Path(path).name} is missing; its counts come from the manifests")
            continue
        frames.append(delta.read(spark, path).where(F.col(C.DATASET).isin(datasets)).select(C.DATASET, F.lit("tokenise").alias("stage"), C.REASON))
    rows: list[dict[str, Any]] = []
    if frames:
        union = frames[0]
        for f in frames[1:]:
            union = union.unionByName(f)
        counted = union.groupBy(C.DATASET, "stage", C.REASON).agg(F.count(F.lit(1)).alias("rows"))
        rows = [dict(r.asDict(), source="table") for r in counted.collect()]
    have = {(r[C.DATASET], r["stage"]) for r in rows}
    # Stages whose table is missing: the manifest's counts stand in (flagged as such).
    for item, m in zip(inputs, manifests):
        if m is None:
            continue
        stages = {"onboarding": (m.get("onboarding") or {}).get("quarantine_reasons", {}), "tokenise": m.get("quarantined", {}).get("tokenise", {})}
        for stage, reasons in stages.items():
            if (item["dataset"], stage) in have:
                continue
            in_table = {"onboarding": onboarding_tables, "tokenise": tokenise_tables}[stage]
            if any(delta.exists(p) for p in in_table):
                continue  # the table exists and holds no rows for this dataset: zero, not unknown
            rows += [{C.DATASET: item["dataset"], "stage": stage, C.REASON: r, "rows": int(n), "source": "manifest"} for r, n in reasons.items() if n]
    order = {"onboarding": 0, "tokenise": 1}
    return sorted(rows, key=lambda r: (r[C.DATASET], order.get(r["stage"], 9), -r["rows"], r[C.REASON] or ""))


def _inputs_section(inputs: list[dict], manifests: list[dict | None], linked: dict[str, int], quarantine: list[dict]) -> list[dict[str, Any]]:
    """Per dataset: rows in = rows linked + quarantined + duplicates collapsed, every link checked."""
    q_table: dict[tuple[str, str], int] = {}
    for r in quarantine:
        if r["source"] == "table":
            q_table[(r[C.DATASET], r["stage"])] = q_table.get((r[C.DATASET], r["stage"]), 0) + r["rows"]
    out = []
    for item, m in zip(inputs, manifests):
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
            tok = sum(int(n) for n in m.get("quarantined", {}).get("tokenise", {}).values())
            row.update(
                rows_in=ob.get("rows_in", m.get("rows_in")),
                quarantined_onboarding=ob.get("quarantined", 0),
                duplicates_collapsed=ob.get("duplicates_collapsed", 0),
                quarantined_tokenise=tok,
            )
            total = row["rows_linked"] + row["quarantined_onboarding"] + row["duplicates_collapsed"] + row["quarantined_tokenise"]
            checks["rows in = linked + quarantined + duplicates"] = row["rows_in"] == total
            if (name, "onboarding") in q_table or ob:
                checks["onboarding quarantine table agrees"] = q_table.get((name, "onboarding"), 0) == row["quarantined_onboarding"]
            checks["tokenise quarantine table agrees"] = q_table.get((name, "tokenise"), 0) == tok
        row["reconciled"] = bool(m is not None and all(checks.values()))
        out.append(row)
    return out


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
    params = [
        {k: r[k] for k in ("comparison", "level", "m", "u", "match_weight")}
        for r in model_store.parameter_table(settings)
    ]
    lam = settings.get("probability_two_random_records_match")
    return {
        "file": Path(model_path).name,
        "same_as_run": same,
        "splink_version": meta.get("splink_version"),
        "trained_utc": meta.get("created_utc") or meta.get("trained_utc"),
        "probability_two_random_records_match": lam,
        "prior_match_weight": math.log2(lam / (1 - lam)) if lam and 0 < lam < 1 else None,
        "parameters": params,
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


def _id_events_section(spark, tables: Path, run_id: str) -> list[dict[str, Any]]:
    path = tables / "id_events"
    if not delta.exists(str(path)):
        return []
    counted = (
        delta.read(spark, str(path))
        .where(F.col(C.RUN_ID) == run_id)
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
    records = clusters.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID).withColumn(NODE, F.monotonically_increasing_id()).localCheckpoint()
    ids = records.select(C.UNIQUE_ID, NODE)
    scored = (
        edges.select("unique_id_l", "unique_id_r", "match_probability")
        .join(ids.select(F.col(C.UNIQUE_ID).alias("unique_id_l"), F.col(NODE).alias(f"{NODE}_l")), on="unique_id_l", how="inner")
        .join(ids.select(F.col(C.UNIQUE_ID).alias("unique_id_r"), F.col(NODE).alias(f"{NODE}_r")), on="unique_id_r", how="inner")
        .select(f"{NODE}_l", f"{NODE}_r", "match_probability")
        .localCheckpoint()
    )
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


# ---------------------------------------------------------------------------------------------
# Render: dict -> one HTML page


def _json_for_script(value: Any) -> str:
    """JSON safe inside a <script> element (no '<', '>' or '&' survive)."""
    text = json.dumps(value, allow_nan=False, sort_keys=True, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _chart_libraries() -> dict[str, str]:
    from splink.internals.html_utils import load_chart_libraries

    libs = load_chart_libraries()
    missing = [n for n in CHART_LIBRARIES if n not in libs]
    if missing:
        raise ReportError(f"the installed splink does not ship the chart libraries {missing}")
    # A literal "</script" would end the inline element early.
    return {n: libs[n].replace("</script", "<\\/script") for n in CHART_LIBRARIES}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.{digits}f}"
    return _e(value)


def _table(columns: Sequence[tuple], rows: Sequence[dict[str, Any]], *, row_key: str | None = None, cls: str = "") -> str:
    """Columns: (key, label) or (key, label, decimals)."""
    columns = [(c[0], c[1], c[2] if len(c) > 2 else 4) for c in columns]
    head = "".join(f"<th>{_e(label)}</th>" for _key, label, _d in columns)
    body = []
    for r in rows:
        attr = f' data-key="{_e(r.get(row_key))}"' if row_key else ""
        cells = "".join(
            f'<td data-col="{_e(key)}" class="{"num" if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) else ""}">{_num(r.get(key), digits)}</td>'
            for key, _label, digits in columns
        )
        body.append(f"<tr{attr}>{cells}</tr>")
    if not rows:
        body.append(f'<tr class="empty"><td colspan="{len(columns)}">none</td></tr>')
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _kv(pairs: Sequence[tuple[str, str, Any]], digits: int = 4) -> str:
    rows = "".join(f'<tr data-key="{_e(k)}"><th>{_e(label)}</th><td>{_num(v, 1 if k == "seconds" else digits)}</td></tr>' for k, label, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _bar_spec(values: list[dict], x: str, y: str, x_title: str, y_title: str, *, ordinal: bool = True, title: str | None = None) -> dict:
    spec: dict[str, Any] = {
        "data": {"values": values},
        "mark": {"type": "bar", "tooltip": True},
        "width": 560,
        "height": 220,
        "encoding": {
            "x": {"field": x, "type": "ordinal" if ordinal else "quantitative", "title": x_title, "sort": None},
            "y": {"field": y, "type": "quantitative", "title": y_title},
        },
    }
    if title:
        spec["title"] = title
    return spec


def _section(sid: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(SECTIONS[sid])}</h2>{body}</section>'


def _chart_div(cid: str) -> str:
    return f'<div class="chart" id="chart-{cid}" data-chart="{cid}"></div>'


def render(data: dict[str, Any]) -> str:
    """The report page for ``data`` (from :func:`collect`): one HTML string, no network references."""
    charts: dict[str, dict] = {}
    run = data["run"]
    parts = [_section("run", _kv([
        ("run_id", "Run id", run["run_id"]),
        ("mode", "Mode", run["mode"]),
        ("previous_run_id", "Previous run", run["previous_run_id"]),
        ("started_at", "Started (UTC)", run["started_at"]),
        ("finished_at", "Finished (UTC)", run["finished_at"]),
        ("seconds", "Seconds", run["seconds"]),
        ("records", "Records linked", run["records"]),
        ("persons", "Persons", run["persons"]),
        ("edges", "Edges (pairs at or above the threshold)", run["edges"]),
        ("threshold", "Threshold (match probability)", f'{run["threshold_match_probability"]:g}' if run["threshold_match_probability"] is not None else None),
        ("model_file", "Model", run["model_file"]),
        ("key_fingerprint", "Key fingerprint (public)", run["key_fingerprint"]),
    ]) + "<h3>Step timings (seconds)</h3>" + _table([("step", "step"), ("seconds", "seconds", 1)], [{"step": k, "seconds": float(v)} for k, v in run["timings"].items()], row_key="step"))]

    inputs = data["inputs"]
    rows = [dict(r, reconciled_text="yes" if r["reconciled"] else "NO") for r in inputs]
    checks = "".join(
        f'<li data-dataset="{_e(r["dataset"])}" data-check="{_e(name)}" class="{"ok" if ok else "bad"}">{_e(r["dataset"])}: {_e(name)}: {"ok" if ok else "FAILED"}</li>'
        for r in inputs for name, ok in r["checks"].items()
    )
    totals = {k: sum(r[k] or 0 for r in inputs) for k in ("rows_in", "quarantined_onboarding", "duplicates_collapsed", "quarantined_tokenise", "rows_linked", "records_in_clusters")}
    parts.append(_section("inputs", (
        "<p>Every row delivered is accounted for: rows in = rows linked + quarantined at onboarding + duplicates "
        "collapsed + quarantined at tokenise (from each token manifest), checked against the quarantine tables "
        "and the run's clusters table.</p>"
        + _table(
            [("dataset", "dataset"), ("rows_in", "rows in"), ("quarantined_onboarding", "quarantined (onboarding)"),
             ("duplicates_collapsed", "duplicates collapsed"), ("quarantined_tokenise", "quarantined (tokenise)"),
             ("rows_linked", "rows linked"), ("records_in_clusters", "records in clusters"), ("reconciled_text", "reconciled")],
            [*rows, dict(totals, dataset="all", reconciled_text="yes" if all(r["reconciled"] for r in inputs) else "NO")],
            row_key="dataset", cls="counts",
        )
        + f'<ul class="checks">{checks}</ul>'
    )))

    q = data["quarantine"]
    if q:
        charts["quarantine"] = {
            "data": {"values": q}, "mark": {"type": "bar", "tooltip": True}, "width": 560,
            "encoding": {
                "y": {"field": "reason", "type": "nominal", "title": "reason", "sort": "-x"},
                "x": {"field": "rows", "type": "quantitative", "title": "rows quarantined"},
                "color": {"field": "dataset", "type": "nominal"},
                "yOffset": {"field": "dataset"},
            },
        }
    parts.append(_section("quarantine", (
        "<p>Rows that could not be used, by dataset, stage and reason (no identifiers are kept for them).</p>"
        + (_chart_div("quarantine") if q else "")
        + _table([("dataset", "dataset"), ("stage", "stage"), ("reason", "reason"), ("rows", "rows"), ("source", "counted from")],
                 [dict(r, key=f'{r["dataset"]}/{r["stage"]}/{r["reason"]}') for r in q], row_key="key")
    )))

    m = data["model"]
    if m is None:
        parts.append(_section("model", "<p>Model not available (see the notes).</p>"))
    else:
        charts["match_weights"] = m["charts"]["match_weights"]
        charts["m_u"] = m["charts"]["m_u"]
        parts.append(_section("model", (
            _kv([
                ("file", "Model file", m["file"]),
                ("same_as_run", "The model this run used", m["same_as_run"]),
                ("splink_version", "Splink version", m["splink_version"]),
                ("lambda", "Probability two random records match (\u03bb)", m["probability_two_random_records_match"]),
                ("prior_match_weight", "Prior match weight", m["prior_match_weight"]),
            ])
            + "<h3>Match weights</h3>" + _chart_div("match_weights")
            + "<h3>m and u probabilities</h3>" + _chart_div("m_u")
            + _table([("comparison", "comparison"), ("level", "level"), ("m", "m"), ("u", "u"), ("match_weight", "match weight")],
                     [dict(r, key=f'{r["comparison"]}/{r["level"]}') for r in m["parameters"]], row_key="key", cls="params")
        )))

    s = data["scores"]
    if s["histogram"]:
        from splink.internals.charts import MatchWeightsHistogramChart

        charts["scores"] = MatchWeightsHistogramChart(s["histogram"]).chart_dict
        charts["scores"]["title"] = {"text": "Edges by match weight", "subtitle": "pairs at or above the link threshold"}
    parts.append(_section("scores", (
        f"<p>{_num(s['edges'])} edges: record pairs scored at or above the link threshold "
        f"(match probability {_num(s['threshold_match_probability'])}). Pairs below it are not stored.</p>"
        + (_chart_div("scores") if s["histogram"] else "")
        + _table([("band", "match probability"), ("edges", "edges")], s["bands"], row_key="band")
        + (_kv([(k, k, v) for k, v in s.get("match_weight", {}).items()]) if s.get("match_weight") else "")
    )))

    cl = data["clusters"]
    charts["cluster_sizes"] = _bar_spec(cl["by_size"], "size", "persons", "records per person (cluster size)", "persons")
    parts.append(_section("clusters", (
        f"<p>{_num(cl['persons'])} persons from {_num(cl['records'])} records.</p>"
        + _chart_div("cluster_sizes")
        + _table([("size", "cluster size"), ("persons", "persons")], cl["by_size"], row_key="size")
        + "<h3>Persons by the datasets they appear in</h3>"
        + _table([("datasets", "datasets"), ("persons", "persons"), ("records", "records")], cl["by_datasets"], row_key="datasets")
    )))

    ev = data["id_events"]
    parts.append(_section("id-events", (
        "<p>How this run's person ids relate to the previous run's: <b>new</b> ids for new people, "
        "<b>merge</b> when ids joined, <b>split</b> when part of a person left to form a new id, "
        "<b>retire</b> when an id has no records left.</p>"
        + _table([("event", "event"), ("reason", "reason"), ("events", "events"), ("records", "records"), ("old_ids", "previous ids involved")],
                 [dict(r, key=f'{r["event"]}/{r["reason"]}') for r in ev], row_key="key")
    )))

    acc = data["accuracy"]
    if acc is None:
        parts.append(_section("accuracy", "<p>No truth table given: accuracy not measured (<code>--truth</code>).</p>"))
    else:
        linked = [{"measure": kind, **{k: acc["as_linked"][kind][k] for k in ("precision", "recall", "f1")}} for kind in ("pairwise", "cluster")]
        sweep_rows = [
            {"threshold": r["threshold"], "pair_precision": r["pair_precision"], "pair_recall": r["pair_recall"], "pair_f1": r["pair_f1"],
             "cluster_precision": r["cluster_precision"], "cluster_recall": r["cluster_recall"], "cluster_f1": r["cluster_f1"]}
            for r in acc["sweep"]
        ]
        long = [{"threshold": r["threshold"], "metric": k.replace("pair_", ""), "value": r[k]} for r in sweep_rows for k in ("pair_precision", "pair_recall", "pair_f1")]
        if long:
            charts["accuracy"] = {
                "data": {"values": long}, "mark": {"type": "line", "point": True, "tooltip": True}, "width": 560, "height": 220,
                "encoding": {
                    "x": {"field": "threshold", "type": "ordinal", "title": "match probability threshold"},
                    "y": {"field": "value", "type": "quantitative", "title": "pairwise", "scale": {"zero": False}},
                    "color": {"field": "metric", "type": "nominal"},
                },
            }
        note = f"<p>Thresholds below the link threshold cannot be judged from the stored edges: {_e(acc['not_evaluable'])}.</p>" if acc["not_evaluable"] else ""
        parts.append(_section("accuracy", (
            "<h3>Clusters as linked</h3>"
            + _table([("measure", "measure"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1")], linked, row_key="measure", cls="as-linked")
            + "<h3>Re-clustered from the run's edges at each threshold</h3>"
            + (_chart_div("accuracy") if long else "")
            + _table([("threshold", "threshold"), ("pair_precision", "pair precision"), ("pair_recall", "pair recall"), ("pair_f1", "pair F1"),
                      ("cluster_precision", "cluster precision"), ("cluster_recall", "cluster recall"), ("cluster_f1", "cluster F1")],
                     sweep_rows, row_key="threshold", cls="sweep")
            + note
        )))

    notes = "".join(f"<li>{_e(n)}</li>" for n in data["notes"])
    body = "".join(parts) + (f'<section id="notes"><h2>Notes</h2><ul>{notes}</ul></section>' if notes else "")
    for spec in charts.values():
        spec.pop("$schema", None)  # vega-embed would warn that it is older than the schema
    payload = _json_for_script(data)
    chart_payload = _json_for_script(charts)
    _refuse_token_like(body + payload + chart_payload)
    libs = _chart_libraries()
    scripts = "\n".join(f'<script data-library="{n}">\n{libs[n]}\n</script>' for n in CHART_LIBRARIES)
    return Template(_PAGE).substitute(
        title=_e(f"natlink link run {run['run_id']}"),
        run_id=_e(run["run_id"]),
        generated=_e(data["generated_utc"]),
        nav="".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in SECTIONS.items()),
        body=body,
        data=payload,
        charts=chart_payload,
        libraries=scripts,
        embed=_EMBED_SCRIPT,
        style=_STYLE,
    )


def _refuse_token_like(text: str) -> None:
    found = len(_TOKEN_LIKE.findall(text))
    if found:
        raise ReportError(f"the report would contain {found} token-like value(s) (64 hex digits); refused")


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{background:#e8edf3;padding:8px 28px;font-size:13px} nav a{margin-right:16px;color:#1d3557}
main{padding:8px 28px 40px;max-width:1180px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:12px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px;color:#1d3557} h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border-bottom:1px solid #e5e9ef;padding:4px 10px;text-align:left}
thead th{background:#f0f3f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{font-weight:normal;color:#4a5868}
ul.checks{font-size:13px;columns:2} li.ok{color:#1b7f3b} li.bad{color:#b00020;font-weight:bold}
.chart{margin:8px 0} .chart-error{color:#b00020}
"""

_EMBED_SCRIPT = """
(function () {
  var specs = JSON.parse(document.getElementById("natlink-chart-specs").textContent);
  var state = window.natlinkCharts = {total: Object.keys(specs).length, rendered: 0, failed: []};
  Object.keys(specs).forEach(function (name) {
    var el = document.getElementById("chart-" + name);
    vegaEmbed(el, specs[name], {actions: false, renderer: "svg", mode: "vega-lite"}).then(function () {
      el.setAttribute("data-rendered", "true");
      state.rendered += 1;
    }).catch(function (err) {
      el.setAttribute("data-rendered", "error");
      el.className += " chart-error";
      el.textContent = "Chart could not be drawn: " + (err && err.message ? err.message : err);
      state.failed.push(name);
      console.error(err);
    });
  });
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:">
<title>$title</title>
<style>$style</style>
</head>
<body>
<header><h1>natlink link run <span id="run-id">$run_id</span></h1>
<p>Counts only: no identifiers, record ids, person ids or tokens. Generated $generated (UTC). Works offline.</p></header>
<nav>$nav</nav>
<main>
$body
</main>
<script type="application/json" id="natlink-report-data">$data</script>
<script type="application/json" id="natlink-chart-specs">$charts</script>
$libraries
<script>$embed</script>
</body>
</html>
"""


# ---------------------------------------------------------------------------------------------
# Job


def write_report(spark, *, tables: str | Path, run_id: str, out: str | Path | None = None,
                 model_path: str | Path | None = None, truth: str | Path | DataFrame | None = None,
                 thresholds: Sequence[float] | None = None) -> Path:
    """Collect, render and write the report of ``run_id``; returns the HTML file's path.

    ``truth``: a DataFrame or a Delta / Parquet table of (dataset, record_id, true_person_id).
    Default ``out``: ``<tables>/../reports/<run_id>.html``.
    """
    tables = Path(tables)
    truth_df = _truth_frame(spark, truth)
    data = collect(spark, tables, run_id, model_path=model_path, truth=truth_df, thresholds=thresholds)
    page = render(data)
    out = Path(out) if out is not None else tables.parent / "reports" / f"{data['run']['run_id']}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    log.info("report of run %s written to %s (%d bytes)", data["run"]["run_id"], out, len(page))
    return out


def _truth_frame(spark, truth: str | Path | DataFrame | None) -> DataFrame | None:
    if truth is None or isinstance(truth, DataFrame):
        return truth
    path = str(truth)
    if delta.exists(path):
        return delta.read(spark, path)
    if not Path(path).exists():
        raise ReportError(f"truth table not found: {path}")
    return spark.read.parquet(path)  # the synthetic truth is plain Parquet, not Delta
