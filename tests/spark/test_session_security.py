"""Cluster security settings and private, removed checkpoint and scratch folders (issue 15:
Spark authentication and network encryption were off for clusters; the checkpoint folder was
world-readable and left behind)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from natlink import commands
from natlink.config import EnvironmentConfig, load, project_root
from natlink.errors import ConfigError, WeakKeyError
from natlink.spark import session
from natlink.spark.scratch import Scratch
from natlink.tokens import keys

ROOT = project_root()
CLUSTER_YAML = ROOT / "conf" / "environments" / "cluster.yaml"


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(urlparse(str(path)).path).st_mode)


def test_the_cluster_environment_authenticates_and_encrypts_with_a_referenced_secret(monkeypatch, tmp_path):
    env = load(CLUSTER_YAML, EnvironmentConfig)
    assert keys.is_reference(env.auth_secret)  # the YAML names the secret, never holds it
    ref = keys.create_key_file(tmp_path / "spark-auth.key")
    secret = (tmp_path / "spark-auth.key").read_text().strip()
    monkeypatch.setenv(env.auth_secret.split(":", 1)[1], secret)
    conf = commands.spark_conf_for(env)
    assert {k: conf[k] for k in session.CLUSTER_SECURITY} == {
        "spark.authenticate": "true", "spark.network.crypto.enabled": "true", "spark.io.encryption.enabled": "true",
    }
    assert conf["spark.authenticate.secret"] == secret and secret not in CLUSTER_YAML.read_text()
    assert commands.spark_conf_for(env.model_copy(update={"auth_secret": ref}))["spark.authenticate.secret"] == secret
    # A weak secret is refused like a weak key; a secret written into the YAML is refused outright.
    monkeypatch.setenv(env.auth_secret.split(":", 1)[1], b"spark-secret-spark-secret-000000".hex())
    with pytest.raises(WeakKeyError, match="it is text"):
        commands.spark_conf_for(env)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: c\nspark_conf:\n  spark.authenticate.secret: hunter2hunter2\n")
    with pytest.raises(ConfigError, match=r"spark.authenticate.secret.*look like secrets") as err:
        load(bad, EnvironmentConfig)
    assert "hunter2" not in str(err.value)


def test_scratch_folders_are_private_and_removed_on_release(spark):
    scratch = Scratch(spark)
    a = scratch.materialise(spark.range(10), "test")
    b = scratch.from_arrow(pa.table({"x": list(range(5))}), "test")
    assert a.count() == 10 and b.count() == 5
    paths = list(scratch.paths)
    assert len(paths) == 2 and all(_mode(p) == 0o700 for p in paths)
    assert _mode(session.ensure_checkpoint_dir(spark)) == 0o700  # and the checkpoint folder around them
    scratch.release()
    assert not [p for p in paths if os.path.exists(urlparse(p).path)]


def test_a_checkpoint_folder_set_on_a_running_session_is_private_and_released(spark, tmp_path):
    before = session.ensure_checkpoint_dir(spark)
    try:
        current = session.ensure_checkpoint_dir(spark, tmp_path / "new" / "checkpoints")
        assert _mode(tmp_path / "new" / "checkpoints") == 0o700 and _mode(current) == 0o700
        spark.sparkContext.parallelize(range(5)).checkpoint()
        session.release_checkpoint_dir(spark)
        assert not (tmp_path / "new" / "checkpoints").exists()
    finally:
        session.ensure_checkpoint_dir(spark, Path(urlparse(before).path).parent)


SCRIPT = """
import json, os, stat, sys
from urllib.parse import urlparse
from natlink.spark.session import ensure_checkpoint_dir, get_spark
from natlink.spark.scratch import Scratch
spark = get_spark("checkpoints", master="local[1]", conf={"spark.driver.memory": "1g"})
default = urlparse(ensure_checkpoint_dir(spark)).path          # natlink's private default
explicit = urlparse(ensure_checkpoint_dir(spark, sys.argv[1])).path
rdd = spark.sparkContext.parallelize(range(100))
rdd.checkpoint(); rdd.count()                                   # Spark writes into the checkpoint folder
Scratch(spark).materialise(spark.range(100), "left-behind")     # never released by this job
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
print(json.dumps({"default": default, "explicit": explicit, "modes": [mode(os.path.dirname(default)), mode(default),
                  mode(sys.argv[1]), mode(explicit)], "files": sum(len(f) for _, _, f in os.walk(explicit))}))
"""


def test_checkpoint_folders_are_private_and_gone_when_the_job_ends(tmp_path):
    target = tmp_path / "job" / "checkpoints"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(target)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["modes"] == [0o700] * 4 and seen["files"] > 0
    # The job has ended: its checkpoint folders (and the ones natlink created for them) are gone.
    assert not Path(seen["default"]).exists() and not Path(seen["default"]).parent.exists()
    assert not Path(seen["explicit"]).exists() and not target.exists()
