"""Research extracts: what a project receives, and nothing it could join to another project's.

``natlink extract`` writes, for one project (:class:`~natlink.config.project.ProjectConfig`) and
the last completed link run (read through :func:`natlink.linkage.runs.completed_view`):

* ``OUT/<project>/<dataset>`` (Delta), one row per record of each allow-listed dataset:
  ``project_person_id`` and the project's allow-listed columns only. No token, Bloom filter,
  record id or centre person id ever leaves (:data:`natlink.config.project.FORBIDDEN_COLUMNS`).
* ``project_person_id`` is drawn at random for each person the first time the project sees them,
  and kept in a table the linkage centre holds (``TABLES/projects/<project>/person_ids``; never
  part of an extract), so a project's ids are stable across its refreshes. Two projects' ids are
  independent draws: there is no function from one to the other, unlike a deterministic
  re-keying of tokens.
* Rows are shuffled, so row order carries nothing from the tables.
* Both draws come from 32 bytes of the operating system's CSPRNG (``secrets``), drawn afresh for
  each call and never stored: a new id is HMAC-SHA256(that key, centre person id) shaped as a
  version-4 UUID (122 random bits), and rows are sorted by HMAC(that key, dataset and record
  id). Spark's ``uuid()`` and ``rand()`` are not used: they are Mersenne Twister and XORShift
  generators seeded from a ``java.util.Random`` (48 bits of state), so ids drawn with them could
  be predicted from one another, and two projects' draws in one session from each other's.
* ``OUT/<project>/extract.json``: the project, the run, the columns, and rows and persons per
  dataset with every count from 1 to ``min_cell_count - 1`` withheld (``"<10"``).

Rows in = rows out, checked: every record of an allow-listed dataset is in the run's clusters.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.project import ProjectConfig
from natlink.errors import ConfigError, InputDataError, ReconciliationError
from natlink.linkage.runs import completed_view
from natlink.store import delta
from natlink.tokens.hmac_sha256 import PadColumns, key_frame
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import as_manifest
from natlink.tokens.reader import read_token_tables

__all__ = ["ID_PURPOSE", "ORDER_PURPOSE", "PROJECT_PERSON_ID", "ExtractResult", "as_uuid4", "suppressed", "write_extract"]

log = logging.getLogger(__name__)

PROJECT_PERSON_ID = "project_person_id"
# Purposes under the one-off key of one extract call: new person ids, and the rows' order.
ID_PURPOSE = "extract:project_person_id"
ORDER_PURPOSE = "extract:row_order"


@dataclass(frozen=True)
class ExtractResult:
    project: str
    run_id: str
    path: Path
    rows: dict[str, int]  # exact, for the operator; extract.json holds the suppressed figures
    persons: dict[str, int]
    new_persons: int
    min_cell_count: int = 10

    def summary_line(self) -> str:
        min_cell_count = self.min_cell_count
        parts = ", ".join(
            f"{d} {suppressed(n, min_cell_count)} rows / {suppressed(self.persons[d], min_cell_count)} persons"
            for d, n in sorted(self.rows.items())
        )
        return f"extract {self.project} from run {self.run_id}: {parts}; {self.new_persons} persons new to the project"


def suppressed(count: int, min_cell_count: int) -> int | str:
    """``count`` itself, or ``"<N"`` when it is between 1 and ``N - 1`` (N = ``min_cell_count``)."""
    return f"<{min_cell_count}" if 0 < count < min_cell_count else int(count)


def write_extract(
    spark,
    *,
    project: ProjectConfig,
    tables: str | Path,
    manifests: Sequence[Any],
    out: str | Path,
    run_id: str = "latest",
) -> ExtractResult:
    """Write the project's extract under ``out/<project>`` from the run's clusters and token tables."""
    tables, out = Path(tables), Path(out) / project.name
    view = completed_view(spark, tables, run_id)
    if view is None:
        raise InputDataError(f"no completed link run under {tables}: run `natlink link` first")
    items = {m.dataset: m for m in (as_manifest(x) for x in manifests)}
    missing = sorted(set(project.datasets) - set(items))
    if missing:
        raise ConfigError(f"project {project.name!r}: no token-table manifest given for datasets {missing}")
    for dataset, columns in project.datasets.items():
        kept = set(items[dataset].keep) - {C.DATASET, C.RECORD_ID}
        absent = sorted(set(columns) - kept)
        if absent:
            raise ConfigError(
                f"project {project.name!r}: dataset {dataset!r} keeps no columns {absent}; it keeps {sorted(kept)}"
            )
    clusters = view.table("clusters").select(C.DATASET, C.RECORD_ID, C.PERSON_ID)
    ids_path = tables / "projects" / project.name / "person_ids"
    # This call's random key: 32 bytes from the OS CSPRNG, in no table, file or message.
    one_off = KeyMaterial(f"extract:{project.name}:one-off", secrets.token_bytes(32))
    pads = PadColumns([ID_PURPOSE, ORDER_PURPOSE])
    pad_frame = F.broadcast(key_frame(spark, one_off, [ID_PURPOSE, ORDER_PURPOSE]))
    new_persons = _add_new_persons(spark, clusters, ids_path, project.name, pads, pad_frame)
    ids = delta.read(spark, str(ids_path))
    tokens = read_token_tables(spark, [items[d] for d in project.datasets])

    rows: dict[str, int] = {}
    persons: dict[str, int] = {}
    for dataset, columns in project.datasets.items():
        records = tokens.where(F.col(C.DATASET) == dataset).select(C.DATASET, C.RECORD_ID, *columns)
        shuffle = pads.hmac(ORDER_PURPOSE, F.concat_ws(":", F.col(C.DATASET), F.col(C.RECORD_ID)))
        linked = (
            records.join(clusters, on=[C.DATASET, C.RECORD_ID], how="inner")
            .join(ids, on=C.PERSON_ID, how="inner")
            .crossJoin(pad_frame)
            .orderBy(shuffle)  # row order carries nothing from the tables
            .select(PROJECT_PERSON_ID, *columns)
        )
        written = delta.write(linked, str(out / dataset), mode="overwrite", commit_info={"project": project.name})
        expected = items[dataset].rows
        if written.rows != expected:
            raise ReconciliationError(
                f"extract {project.name}/{dataset}: {expected} records in the token table, {written.rows} in the extract "
                f"(records missing from run {view.run_id}'s clusters)"
            )
        rows[dataset] = written.rows
        persons[dataset] = delta.read(spark, str(out / dataset)).select(PROJECT_PERSON_ID).distinct().count()
    _write_description(out, project, view.run_id, rows, persons)
    result = ExtractResult(project.name, view.run_id, out, rows, persons, new_persons, project.min_cell_count)
    log.info("%s", result.summary_line())
    return result


def as_uuid4(digest: Column) -> Column:
    """The first 128 bits of a hex digest shaped as a version-4 UUID (RFC 9562: version nibble 4,
    variant bits 10; the other 122 bits are the digest's)."""
    variant = F.lower(F.conv((F.conv(F.substring(digest, 17, 1), 16, 10).cast("int") % 4 + 8).cast("string"), 10, 16))
    return F.concat_ws(
        "-", F.substring(digest, 1, 8), F.substring(digest, 9, 4), F.concat(F.lit("4"), F.substring(digest, 14, 3)),
        F.concat(variant, F.substring(digest, 18, 3)), F.substring(digest, 21, 12),
    )


def _add_new_persons(spark, clusters, ids_path: Path, project: str, pads: PadColumns, pad_frame) -> int:
    """Give every person the project has not seen a random id (one append; a rerun adds none)."""
    people = clusters.select(C.PERSON_ID).distinct()
    if delta.exists(str(ids_path)):
        people = people.join(delta.read(spark, str(ids_path)).select(C.PERSON_ID), on=C.PERSON_ID, how="left_anti")
    drawn = as_uuid4(pads.hmac(ID_PURPOSE, F.col(C.PERSON_ID).cast("string")))
    fresh = people.crossJoin(pad_frame).select(C.PERSON_ID, drawn.alias(PROJECT_PERSON_ID))
    return delta.write(fresh, str(ids_path), mode="append", commit_info={"project": project}).rows


def _write_description(out: Path, project: ProjectConfig, run_id: str, rows: dict[str, int], persons: dict[str, int]) -> None:
    n = project.min_cell_count
    description = {
        "project": project.name,
        "run_id": run_id,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "datasets": {
            d: {"columns": project.datasets[d], "rows": suppressed(rows[d], n), "persons": suppressed(persons[d], n)}
            for d in sorted(rows)
        },
        "min_cell_count": n,
        "person_id": f"{PROJECT_PERSON_ID}: random per project (uuid), not derived from any identifier or token",
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "extract.json.tmp"
    tmp.write_text(json.dumps(description, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(out / "extract.json")
