"""deploy/monthly_cycle.sh: tokenise -> link -> report, idempotent by run id (the delivery month).

* dry run (no Spark): the exact commands for a month's deliveries, and none run;
* for real on a small population, twice with the same run id: the second run changes nothing
  (every file under the data folder, and so every Delta table version, is as the first left it);
  then a dry run for the next month with no deliveries links the earlier tokens.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from natlink import config as cfgmod
from natlink.store import delta
from natlink.tokens import keys
from natlink.linkage import run as linkrun
from natlink.linkage.runs import completed_runs
from natlink.linkage import train
from natlink.synth import generate as synth
from natlink.config import DatasetConfig, ModelConfig, project_root
from natlink.commands import tokenise_delivery

ROOT = project_root()
SCRIPT = ROOT / "deploy" / "monthly_cycle.sh"
# Obviously fake key, for tests only; the script and its jobs get only its reference (env:NAME).
FAKE_KEY_HEX = b"test-key-not-secret-monthly-0000".hex()
KEY_ENV = "NATLINK_MONTHLY_TEST_KEY"
KEY_REF = f"env:{KEY_ENV}"
RUN_ID, NEXT = "2026-11", "2026-12"
PERSONS, SEED = 400, 47


def _cycle(data: Path, model_path: Path, *args: str, datasets: str = "gp hes") -> str:
    env = {
        **os.environ,
        "NATLINK_DATA": str(data),
        "NATLINK_MODEL": str(model_path),
        "NATLINK_KEY_REF": KEY_REF,
        KEY_ENV: FAKE_KEY_HEX,
        "NATLINK_DATASETS": datasets,
        "NATLINK_HOME": str(ROOT),
        "NATLINK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    env.pop("NATLINK_SUBMIT", None)
    env.pop("NATLINK_ENVIRONMENT", None)
    done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert FAKE_KEY_HEX not in done.stdout + done.stderr
    return done.stdout


def _snapshot(data: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(data)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(data.rglob("*")) if p.is_file()}


def _delta_versions(data: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    return {str(log.parent.relative_to(data)): DeltaTable(str(log.parent)).version() for log in sorted(data.rglob("_delta_log"))}


def test_dry_run_prints_the_exact_commands_and_runs_none(tmp_path):
    data = tmp_path / "natlink"
    for ds in ("gp", "hes"):
        (data / "deliveries" / RUN_ID / "raw" / ds).mkdir(parents=True)
    model_path = tmp_path / "model.json"
    before = _snapshot(data)
    out = _cycle(data, model_path, "--dry-run", RUN_ID)
    commands = [shlex.split(line[len("DRY-RUN: "):]) for line in out.splitlines() if line.startswith("DRY-RUN: ")]
    tokens = data / "tokens" / RUN_ID
    assert commands[:2] == [
        [sys.executable, "jobs/tokenise.py", "--dataset", f"conf/datasets/{ds}.yaml", "--key", KEY_REF,
         "--data-dir", str(data / "deliveries" / RUN_ID), "--out", str(tokens), "--model-config", "conf/model.yaml"]
        for ds in ("gp", "hes")
    ]
    assert commands[2] == [
        sys.executable, "jobs/link.py", "--manifest", str(tokens / "gp.manifest.json"), "--manifest", str(tokens / "hes.manifest.json"),
        "--model", str(model_path), "--link-config", "conf/link.yaml", "--tables", str(data / "tables"), "--run-id", RUN_ID,
    ]
    # The report command, when this natlink has the verb; else a clear skip message.
    assert len(commands) == 4 or (len(commands) == 3 and "no 'report' verb yet" in out)
    assert _snapshot(data) == before and not (data / "tokens").exists()


def test_a_raw_key_in_place_of_its_reference_is_refused_unseen(tmp_path):
    import secrets

    data = tmp_path / "natlink"
    (data / "deliveries" / RUN_ID / "raw" / "gp").mkdir(parents=True)
    raw = secrets.token_hex(32)  # a random stand-in for a key pasted where its reference belongs
    env = {**os.environ, "NATLINK_DATA": str(data), "NATLINK_MODEL": str(tmp_path / "m.json"), "NATLINK_KEY_REF": raw,
           "NATLINK_DATASETS": "gp", "NATLINK_HOME": str(ROOT), "NATLINK_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", RUN_ID], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 64 and "not a key reference" in done.stderr
    assert raw[:10] not in done.stdout + done.stderr and "DRY-RUN" not in done.stdout


def test_bad_run_id_is_refused(tmp_path):
    env = {**os.environ, "NATLINK_DATA": str(tmp_path), "NATLINK_MODEL": str(tmp_path / "m.json")}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "2026-13"], env=env, capture_output=True, text=True)
    assert done.returncode == 64 and "YYYY-MM" in done.stderr


@pytest.mark.slow
def test_second_run_with_the_same_run_id_changes_nothing(spark, tmp_path):
    os.environ[KEY_ENV] = FAKE_KEY_HEX
    key = keys.resolve(KEY_REF)
    data = tmp_path / "natlink"
    delivery = data / "deliveries" / RUN_ID
    synth.generate(spark, delivery, persons=PERSONS, seed=SEED, datasets=["gp", "hes"])
    # The model is trained beforehand (not monthly), on tokens of the same key and the same model
    # (conf/model.yaml: block-salted, as the cycle's tokenise makes them) made in-process.
    model_cfg = cfgmod.load(ROOT / "conf" / "model.yaml", ModelConfig)
    manifests = []
    for ds_name in ("gp", "hes"):
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{ds_name}.yaml", DatasetConfig)
        manifests.append(tokenise_delivery(spark, ds, key, data_dir=str(delivery), out=tmp_path / "training", model=model_cfg))
    model_path = train.train_job(spark, manifests=manifests, cfg=model_cfg, out_path=tmp_path / "model.json")

    first = _cycle(data, model_path, RUN_ID)
    tokens = data / "tokens" / RUN_ID
    assert "tokenise gp: new delivery" in first and "tokenise hes: new delivery" in first
    runs = completed_runs(spark, data / "tables")
    assert [r["run_id"] for r in runs] == [RUN_ID]
    rows = sum(delta.row_count(str(tokens / ds)) for ds in ("gp", "hes"))
    assert rows == sum(int(m["rows"]) for m in manifests)  # same delivery, same key: same token rows
    assert delta.row_count(str(data / "tables" / "clusters")) == rows
    assert (data / "reports" / f"{RUN_ID}.html").exists() or "no 'report' verb yet" in first
    files, versions = _snapshot(data), _delta_versions(data)
    assert {"tables/clusters", "tables/runs", f"tokens/{RUN_ID}/gp", f"tokens/{RUN_ID}/hes"} <= set(versions)

    second = _cycle(data, model_path, RUN_ID)
    assert "+ " not in "\n".join(line[:2] for line in second.splitlines())  # no command ran
    assert "tokenise gp: already done" in second and "tokenise hes: already done" in second
    assert f"link: run {RUN_ID} already completed" in second
    assert "report: already written" in second or "no 'report' verb yet" in second
    assert _delta_versions(data) == versions
    assert _snapshot(data) == files

    # Next month, no deliveries: link this month's tokens (dry run: the exact command, nothing run).
    upcoming = _cycle(data, model_path, "--dry-run", NEXT)
    link = [shlex.split(line[len("DRY-RUN: "):]) for line in upcoming.splitlines() if line.startswith("DRY-RUN: ") and "jobs/link.py" in line]
    assert link == [[
        sys.executable, "jobs/link.py", "--manifest", str(tokens / "gp.manifest.json"), "--manifest", str(tokens / "hes.manifest.json"),
        "--model", str(model_path), "--link-config", "conf/link.yaml", "--tables", str(data / "tables"), "--run-id", NEXT,
    ]]
    assert _snapshot(data) == files
