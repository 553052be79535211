"""The ``runs`` table: which link runs completed, and a consistent view of the output tables.

A link run (:mod:`natlink.linkage.run`) writes ``clusters``, ``edges``, ``person_index`` and
``id_events`` one commit each, then appends its ``runs`` row, which records the Delta version it
wrote of each table. That row is the run's commit point: every reader (the report, discover, the
case study, research extracts, the next run) reads the tables *at the versions the last completed
run recorded* (:func:`completed_view`), never their latest versions. A run in progress, or killed
part-way, is therefore invisible until its ``runs`` row lands, and readers never see ``clusters``
of one run beside ``edges`` of another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.errors import DeltaTableError
from natlink.store import delta

__all__ = ["OUTPUT_TABLES", "RUNS_SCHEMA", "RunView", "completed_runs", "completed_view"]

OUTPUT_TABLES = ("clusters", "edges", "person_index", "id_events")

RUNS_SCHEMA = T.StructType(
    [
        T.StructField(C.RUN_ID, T.StringType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("previous_run_id", T.StringType(), True),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("finished_at", T.TimestampType(), False),
        T.StructField("inputs", T.StringType(), False),
        T.StructField("model", T.StringType(), False),
        T.StructField("key_fingerprint", T.StringType(), False),
        T.StructField("counts", T.StringType(), False),
        T.StructField("timings", T.StringType(), False),
        T.StructField("versions", T.StringType(), False),
    ]
)


def completed_runs(spark, tables: str | Path) -> list[dict[str, Any]]:
    """Rows of the ``runs`` table, oldest first (empty before the first completed run)."""
    path = Path(tables) / "runs"
    if not delta.exists(str(path)):
        return []
    rows = delta.read(spark, str(path)).orderBy("finished_at", C.RUN_ID).collect()
    return [r.asDict() for r in rows]


@dataclass(frozen=True)
class RunView:
    """The output tables as one completed run left them (``run``: its ``runs`` row)."""

    spark: Any
    tables: Path
    run: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.run[C.RUN_ID]

    @property
    def versions(self) -> dict[str, int | None]:
        return json.loads(self.run["versions"])

    def table(self, name: str, *, this_run_only: bool = False) -> DataFrame:
        """``name`` at the version the run recorded; ``this_run_only`` keeps the run's own rows
        (``id_events`` and any appended table hold every run's rows)."""
        if name not in OUTPUT_TABLES:
            raise DeltaTableError(f"{name!r} is not an output table of a link run ({', '.join(OUTPUT_TABLES)})")
        version = self.versions.get(name)
        path = self.tables / name
        if version is None or not delta.exists(str(path)):
            raise DeltaTableError(f"run {self.run_id}: table {path} (version {version}) is missing; rerun the link")
        frame = delta.read(self.spark, str(path), version=int(version))
        return frame.where(F.col(C.RUN_ID) == self.run_id) if this_run_only else frame


def completed_view(spark, tables: str | Path, run_id: str = "latest") -> RunView | None:
    """The view of ``run_id`` (``latest``: the last completed run); None when no run has completed.

    An unknown ``run_id`` is a :class:`~natlink.errors.DeltaTableError` listing the last runs.
    """
    tables = Path(tables)
    runs = completed_runs(spark, tables)
    if not runs:
        return None
    if run_id == "latest":
        return RunView(spark, tables, runs[-1])
    found = [r for r in runs if r[C.RUN_ID] == run_id]
    if not found:
        known = [r[C.RUN_ID] for r in runs][-10:]
        raise DeltaTableError(f"run {run_id!r} has not completed under {tables}; the last completed runs: {known}")
    return RunView(spark, tables, found[-1])
