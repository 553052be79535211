"""The report page's building blocks: escaping, tables, chart slots, the template and its guards.

Everything here turns small Python values into HTML text; nothing reads a table. The page is
self-contained: Splink's own copies of vega, vega-lite and vega-embed (shipped inside its wheel)
are inlined, and the Content-Security-Policy forbids every fetch. As a last guard a page is
refused when any text in it looks like a token (64 hex digits).
"""

from __future__ import annotations

import html
import json
import re
from string import Template
from typing import Any, Sequence

from natlink.errors import ReportError

__all__ = [
    "SECTIONS", "CHART_LIBRARIES", "escape", "num", "table", "kv", "bar_spec", "section", "chart_div",
    "json_for_script", "refuse_token_like", "page",
]

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


def json_for_script(value: Any) -> str:
    """JSON safe inside a <script> element (no '<', '>' or '&' survive)."""
    text = json.dumps(value, allow_nan=False, sort_keys=True, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_libraries() -> dict[str, str]:
    from splink.internals.html_utils import load_chart_libraries

    libs = load_chart_libraries()
    missing = [n for n in CHART_LIBRARIES if n not in libs]
    if missing:
        raise ReportError(f"the installed splink does not ship the chart libraries {missing}")
    # A literal "</script" would end the inline element early.
    return {n: libs[n].replace("</script", "<\\/script") for n in CHART_LIBRARIES}


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def num(value: Any, digits: int = 4) -> str:
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
    return escape(value)


def table(columns: Sequence[tuple], rows: Sequence[dict[str, Any]], *, row_key: str | None = None, cls: str = "") -> str:
    """Columns: (key, label) or (key, label, decimals)."""
    columns = [(c[0], c[1], c[2] if len(c) > 2 else 4) for c in columns]
    head = "".join(f"<th>{escape(label)}</th>" for _key, label, _d in columns)
    body = []
    for r in rows:
        attr = f' data-key="{escape(r.get(row_key))}"' if row_key else ""
        cells = "".join(
            f'<td data-col="{escape(key)}" class="{"num" if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) else ""}">{num(r.get(key), digits)}</td>'
            for key, _label, digits in columns
        )
        body.append(f"<tr{attr}>{cells}</tr>")
    if not rows:
        body.append(f'<tr class="empty"><td colspan="{len(columns)}">none</td></tr>')
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def kv(pairs: Sequence[tuple[str, str, Any]], digits: int = 4) -> str:
    rows = "".join(f'<tr data-key="{escape(k)}"><th>{escape(label)}</th><td>{num(v, 1 if k == "seconds" else digits)}</td></tr>' for k, label, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def bar_spec(values: list[dict], x: str, y: str, x_title: str, y_title: str, *, ordinal: bool = True, title: str | None = None) -> dict:
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


def section(sid: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(SECTIONS[sid])}</h2>{body}</section>'


def chart_div(cid: str) -> str:
    return f'<div class="chart" id="chart-{cid}" data-chart="{cid}"></div>'


def refuse_token_like(text: str) -> None:
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


def page(*, run_id: str, generated: str, body: str, data: Any, charts: dict[str, dict]) -> str:
    """The whole HTML page around ``body``, with the report data and chart specs as JSON."""
    for spec in charts.values():
        spec.pop("$schema", None)  # vega-embed would warn that it is older than the schema
    payload = json_for_script(data)
    chart_payload = json_for_script(charts)
    refuse_token_like(body + payload + chart_payload)
    libs = chart_libraries()
    scripts = "\n".join(f'<script data-library="{n}">\n{libs[n]}\n</script>' for n in CHART_LIBRARIES)
    return Template(_PAGE).substitute(
        title=escape(f"natlink link run {run_id}"),
        run_id=escape(run_id),
        generated=escape(generated),
        nav="".join(f'<a href="#{sid}">{escape(t)}</a>' for sid, t in SECTIONS.items()),
        body=body,
        data=payload,
        charts=chart_payload,
        libraries=scripts,
        embed=_EMBED_SCRIPT,
        style=_STYLE,
    )
