"""The README's "Link your own data" runs as written: two CSV files (made by the synthetic generator,
so the truth is known) copied to a folder of their own, then the section's commands, in order, in
one shell, from that folder, with `natlink` on PATH as `source .venv/bin/activate` puts it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from natlink import columns as C
from natlink.config import project_root
from natlink.outputs import evaluate

ROOT = project_root()
pytestmark = pytest.mark.timeout(2400)


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Link your own data", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_section_starts_with_activating_natlink_and_copying_two_csvs():
    first = readme_blocks()[0]
    assert "source /path/to/natlink/.venv/bin/activate" in first
    assert re.findall(r"^cp \S+ (\S+\.csv)$", first, re.M) == ["gp.csv", "hes.csv"]


@pytest.mark.slow
def test_readme_link_your_own_data_runs_as_written(spark, tmp_path):
    from natlink.synth import generate

    # Two CSV files with a known truth, as a user would bring them (the README's first block:
    # activate, make a folder, copy the two files there).
    made = generate.generate(spark, tmp_path / "example", persons=1500, seed=16, datasets=["gp", "hes"])
    work = tmp_path / "mylink"
    work.mkdir()
    for name in ("gp", "hes"):
        (part,) = sorted((tmp_path / "example" / "raw" / name).glob("*.csv"))
        shutil.copy(part, work / f"{name}.csv")

    script = "\n".join(readme_blocks()[1:])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATLINK_", "COLUMNS"))}
    # `source .venv/bin/activate`: this interpreter's bin on PATH; this checkout's code first.
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT / "src"),
               SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=2300)
    assert done.returncode == 0, done.stderr[-4000:]

    assert (work / "tables" / "clusters" / "_delta_log").is_dir()
    page = (work / "report.html").read_text(encoding="utf-8")
    assert "<html" in page and "run-1" in page
    clusters = pd.read_csv(work / "clusters.csv", dtype=str)
    assert set(clusters.columns) == {C.DATASET, C.RECORD_ID, C.PERSON_ID}
    raw_rows = sum(len(pd.read_csv(work / f"{n}.csv", dtype=str)) for n in ("gp", "hes"))
    assert 0.95 * raw_rows <= len(clusters) <= raw_rows  # every usable record is in a cluster
    # Accuracy against the generator's truth.
    f1 = evaluate.pairwise(spark.createDataFrame(clusters), spark.read.parquet(str(made.truth))).f1
    assert f1 >= 0.97, f1
    # Spark's own log lines stay off the console (no --verbose in the section).
    assert not re.search(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|INFO) ", done.stderr, re.M), done.stderr[-3000:]
