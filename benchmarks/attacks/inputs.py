"""What the attacker holds: one token table and its manifest, or a project's research extract, as plain data.

The columns are discovered, not assumed: token-like columns (the manifest's ``tokens`` and any
other text column whose values look like digests), Bloom-filter-like columns (the manifest's
``blooms`` and any array column), and plaintext columns carried over (the manifest's ``keep``,
less the record id, which is an id and not an attribute). A new encoding that renames columns or
adds new ones is attacked the same way.

A research extract (``natlink extract``: ``OUT/<project>/<dataset>`` Delta tables and
``extract.json``) is read as it is delivered (:func:`load_extract`): per dataset, its rows in the
order they are read, with the project's person id and its allow-listed columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Columns that identify a row but say nothing about a person: never treated as an attribute.
ID_COLUMNS = ("record_id", "person_id", "dataset", "unique_id", "project_person_id")
PROJECT_PERSON_ID = "project_person_id"


@dataclass
class AttackTable:
    """A token table as the attacker sees it: the rows (pandas) and the manifest (dict)."""

    name: str
    manifest: dict[str, Any]
    rows: pd.DataFrame
    tokens: list[str] = field(default_factory=list)
    blooms: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def codes(self, column: str) -> np.ndarray:
        """Integer code per row of a column's value (-1 for NULL), first-seen order."""
        values = self.rows[column]
        if self.is_bloom(column):
            values = values.map(lambda a: None if a is None else ",".join(map(str, a)))
        codes, _ = pd.factorize(values, use_na_sentinel=True)
        return codes.astype(np.int64)

    def is_bloom(self, column: str) -> bool:
        return column in self.blooms


# A token: 16 or more hex digits (a salted field token is 16, a salted block key 32, a deterministic
# token 64). An id is not a token (``ID_COLUMNS``), whatever it looks like.
DIGEST = r"[0-9a-fA-F]{16,}"


def _looks_like_digest(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    return len(sample) > 0 and bool(sample.str.fullmatch(DIGEST).all())


def classify(manifest: dict[str, Any], rows: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(token columns, Bloom filter columns, plaintext columns) of a table."""
    columns = manifest.get("columns", {})
    blooms = [c for c in rows.columns if c in columns.get("blooms", {})]
    tokens = [c for c in rows.columns if c in columns.get("tokens", {})]
    for c in rows.columns:
        if c in tokens or c in blooms or c in ID_COLUMNS:
            continue
        first = rows[c].dropna().head(1)
        if len(first) and isinstance(first.iloc[0], (list, np.ndarray)):
            blooms.append(c)
        elif rows[c].dtype == object and _looks_like_digest(rows[c]):
            tokens.append(c)
    plain = [c for c in rows.columns if c not in tokens and c not in blooms and c not in ID_COLUMNS]
    return tokens, blooms, plain


def load(spark, manifest_path: str | Path) -> AttackTable:
    """Read a token table through its manifest (Delta, via natlink's store) into pandas."""
    from natlink.store import delta

    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    table = manifest_path.parent / manifest["table"]
    rows = delta.read(spark, str(table)).toPandas()
    return from_rows(manifest.get("dataset", table.name), manifest, rows)


def from_rows(name: str, manifest: dict[str, Any], rows: pd.DataFrame) -> AttackTable:
    tokens, blooms, plain = classify(manifest, rows)
    return AttackTable(name, manifest, rows.reset_index(drop=True), tokens, blooms, plain)


@dataclass
class Extract:
    """One project's research extract as the project (the attacker) receives it.

    ``tables``: dataset -> rows in read order (``project_person_id`` and the allowed columns);
    ``persons``: the project's person ids, in order of first appearance (datasets by name)."""

    project: str
    description: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    persons: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        ids = [self.tables[d][PROJECT_PERSON_ID].to_numpy() for d in sorted(self.tables)]
        self.persons = pd.unique(np.concatenate(ids)) if ids else np.array([], dtype=object)

    def person_rows(self, dataset: str) -> np.ndarray:
        """Per row of ``dataset``, the index of its person in :attr:`persons`."""
        index = pd.Index(self.persons)
        return index.get_indexer(self.tables[dataset][PROJECT_PERSON_ID].to_numpy()).astype(np.int64)

    def columns(self, dataset: str) -> list[str]:
        """The dataset's attribute columns (everything but the person id)."""
        return [c for c in self.tables[dataset].columns if c != PROJECT_PERSON_ID]


def load_extract(spark, folder: str | Path) -> Extract:
    """Read ``OUT/<project>`` (``extract.json`` and one Delta table per dataset) into pandas, in read order."""
    from natlink.store import delta

    folder = Path(folder)
    description = json.loads((folder / "extract.json").read_text(encoding="utf-8"))
    tables = {d: delta.read(spark, str(folder / d)).toPandas() for d in sorted(description["datasets"])}
    return Extract(description["project"], description, tables)
