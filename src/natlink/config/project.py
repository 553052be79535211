"""A research project's YAML (``conf/projects/NAME.yaml``): what its extract may contain.

An extract holds, per allow-listed dataset, only the allow-listed kept columns of the token
tables (event columns such as condition codes, the age band, the region), never a token, a Bloom
filter, a record id or a person id of the linkage centre. Each person gets an id drawn at random
for this project (:mod:`natlink.outputs.extract`).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from natlink import columns as C
from natlink.config.base import Frozen

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Never in an extract, whatever a project asks: the centre's own ids and every keyed encoding.
FORBIDDEN_COLUMNS = frozenset({C.RECORD_ID, C.UNIQUE_ID, C.PERSON_ID, C.RECORD_HASH, *C.IDENTIFIERS})


class ProjectConfig(Frozen):
    """``name``: the project (letters, digits, '_'); ``datasets``: dataset -> allow-listed columns."""

    name: str
    datasets: dict[str, list[str]] = Field(min_length=1)
    # Counts 1..min_cell_count-1 are withheld from the extract's summary (0 or 1: none).
    min_cell_count: int = Field(10, ge=0)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a project name is 1-63 lower-case letters, digits or '_', starting with a letter")
        return value

    @field_validator("datasets")
    @classmethod
    def _allowed(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for dataset, columns in value.items():
            bad = sorted(c for c in columns if c in FORBIDDEN_COLUMNS or C.is_token(c) or c.startswith("bf_"))
            if bad:
                raise ValueError(f"dataset {dataset!r}: columns {bad} can never be in a research extract")
            if len(set(columns)) != len(columns):
                raise ValueError(f"dataset {dataset!r}: a column is listed twice")
        return value
