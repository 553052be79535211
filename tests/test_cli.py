"""The ``natlink`` command and the API never show a key given in place of a key reference, and
``natlink keys generate`` writes strong private key files and prints public facts only (issue 15)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

import natlink
from natlink import commands
from natlink.config import project_root
from natlink.config.base import resolve
from natlink.errors import ConfigError, KeyReferenceError
from natlink.tokens import keys, signing

ROOT = project_root()
# A key reference that resolves (obviously fake, labelled, tests only): where the key is good, a raw
# key given to another option (the signing key) must be refused all the same.
FAKE_KEY_ENV = "NATLINK_TEST_CLI_KEY"
os.environ[FAKE_KEY_ENV] = b"test-key-not-secret-cli-00000000".hex()


def _natlink(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "1000"}
    return subprocess.run([sys.executable, "-m", "natlink.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _assert_never_shown(canary: str, text: str) -> None:
    body = canary.split(":", 1)[-1]
    assert body not in text
    assert not [body[i:i + 10] for i in range(len(body) - 9) if body[i:i + 10] in text], "part of the key was shown"


@pytest.fixture(params=["hex", "base64"])
def canary(request) -> str:
    raw = secrets.token_bytes(32)  # fresh random bytes: a stand-in for a real key pasted by mistake
    return raw.hex() if request.param == "hex" else "base64:" + __import__("base64").b64encode(raw).decode()


def test_tokenise_refuses_a_raw_key_on_the_command_line_without_echoing_it(canary, tmp_path):
    runs = [
        _natlink("tokenise", "--dataset", "conf/datasets/gp.yaml", "--key", canary, "--out", str(tmp_path / "out"), "-v"),
        _natlink("tokenise", "--dataset", "conf/datasets/gp.yaml", "--key", f"env:{FAKE_KEY_ENV}", "--signing-key", canary,
                 "--out", str(tmp_path / "alpha"), "-v"),
    ]
    for done in runs:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "not a key reference" in done.stderr and "not shown" in done.stderr
        assert "Traceback" not in done.stderr
        _assert_never_shown(canary, done.stdout + done.stderr)
    assert not (tmp_path / "out").exists() and not (tmp_path / "alpha").exists()  # refused before any work


def test_there_is_no_rekey_verb_projects_get_extracts():
    # Research projects receive `natlink extract` (random per-project ids), never re-keyed tokens.
    done = _natlink("rekey", "--help")
    assert done.returncode == 2 and "No such command" in done.stderr
    assert not hasattr(commands, "rekey") and hasattr(commands, "extract")


def test_the_api_refuses_a_raw_key_without_echoing_it(canary, tmp_path, caplog):
    calls = [
        lambda: natlink.tokenise("conf/datasets/gp.yaml", canary, tmp_path / "out"),
        lambda: commands.tokenise("conf/datasets/gp.yaml", f"env:{FAKE_KEY_ENV}", tmp_path / "alpha", signing_key=canary),
    ]
    for call in calls:
        with caplog.at_level(logging.DEBUG), pytest.raises(KeyReferenceError) as err:
            call()
        shown = "\n".join([str(err.value), repr(err.value), *traceback.format_exception(err.value), caplog.text])
        _assert_never_shown(canary, shown)


def test_keys_generate_writes_a_private_strong_key_and_prints_only_its_fingerprint(tmp_path):
    path = tmp_path / "keys" / "provider.key"
    done = _natlink("keys", "generate", "--out", str(path))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert len(bytes.fromhex(secret)) == 32
    key = keys.resolve(f"file:{path}")  # passes the strength check
    assert done.stdout.split() == [f"reference=file:{path}", f"fingerprint={key.fingerprint}"]
    assert secret not in done.stdout + done.stderr
    again = _natlink("keys", "generate", "--out", str(path))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert path.read_text().strip() == secret


def test_keys_generate_signing_prints_the_public_key_only(tmp_path):
    path = tmp_path / "signing.key"
    done = _natlink("keys", "generate", "--kind", "signing", "--out", str(path))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signer = signing.load_signer(f"file:{path}")
    assert done.stdout.split() == [f"reference=file:{path}", f"key_id={signer.key_id}", f"public_key={signer.public_key}"]
    assert Path(f"{path}.pub").read_text().strip() == signer.public_key
    assert path.read_text().strip() not in done.stdout + done.stderr
    bad = _natlink("keys", "generate", "--kind", "password", "--out", str(tmp_path / "x.key"))
    assert bad.returncode == 2 and "not 'token' or 'signing'" in bad.stderr and not (tmp_path / "x.key").exists()


# --- issue 16: the command as a new user meets it ---------------------------------------------

# A log4j line from Spark (e.g. "26/12/02 02:49:45 WARN SparkEnv: ..."), or its start-up banner.
SPARK_NOISE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|INFO) |Using Spark's default log4j profile|Setting default log level", re.M)


def test_default_paths_resolve_against_the_project_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("conf/model.yaml") == ROOT / "conf" / "model.yaml"
    assert resolve("mine.yaml") == Path("mine.yaml")  # absent everywhere: named as given
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "link.yaml").write_text("{}")
    assert resolve("conf/link.yaml") == Path("conf/link.yaml")  # the user's own file wins
    # `natlink train` from another folder finds conf/model.yaml; it stops (before Spark) at the
    # manifest that is not there, naming it.
    done = _natlink("train", "--manifest", "nowhere.manifest.json", "--out", "m.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "train: manifest file(s) not found: ['nowhere.manifest.json']" in done.stderr
    assert "model.yaml" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--token-column", "tk_nhs_number"], "--token-column and --token go together"),
    (["--token-column", "tk_nhs_number", "--token", "t", "--probe", "p.json", "--model", "m.json"], "give either --token-column and --token, or --probe"),
    ([], "give either --token-column and --token, or --probe"),
    (["--probe", "p.json"], "--probe needs --model"),
    (["--probe", "p.json", "--model", "m.json", "--tables", "/nonexistent-tables"], "no tables folder /nonexistent-tables"),
    (["--probe", "p.json", "--model", "m.json"], "manifest file(s) not found: ['x.manifest.json']"),
])
def test_discover_checks_its_arguments_before_starting_spark(tmp_path, args, message):
    if "--tables" not in args:
        args = [*args, "--tables", str(tmp_path)]
    started = time.perf_counter()
    done = _natlink("discover", "-m", "x.manifest.json", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    # No JVM was started: none of its start-up lines, and far quicker than a Spark start.
    assert "incubator" not in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - started < 20


def test_discover_refuses_a_probe_file_that_is_not_one(tmp_path):
    from natlink.outputs.discover import read_probe_file

    (tmp_path / "p.json").write_text('{"given_name": "plaintext?"}')
    with pytest.raises(ConfigError, match="neither a JSON object of token columns"):
        read_probe_file(tmp_path / "p.json")
    (tmp_path / "p.json").write_text('{"tk_nhs_number": "opaque-token", "tk_dob": null}')
    assert read_probe_file(tmp_path / "p.json") == {"tk_nhs_number": "opaque-token", "tk_dob": None}
    help_text = _natlink("discover", "--help").stdout
    assert "How a probe is made" in help_text and "natlink tokenise" in help_text


@pytest.mark.slow
def test_profile_prints_its_whole_table_and_spark_stays_quiet_unless_verbose(spark, tmp_path):
    from natlink.synth import generate

    generate.generate(spark, tmp_path / "data", persons=40, seed=3, datasets=["gp"])
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NATLINK_SPARK_LOG_LEVEL")}
    env["PYTHONPATH"] = str(ROOT / "src")
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "natlink.cli", "profile", "conf/datasets/gp.yaml", "--data-dir", str(tmp_path / "data"), *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    quiet = run()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    # stdout is a pipe: the identifier table is whole, one line per row, not wrapped at 80 columns.
    header = next(line for line in quiet.stdout.splitlines() if "invalid by reason" in line)
    assert all(col in header for col in ("column", "source", "present", "complete", "missing", "invalid"))
    assert len(header) > 80
    assert any(line.count("\u2502") >= 8 and "nhs_number" in line for line in quiet.stdout.splitlines())
    # No Spark log lines and no "keys will be visible on the wire" (RPC is encrypted too).
    assert not SPARK_NOISE.search(quiet.stderr), quiet.stderr[-3000:]
    assert "visible on the wire" not in quiet.stderr
    loud = run("--verbose")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "SparkSession: local mode" in loud.stderr and "visible on the wire" not in loud.stderr
