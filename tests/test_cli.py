"""The ``natlink`` command and the API never show a key given in place of a key reference, and
``natlink keys generate`` writes strong private key files and prints public facts only (issue 15)."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

import natlink
from natlink import commands
from natlink.config import project_root
from natlink.errors import KeyReferenceError
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
