"""The key service restarted (killed) mid-tokenise: the provider's job retries and completes, or,
when the service stays down, fails with a named error having written nothing; rows in = rows
out + quarantined either way."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from natlink.commands import salted_encoding
from natlink.config import ModelConfig, load, project_root
from natlink.errors import KeyServiceUnavailableError
from natlink.keyservice.spark import ServiceInnerTokens, named_failures, service_encoding_key
from natlink.store import delta
from natlink.tokens import keys
from natlink.tokens.tokenise import tokenise_dataset

from ks_support import make_setup

ROOT = project_root()
MODEL_PATH = ROOT / "conf" / "model.yaml"  # the block-salted default
SCHEMA = ("dataset string, record_id string, region string, nhs_number string, given_name string, family_name string, "
          "date_of_birth date, sex string, postcode string")


def frame(spark, n: int = 300):
    rows = [("gp", f"r{i}", "R1", str(9990000000 + i), f"NAME{i % 97}", f"FAMILY{i % 131}", dt.date(1940, 1, 1) + dt.timedelta(days=37 * i),
             "MF"[i % 2], f"LS{i % 9} {i % 10}AB") for i in range(n)]
    rows += [("gp", "r0", "R1", None, "DUP", "DUP", None, None, None),  # a duplicate record id: both quarantined
             ("gp", "empty", "R1", None, None, None, None, None, None)]  # no usable identifier: quarantined
    return spark.createDataFrame(rows, SCHEMA)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config) -> subprocess.Popen:
    # Only the project's own source on the path, as tests/test_cli.py does: the test process's whole
    # sys.path (test folders, another interpreter's standard library) once broke the child's start-up.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "natlink.cli", "keyservice", "serve", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    if "listening" not in first:
        proc.kill()
        raise AssertionError(f"the key service did not start: {first}{proc.stderr.read()}")
    return proc


def run_tokenise(spark, setup, out, result):
    cfg = setup.client_config("gp")
    encoding = dataclasses.replace(salted_encoding(load(MODEL_PATH, ModelConfig)), inner_source=ServiceInnerTokens(cfg))
    key = service_encoding_key(keys.resolve(setup.encoding_key), cfg)
    try:
        with named_failures():
            result["manifest"] = tokenise_dataset(spark, frame(spark), key, dataset="gp", out_dir=out, encoding=encoding, run_id="r1")
    except Exception as error:  # noqa: BLE001 - the test inspects it
        result["error"] = error


def started_tokenise(spark, setup, out):
    """The service started, and a tokenise job calling it in a thread: (service process, job, result)."""
    proc = start(setup.service_config)
    result: dict = {}
    job = threading.Thread(target=run_tokenise, args=(spark, setup, out, result))
    job.start()
    return proc, job, result


def wait_for_requests(setup, count: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while len([r for r in setup.audit_lines() if r["outcome"] == "ok"]) < count:
        assert time.time() < deadline, "the tokenise job never reached the key service"
        time.sleep(0.05)


@pytest.mark.slow
def test_service_killed_and_restarted_mid_tokenise_the_job_completes(spark, tmp_path):
    port = free_port()
    setup = make_setup(tmp_path / "ks", port=port, batch_size=20)
    setup.url = f"http://127.0.0.1:{port}"
    # Retries for about 30 s: a restart is a new Python process that imports natlink and resolves its keys.
    text = setup.client_configs["gp"].read_text().replace("retries: 3", "retries: 12").replace("max_backoff_seconds: 0.2", "max_backoff_seconds: 3.0")
    setup.client_configs["gp"].write_text(text)
    proc, job, result = started_tokenise(spark, setup, tmp_path / "tokens")
    try:
        wait_for_requests(setup, 3)
        proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        proc.wait()
        killed_at = len(setup.audit_lines())
        time.sleep(1.0)
        proc = start(setup.service_config)
        job.join(timeout=900)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert "error" not in result, repr(result.get("error"))
    manifest = result["manifest"]
    # 302 rows in: 299 tokenised, 3 quarantined (both r0 rows as duplicates, the empty row).
    assert (manifest["rows_in"], manifest["rows"], manifest["quarantined"]["tokenise"]) == (302, 299, {"duplicate_record_id": 2, "no_usable_identifier": 1})
    tokens = delta.read(spark, str(tmp_path / "tokens" / "gp"))
    assert tokens.where(tokens[manifest.scheme.block_column(0)].isNull()).count() == 0  # every NHS number got its inner token
    assert len(setup.audit_lines()) > killed_at  # the restarted service answered the rest


def test_service_down_for_good_the_job_fails_by_name_and_writes_nothing(spark, tmp_path):
    port = free_port()
    setup = make_setup(tmp_path / "ks", port=port, batch_size=20)
    setup.url = f"http://127.0.0.1:{port}"
    proc, job, result = started_tokenise(spark, setup, tmp_path / "tokens")
    try:
        wait_for_requests(setup, 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    job.join(timeout=900)
    assert isinstance(result.get("error"), KeyServiceUnavailableError), repr(result)
    assert "in a Spark task" in str(result["error"])
    assert not delta.exists(tmp_path / "tokens" / "gp")  # no partial token table
    assert not (tmp_path / "tokens" / "gp.manifest.json").exists()
    assert not delta.exists(tmp_path / "tokens" / "quarantine")
