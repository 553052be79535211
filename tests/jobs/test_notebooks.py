"""The notebooks run as scripts on a small sample, each in its own Python (and Spark) process,
and write what they promise. They are jupytext percent files: no outputs are ever stored."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import pytest

from natlink.linkage import model_store
from natlink.config import project_root
from natlink.tokens.keys import KeyMaterial

NOTEBOOKS = project_root() / "notebooks"
PERSONS = "500"
# Each notebook takes about a minute on an idle 2-core machine; a shared one is slower.
pytestmark = pytest.mark.timeout(1500)


def run_notebook(name: str, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NATLINK_CASE_STUDY_DIR", "NATLINK_TOKENS", "NATLINK_TRUTH")}
    env.update(
        NATLINK_NB_OUT=str(out), NATLINK_NB_PERSONS=PERSONS, SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(NOTEBOOKS / f"{name}.py")], cwd=cwd, env=env, capture_output=True, text=True, timeout=1400
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (tmp_path / "seconds").write_text(f"{time.perf_counter() - started:.0f}")
    (tmp_path / "stdout.txt").write_text(proc.stdout)
    return out


@pytest.mark.parametrize("name", ["multimorbidity", "model_tuning"])
def test_notebooks_are_percent_format_without_outputs(name):
    text = (NOTEBOOKS / f"{name}.py").read_text(encoding="utf-8")
    assert "format_name: percent" in text
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = [c.cell_type for c in notebook.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 5
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    # Notebooks import natlink and define no transforms of their own.
    assert "from pyspark.sql import functions" not in text and "\ndef " not in text.replace("\ndef elapsed", "")
@pytest.mark.slow
def test_multimorbidity_notebook_runs_and_writes_the_chart(tmp_path):
    out = run_notebook("multimorbidity", tmp_path)
    summary = json.loads((out / "case_study" / "summary.json").read_text())
    overall = {m: v["prevalence"] for m, v in summary["overall"].items()}
    assert set(overall) == {"linked", "unlinked", "perfect_linkage", "truth"}
    assert overall["unlinked"] < overall["linked"]
    # 500 persons: linked tracks the truth within a few points (persons with no record at all
    # are in the truth's denominator only).
    assert abs(overall["linked"] - overall["truth"]) <= 0.03, overall
    assert (out / "case_study" / "prevalence" / "_delta_log").is_dir()
    spec = json.loads((out / "multimorbidity_by_age_band.vl.json").read_text())
    assert {v["method"] for v in spec["data"]["values"]} >= {"linked", "unlinked", "truth"}
    page = (out / "multimorbidity_by_age_band.html").read_text()
    assert "vegaEmbed" in page and "perfect_linkage" in page
    assert "linked: prevalence=" in (tmp_path / "stdout.txt").read_text()
@pytest.mark.slow
def test_model_tuning_notebook_trains_charts_sweeps_and_saves(tmp_path):
    out = run_notebook("model_tuning", tmp_path)
    # The notebook's labelled fake key: the sidecar pins its fingerprint, never the key itself.
    fake = KeyMaterial("notebook:fake-not-secret", b"test-key-not-secret-notebook-000")
    settings, meta = model_store.load(out / "model.json", key_fingerprint=fake.fingerprint)
    names = [c["output_column_name"] for c in settings["comparisons"]]
    assert "nhs_number" in names and "date_of_birth" in names
    assert all(level.get("m_probability") for c in settings["comparisons"] for level in c["comparison_levels"] if not level.get("is_null_level"))
    for chart in ("match_weights", "m_u_parameters"):
        page = (out / f"{chart}.html").read_text()
        assert "vegaEmbed" in page and "nhs_number" in page
    with open(out / "threshold_sweep.csv", newline="") as fh:
        sweep = list(csv.DictReader(fh))
    assert [float(r["threshold"]) for r in sweep] == [0.5, 0.8, 0.9, 0.95, 0.99]
    at_09 = next(r for r in sweep if float(r["threshold"]) == 0.9)
    assert float(at_09["pair_f1"]) >= 0.9 and float(at_09["pair_precision"]) >= 0.95
    # No key material in anything the notebook wrote.
    secret = b"test-key-not-secret-notebook-000"
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            blob = path.read_bytes()
            assert secret not in blob and secret.hex().encode() not in blob, path
