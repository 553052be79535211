"""Data-quality profile of one dataset delivery, for an analyst to read before linking.

Built from :func:`natlink.provider.onboard.onboard` (nothing is written): rows in / out / quarantined /
collapsed, per identifier column the completeness and the invalid counts by reason, quarantine
reasons, the region distribution and unexpected source columns. Counts, column names, region
names and paths only: never a value from the data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from natlink.config.datasets import DatasetConfig
from natlink.provider.onboard import onboard

__all__ = ["completeness", "profile", "render"]


def completeness(spark, configs, *, data_dir: str | None = None) -> dict[str, dict[str, float]]:
    """Dataset -> identifier -> share of the rows passed on with a usable value (``natlink model init``)."""
    out = {}
    for cfg in configs:
        report = profile(spark, cfg, data_dir=data_dir)
        out[cfg.name] = {c: float(v["completeness"] or 0.0) for c, v in report["columns"].items()}
    return out


def profile(spark, cfg: DatasetConfig, *, data_dir: str | None = None, as_of: dt.date | None = None) -> dict[str, Any]:
    """The profile of ``cfg``'s source as a JSON-ready dict."""
    run_id = "profile-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = onboard(spark, cfg, data_dir=data_dir, run_id=run_id, as_of=as_of)
    result.unpersist()
    c = result.counts
    columns = {}
    for column, parts in c.fields.items():
        invalid = {k: v for k, v in parts.items() if k not in ("present", "missing")}
        columns[column] = {
            "source_column": cfg.columns.get(column),
            "present": parts["present"],
            "missing": parts["missing"],
            "invalid": sum(invalid.values()),
            "completeness": parts["present"] / c.rows_out if c.rows_out else None,
            "invalid_by_reason": invalid,
        }
    return {
        "dataset": cfg.name,
        "source": cfg.source.path,
        "files": c.files,
        "rows_in": c.rows_in,
        "rows_out": c.rows_out,
        "quarantined": c.quarantined,
        "duplicates_collapsed": c.duplicates_collapsed,
        "quarantine_reasons": c.quarantine_reasons,
        "columns": columns,
        "regions": dict(sorted(c.regions.items(), key=lambda kv: (-kv[1], kv[0]))),
        "unexpected_columns": c.unexpected_columns,
        "unmapped_bad_bytes": c.unmapped_bad_bytes,
    }


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def render(report: dict[str, Any], console) -> None:
    """Print ``report`` as rich tables."""
    from rich.table import Table

    r = report
    overview = Table(title=f"dataset {r['dataset']}: {r['rows_in']} rows in {r['files'] or 1} file(s)")
    for col in ("rows in", "rows out", "quarantined", "duplicates collapsed"):
        overview.add_column(col, justify="right")
    overview.add_row(str(r["rows_in"]), str(r["rows_out"]), str(r["quarantined"]), str(r["duplicates_collapsed"]))
    console.print(overview)

    columns = Table(title=f"identifier columns (of {r['rows_out']} rows passed on)")
    for col, justify in (("column", "left"), ("source", "left"), ("present", "right"), ("complete", "right"),
                         ("missing", "right"), ("invalid", "right"), ("invalid by reason", "left")):
        columns.add_column(col, justify=justify)
    for name, c in r["columns"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in c["invalid_by_reason"].items() if v) or "-"
        columns.add_row(
            name, c["source_column"] or "(not mapped)", str(c["present"]), _pct(c["present"], r["rows_out"]),
            str(c["missing"]), str(c["invalid"]), reasons,
        )
    console.print(columns)

    quarantine = Table(title="quarantine reasons")
    quarantine.add_column("reason")
    quarantine.add_column("rows", justify="right")
    quarantine.add_column("of rows in", justify="right")
    for reason, n in r["quarantine_reasons"].items():
        quarantine.add_row(reason, str(n), _pct(n, r["rows_in"]))
    console.print(quarantine)

    regions = Table(title="regions (rows passed on)")
    regions.add_column("region")
    regions.add_column("rows", justify="right")
    regions.add_column("share", justify="right")
    for region, n in r["regions"].items():
        regions.add_row(region, str(n), _pct(n, r["rows_out"]))
    console.print(regions)
    if r["unexpected_columns"]:
        console.print(f"unexpected source columns (not mapped): {', '.join(r['unexpected_columns'])}")
    if r["unmapped_bad_bytes"]:
        console.print(f"rows with undecodable bytes in unmapped columns: {r['unmapped_bad_bytes']}")
