"""`natlink report`: one self-contained HTML page per link run, for data owners. Counts only.

The page works offline: Splink's own copies of vega, vega-lite and vega-embed (shipped inside its
wheel) are inlined, and nothing refers to the network. It shows

* ``inputs``: per dataset, rows in = rows linked + quarantined (onboarding, tokenise) + duplicates
  collapsed, from the token manifests, checked against the quarantine table and the run's clusters;
* ``quarantine``: quarantined rows by dataset, stage and reason (the one quarantine table,
  :mod:`natlink.store.quarantine`);
* ``model``: lambda, m and u per comparison level and Splink's match weights chart (model JSON);
* ``scores``: the distribution of the run's edges by match weight and match probability;
* ``clusters``: persons by cluster size and by the combination of datasets they span;
* ``id-events``: the run's new / merge / split / retire events by reason;
* ``accuracy`` (with a truth table): pairwise and cluster precision / recall / F1 at several thresholds.

Nothing identifying is shown: no record ids, person ids, tokens or values, only counts, dataset
names, fixed reason names and model labels. As a last guard the page is refused when any text in
it looks like a token (64 hex digits).

Where each part lives: :mod:`~natlink.outputs.report.gather` (Spark aggregates -> one small
dict), :mod:`~natlink.outputs.report.sections` (dict -> the sections' HTML) and
:mod:`~natlink.outputs.report.page` (HTML building blocks, the template, the guards).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from pyspark.sql import DataFrame

from natlink.errors import ReportError
from natlink.outputs.disclosure import DEFAULT_MIN_CELL_COUNT
from natlink.outputs.report.gather import collect, find_run, truth_frame
from natlink.outputs.report.page import SECTIONS
from natlink.outputs.report.sections import render

__all__ = ["ReportError", "SECTIONS", "collect", "find_run", "render", "write_report"]

log = logging.getLogger(__name__)


def write_report(spark, *, tables: str | Path, run_id: str, out: str | Path | None = None,
                 model_path: str | Path | None = None, truth: str | Path | DataFrame | None = None,
                 thresholds: Sequence[float] | None = None, min_cell_count: int = DEFAULT_MIN_CELL_COUNT) -> Path:
    """Collect, render and write the report of ``run_id``; returns the HTML file's path.

    Counts from 1 to ``min_cell_count - 1`` are withheld (:mod:`natlink.outputs.disclosure`).

    ``truth``: a DataFrame or a Delta / Parquet table of (dataset, record_id, true_person_id).
    Default ``out``: ``<tables>/../reports/<run_id>.html``.
    """
    tables = Path(tables)
    truth_df = truth_frame(spark, truth)
    data = collect(spark, tables, run_id, model_path=model_path, truth=truth_df, thresholds=thresholds, min_cell_count=min_cell_count)
    page = render(data)
    out = Path(out) if out is not None else tables.parent / "reports" / f"{data['run']['run_id']}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    log.info("report of run %s written to %s (%d bytes)", data["run"]["run_id"], out, len(page))
    return out
