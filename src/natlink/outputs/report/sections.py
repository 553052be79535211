"""The report's sections: the dict of :func:`natlink.outputs.report.gather.collect` as HTML.

One function per section, each returning its ``<section>`` and adding its chart specs (Vega-Lite)
to ``charts``; :func:`render` puts them in the page. No Spark here.
"""

from __future__ import annotations

from typing import Any

from natlink.outputs.report.page import bar_spec, chart_div, escape, kv, num, page, section, table

__all__ = ["render"]


def render(data: dict[str, Any]) -> str:
    """The report page for ``data`` (from ``collect``): one HTML string, no network references."""
    charts: dict[str, dict] = {}
    parts = [
        _run(data["run"]),
        _inputs(data["inputs"], data.get("input_totals")),
        _quarantine(data["quarantine"], charts),
        _model(data["model"], charts),
        _scores(data["scores"], charts),
        _clusters(data["clusters"], charts),
        _id_events(data["id_events"]),
        _accuracy(data["accuracy"], charts),
    ]
    n = data.get("min_cell_count", 0)
    withheld = [f"Counts from 1 to {n - 1} are withheld (shown as \u2013), and a total that would reveal one by subtraction."] if n > 1 else []
    notes = "".join(f"<li>{escape(n)}</li>" for n in [*withheld, *data["notes"]])
    body = "".join(parts) + (f'<section id="notes"><h2>Notes</h2><ul>{notes}</ul></section>' if notes else "")
    return page(run_id=data["run"]["run_id"], generated=data["generated_utc"], body=body, data=data, charts=charts)


def _run(run: dict[str, Any]) -> str:
    threshold = run["threshold_match_probability"]
    facts = kv([
        ("run_id", "Run id", run["run_id"]),
        ("mode", "Mode", run["mode"]),
        ("previous_run_id", "Previous run", run["previous_run_id"]),
        ("started_at", "Started (UTC)", run["started_at"]),
        ("finished_at", "Finished (UTC)", run["finished_at"]),
        ("seconds", "Seconds", run["seconds"]),
        ("records", "Records linked", run["records"]),
        ("persons", "Persons", run["persons"]),
        ("edges", "Edges (pairs at or above the threshold)", run["edges"]),
        ("threshold", "Threshold (match probability)", f"{threshold:g}" if threshold is not None else None),
        ("model_file", "Model", run["model_file"]),
        ("key_fingerprint", "Key fingerprint (public)", run["key_fingerprint"]),
    ])
    timings = [{"step": k, "seconds": float(v)} for k, v in run["timings"].items()]
    body = facts + "<h3>Step timings (seconds)</h3>" + table([("step", "step"), ("seconds", "seconds", 1)], timings, row_key="step")
    return section("run", body + _block_splits(run.get("block_splits") or [], run.get("comparisons_per_rule")))


def _block_splits(splits: list[dict[str, Any]], comparisons: list[int] | None) -> str:
    """Comparisons per prediction rule, and the large blocks split (link.split_large_blocks): never dropped unseen."""
    html = ""
    if comparisons:
        rows = [{"rule": i, "comparisons": n} for i, n in enumerate(comparisons)]
        html += "<h3>Comparisons per prediction rule</h3>" + table([("rule", "rule", 0), ("comparisons", "comparisons", 0)], rows, row_key="rule")
    if splits:
        rows = [{**s, "by": ", ".join(s["by"])} for s in splits]
        columns = [("rule", "rule"), ("above", "split above (records)", 0), ("by", "by"), ("blocks_split", "blocks split", 0),
                   ("records_in_them", "their records", 0), ("largest_block", "largest block", 0), ("pairs_before", "pairs before", 0),
                   ("pairs_after", "pairs compared", 0), ("pairs_not_compared", "pairs not compared", 0)]
        html += "<h3>Large blocks split</h3>" + table(columns, rows, row_key="rule", cls="block-splits")
    return html


_INPUT_COUNTS = ("rows_in", "quarantined_onboarding", "duplicates_collapsed", "quarantined_tokenise", "rows_linked", "records_in_clusters")


def _inputs(inputs: list[dict[str, Any]], data_totals: dict[str, Any] | None = None) -> str:
    rows = [dict(r, reconciled_text="yes" if r["reconciled"] else "NO") for r in inputs]
    checks = "".join(
        f'<li data-dataset="{escape(r["dataset"])}" data-check="{escape(name)}" class="{"ok" if ok else "bad"}">'
        f'{escape(r["dataset"])}: {escape(name)}: {"ok" if ok else "FAILED"}</li>'
        for r in inputs for name, ok in r["checks"].items()
    )
    totals = dict(data_totals or {k: sum(r[k] or 0 for r in inputs) for k in _INPUT_COUNTS})
    totals.update(dataset="all", reconciled_text="yes" if all(r["reconciled"] for r in inputs) else "NO")
    columns = [
        ("dataset", "dataset"), ("rows_in", "rows in"), ("quarantined_onboarding", "quarantined (onboarding)"),
        ("duplicates_collapsed", "duplicates collapsed"), ("quarantined_tokenise", "quarantined (tokenise)"),
        ("rows_linked", "rows linked"), ("records_in_clusters", "records in clusters"), ("reconciled_text", "reconciled"),
    ]
    return section("inputs", (
        "<p>Every row delivered is accounted for: rows in = rows linked + quarantined at onboarding + duplicates "
        "collapsed + quarantined at tokenise (from each token manifest), checked against the quarantine tables "
        "and the run's clusters table.</p>"
        + table(columns, [*rows, totals], row_key="dataset", cls="counts")
        + f'<ul class="checks">{checks}</ul>'
    ))


def _quarantine(q: list[dict[str, Any]], charts: dict[str, dict]) -> str:
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
    columns = [("dataset", "dataset"), ("stage", "stage"), ("reason", "reason"), ("rows", "rows"), ("source", "counted from")]
    return section("quarantine", (
        "<p>Rows that could not be used, by dataset, stage and reason (no identifiers are kept for them).</p>"
        + (chart_div("quarantine") if q else "")
        + table(columns, [dict(r, key=f'{r["dataset"]}/{r["stage"]}/{r["reason"]}') for r in q], row_key="key")
    ))


def _model(m: dict[str, Any] | None, charts: dict[str, dict]) -> str:
    if m is None:
        return section("model", "<p>Model not available (see the notes).</p>")
    charts["match_weights"] = m["charts"]["match_weights"]
    charts["m_u"] = m["charts"]["m_u"]
    facts = kv([
        ("file", "Model file", m["file"]),
        ("same_as_run", "The model this run used", m["same_as_run"]),
        ("splink_version", "Splink version", m["splink_version"]),
        ("lambda", "Probability two random records match (\u03bb)", m["probability_two_random_records_match"]),
        ("prior_match_weight", "Prior match weight", m["prior_match_weight"]),
    ])
    columns = [("comparison", "comparison"), ("level", "level"), ("m", "m"), ("m_source", "m from"), ("u", "u"),
               ("u_source", "u from"), ("match_weight", "match weight")]
    floors = m.get("floors") or []
    floor_note = "" if not floors else (
        "<p>Levels training saw no pair in, given a value by name in the model (<code>training.allow_unobserved</code>), "
        "not Splink's default:</p>"
        + table([("comparison", "comparison"), ("level", "level"), ("parameter", "parameter"), ("value", "value"), ("estimate", "estimate")],
                [dict(f, key=f'{f["comparison"]}/{f["level"]}/{f["parameter"]}') for f in floors], row_key="key", cls="floors")
    )
    return section("model", (
        facts
        + "<h3>Match weights</h3>" + chart_div("match_weights")
        + "<h3>m and u probabilities</h3>" + chart_div("m_u")
        + "<p>m from: EM, or a floor; u from: an exact count over the population, random sampling, or a floor.</p>"
        + table(columns, [dict(r, key=f'{r["comparison"]}/{r["level"]}') for r in m["parameters"]], row_key="key", cls="params")
        + floor_note
    ))


def _scores(s: dict[str, Any], charts: dict[str, dict]) -> str:
    if s["histogram"]:
        from splink.internals.charts import MatchWeightsHistogramChart

        charts["scores"] = MatchWeightsHistogramChart(s["histogram"]).chart_dict
        charts["scores"]["title"] = {"text": "Edges by match weight", "subtitle": "pairs at or above the link threshold"}
    return section("scores", (
        f"<p>{num(s['edges'])} edges: record pairs scored at or above the link threshold "
        f"(match probability {num(s['threshold_match_probability'])}). Pairs below it are not stored.</p>"
        + (chart_div("scores") if s["histogram"] else "")
        + table([("band", "match probability"), ("edges", "edges")], s["bands"], row_key="band")
        + (kv([(k, k, v) for k, v in s.get("match_weight", {}).items()]) if s.get("match_weight") else "")
    ))


def _clusters(cl: dict[str, Any], charts: dict[str, dict]) -> str:
    charts["cluster_sizes"] = bar_spec(cl["by_size"], "size", "persons", "records per person (cluster size)", "persons")
    return section("clusters", (
        f"<p>{num(cl['persons'])} persons from {num(cl['records'])} records.</p>"
        + chart_div("cluster_sizes")
        + table([("size", "cluster size"), ("persons", "persons")], cl["by_size"], row_key="size")
        + "<h3>Persons by the datasets they appear in</h3>"
        + table([("datasets", "datasets"), ("persons", "persons"), ("records", "records")], cl["by_datasets"], row_key="datasets")
    ))


def _id_events(ev: list[dict[str, Any]]) -> str:
    columns = [("event", "event"), ("reason", "reason"), ("events", "events"), ("records", "records"), ("old_ids", "previous ids involved")]
    return section("id-events", (
        "<p>How this run's person ids relate to the previous run's: <b>new</b> ids for new people, "
        "<b>merge</b> when ids joined, <b>split</b> when part of a person left to form a new id, "
        "<b>retire</b> when an id has no records left.</p>"
        + table(columns, [dict(r, key=f'{r["event"]}/{r["reason"]}') for r in ev], row_key="key")
    ))


_SWEEP_COLUMNS = (
    ("threshold", "threshold"), ("pair_precision", "pair precision"), ("pair_recall", "pair recall"), ("pair_f1", "pair F1"),
    ("cluster_precision", "cluster precision"), ("cluster_recall", "cluster recall"), ("cluster_f1", "cluster F1"),
)


def _accuracy_chart(sweep_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pairwise precision, recall and F1 by threshold, one line each (None without a sweep)."""
    long = [{"threshold": r["threshold"], "metric": k.replace("pair_", ""), "value": r[k]} for r in sweep_rows for k in ("pair_precision", "pair_recall", "pair_f1")]
    if not long:
        return None
    return {
        "data": {"values": long}, "mark": {"type": "line", "point": True, "tooltip": True}, "width": 560, "height": 220,
        "encoding": {
            "x": {"field": "threshold", "type": "ordinal", "title": "match probability threshold"},
            "y": {"field": "value", "type": "quantitative", "title": "pairwise", "scale": {"zero": False}},
            "color": {"field": "metric", "type": "nominal"},
        },
    }


def _accuracy(acc: dict[str, Any] | None, charts: dict[str, dict]) -> str:
    if acc is None:
        return section("accuracy", "<p>No truth table given: accuracy not measured (<code>--truth</code>).</p>")
    linked = [{"measure": kind, **{k: acc["as_linked"][kind][k] for k in ("precision", "recall", "f1")}} for kind in ("pairwise", "cluster")]
    sweep_rows = [{key: r[key] for key, _label in _SWEEP_COLUMNS} for r in acc["sweep"]]
    chart = _accuracy_chart(sweep_rows)
    if chart is not None:
        charts["accuracy"] = chart
    note = f"<p>Thresholds below the link threshold cannot be judged from the stored edges: {escape(acc['not_evaluable'])}.</p>" if acc["not_evaluable"] else ""
    return section("accuracy", (
        "<h3>Clusters as linked</h3>"
        + table([("measure", "measure"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1")], linked, row_key="measure", cls="as-linked")
        + "<h3>Re-clustered from the run's edges at each threshold</h3>"
        + (chart_div("accuracy") if chart is not None else "")
        + table(_SWEEP_COLUMNS, sweep_rows, row_key="threshold", cls="sweep")
        + note
    ))
