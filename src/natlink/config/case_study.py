"""The case study's YAML (``conf/case_study.yaml``): condition-code columns and thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from natlink import columns as C
from natlink.config.base import Frozen, load, project_root


class CaseStudyConfig(Frozen):
    """``conf/case_study.yaml``: which kept event columns hold condition codes, and thresholds."""

    min_conditions: int = Field(2, ge=1)
    min_cell_count: int = Field(10, ge=0)  # counts 1..min_cell_count-1 are suppressed (0: none)
    code_columns: dict[str, Literal["icd10", "bnf"]] = Field(
        default_factory=lambda: {
            "ltc_codes": "icd10",
            "diag_01": "icd10",
            "diag_02": "icd10",
            C.CONDITION_CODE: "icd10",
            "bnf_code": "bnf",
        }
    )


def load_config(path: str | Path | None) -> CaseStudyConfig:
    """``conf/case_study.yaml`` (or another file); the defaults when ``path`` is None."""
    if path is None:
        return CaseStudyConfig()
    return load(path, CaseStudyConfig, base_dir=project_root())
