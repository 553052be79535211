"""The link job on a real Spark standalone cluster (a master and two workers, each its own JVM),
submitted with ``spark-submit`` from the packaged artefacts only (``make package``), gives exactly
the clusters of the same run in local mode.

* Only ``dist/``: the driver runs the Python of the venv-pack archive (extracted once under
  ``build/``), executors run ``./environment/bin/python`` from ``--archives``, natlink comes from
  the ``--py-files`` zip. Neither sees the editable install: ``probe_env.py`` reports where each
  imports natlink from, and the archive holds no natlink at all.
* Loopback only: master, workers, driver and executors bind 127.0.0.1; web UIs bind 127.0.0.1
  (``SPARK_LOCAL_IP``) on ports chosen at runtime, the application UI is off.
* Every process started here is stopped by its id in the fixture's teardown, failure or not.
* Secured as ``conf/environments/cluster.yaml`` says: the master, the workers and the application
  get the settings it resolves to (``natlink.commands.spark_conf_for``: ``spark.authenticate`` with
  a generated secret read through a key reference, ``spark.network.crypto.enabled``,
  ``spark.io.encryption.enabled``) in one 0600 properties file, never on a command line.
* The link job verifies the token tables' signed manifests against the suite's trusted signers.

Skip with ``pytest --skip-cluster`` or ``NATLINK_SKIP_CLUSTER=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from natlink import columns as C
from natlink import config as cfgmod
from natlink.store import delta
from natlink.tokens import keys
from natlink.linkage import run as linkrun
from natlink.linkage import train
from natlink.synth import generate as synth
from natlink.synth import tables as synth_tables
from natlink.config import DatasetConfig, LinkConfig, ModelConfig, project_root
from natlink.commands import spark_conf_for, tokenise_delivery
from natlink.config import EnvironmentConfig
from natlink.spark.session import CLUSTER_SECURITY, DELTA_CONF
from natlink.tokens import signing

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

ROOT = project_root()
# Obviously fake key, for tests only; the cluster never sees it (link reads tokens only).
FAKE_KEY_HEX = b"test-key-not-secret-cluster-0000".hex()
PERSONS, SEED = 1500, 31
RUN_ID = "2026-11"
SUBMIT_TIMEOUT = 600
LOOPBACK = "127.0.0.1"
TABLES = ("clusters", "edges", "person_index", "id_events", "runs")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _clean_env(tmp: Path) -> dict[str, str]:
    """The environment of every process started here: no trace of this venv or its editable install."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "PYTHON", "VIRTUAL_ENV", "SPARK_", "NATLINK_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.update({
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_LOCAL_DIRS": str(tmp / "local"),
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_HOME": str(_spark_home()),
    })
    return env


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group this test created for ``proc`` (its JVM and any children), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # executors and Python workers left in the group
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=grace)


def _security_properties(tmp: Path) -> Path:
    """conf/environments/cluster.yaml resolved (its secret from a fresh key file) as a 0600
    properties file, for the master, the workers and spark-submit alike."""
    secret_ref = keys.create_key_file(tmp / "spark-auth.key")
    env = cfgmod.load(ROOT / "conf" / "environments" / "cluster.yaml", EnvironmentConfig).model_copy(update={"auth_secret": secret_ref})
    conf = spark_conf_for(env)
    assert {k: conf[k] for k in CLUSTER_SECURITY} == dict.fromkeys(CLUSTER_SECURITY, "true") and conf["spark.authenticate.secret"]
    path = tmp / "spark-security.properties"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(f"{k} {v}\n" for k, v in sorted(conf.items()))
    return path


class StandaloneCluster:
    """A master and two one-core workers on loopback; ``stop()`` ends every process by pid."""

    def __init__(self, tmp: Path, workers: int = 2) -> None:
        self.tmp = tmp
        self.properties = _security_properties(tmp)
        self.env = _clean_env(tmp)
        self.port, self.webui = _free_port(), _free_port()
        self.url = f"spark://{LOOPBACK}:{self.port}"
        self.n_workers = workers
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def _start(self, name: str, *args: str) -> None:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [str(_spark_home() / "bin" / "spark-class"), *args],
                env=self.env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() reaches executors too
            )
        self.procs.append((name, proc, log))

    def start(self) -> "StandaloneCluster":
        """Launch the master and the workers; :meth:`wait_ready` waits for their registration."""
        (self.tmp / "local").mkdir(parents=True, exist_ok=True)
        self._start("master", "org.apache.spark.deploy.master.Master", "--properties-file", str(self.properties),
                    "--host", LOOPBACK, "--port", str(self.port), "--webui-port", str(self.webui))
        for i in range(self.n_workers):
            work = self.tmp / f"worker{i}"
            work.mkdir()
            self._start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", self.url, "--properties-file", str(self.properties),
                        "--host", LOOPBACK, "--port", str(_free_port()), "--webui-port", str(_free_port()),
                        "--cores", "1", "--memory", "1g", "--work-dir", str(work))
        return self

    def wait_ready(self, timeout: float = 90.0) -> "StandaloneCluster":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc, log in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.tail(log)}")
            if self.alive_workers() == self.n_workers:
                return self
            time.sleep(1.0)
        raise TimeoutError(f"{self.n_workers} workers did not register in {timeout}s:\n" + "\n".join(self.tail(l) for _, _, l in self.procs))

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.webui}/json/", timeout=2) as resp:
                state = json.load(resp)
        except OSError:
            return 0
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    @staticmethod
    def tail(log: Path, n: int = 40) -> str:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return f"--- {log.name}\n" + "\n".join(lines[-n:])

    def stop(self) -> None:
        # Workers first (they end their executors), then the master; each by its own pid.
        for _name, proc, _log in reversed(self.procs):
            _stop(proc)


def _driver_python(env_archive: Path) -> Path:
    """The driver's Python: the packed environment, extracted once per archive under build/."""
    digest = hashlib.sha256(f"{env_archive.stat().st_size}:{env_archive.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    target = ROOT / "build" / f"driver-env-{digest}"
    python = target / "bin" / "python"
    if not python.exists():
        import shutil

        for old in target.parent.glob("driver-env-*"):  # extractions of earlier archives
            shutil.rmtree(old)
        partial = target.with_name(target.name + ".partial")
        partial.mkdir(parents=True)
        subprocess.run(["tar", "-xzf", str(env_archive), "-C", str(partial)], check=True)
        partial.rename(target)
    return python


def _submit(cluster: StandaloneCluster, artefacts: dict[str, Path], script: Path, args: list[str], name: str):
    """Start ``spark-submit`` in client mode with only the packaged artefacts; returns a function
    that waits for it and returns the job's stdout (the Python driver's stderr is merged into it)."""
    driver_python = _driver_python(artefacts["env"])
    confs = {
        "spark.pyspark.python": "./environment/bin/python",
        "spark.executorEnv.PYSPARK_PYTHON": "./environment/bin/python",
        "spark.pyspark.driver.python": str(driver_python),
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.driver.memory": "1g",
        "spark.executor.memory": "1g",
        "spark.executor.cores": "1",
        "spark.cores.max": "2",
        # Start only when both executors are up, so both take part.
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "2",
        "spark.local.dir": str(cluster.tmp / "local"),
    }
    cmd = [
        str(_spark_home() / "bin" / "spark-submit"),
        "--master", cluster.url,
        "--deploy-mode", "client",
        "--properties-file", str(cluster.properties),  # authentication, network and I/O encryption
        "--py-files", str(artefacts["zip"]),
        "--archives", f"{artefacts['env']}#environment",
        # As docs/cluster.md: Splink's jar, natlink's JVM functions (the zip also carries them as
        # package data) and the Delta jars of dist/delta ($DELTA_JARS there), with Delta's two confs.
        "--jars", ",".join([*(str(artefacts[kind]) for kind in ("jar", "jvm")), *map(str, sorted(artefacts["delta"].glob("*.jar")))]),
        "--conf", f"spark.sql.extensions={DELTA_CONF['spark.sql.extensions']}",
        "--conf", f"spark.sql.catalog.spark_catalog={DELTA_CONF['spark.sql.catalog.spark_catalog']}",
    ]
    for key, value in confs.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(script), *args]
    out, err = cluster.tmp / f"{name}.out", cluster.tmp / f"{name}.err"
    # The link job reads signed manifests: it trusts the suite's signers (tests/conftest.py).
    env = {**cluster.env, signing.TRUSTED_SIGNERS_ENV: os.environ[signing.TRUSTED_SIGNERS_ENV]}
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, env=env, cwd=cluster.tmp, stdout=fo, stderr=fe,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    cluster.procs.append((name, proc, err))  # stopped with the cluster if the test fails first

    def wait() -> str:
        try:
            code = proc.wait(timeout=SUBMIT_TIMEOUT)
        finally:
            _stop(proc)
        if code != 0:
            raise AssertionError(f"spark-submit {script.name} exited {code}\n" + StandaloneCluster.tail(out, 60) + StandaloneCluster.tail(err, 40))
        return out.read_text()

    return wait


@pytest.fixture(scope="module")
def artefacts():
    """dist/ as ``make package`` builds it; only what is stale is rebuilt."""
    builder = runpy.run_path(str(ROOT / "deploy" / "package.py"))
    return builder["package"](ROOT)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, artefacts):
    # Launched before the inputs are made; the test waits for the workers when it needs them.
    started = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture(scope="module")
def inputs(spark, tmp_path_factory):
    """Token tables (gp, hes) of a small synthetic population and a model trained on them, made locally."""
    os.environ["NATLINK_CLUSTER_TEST_KEY"] = FAKE_KEY_HEX
    key = keys.resolve("env:NATLINK_CLUSTER_TEST_KEY")
    base = tmp_path_factory.mktemp("cluster-inputs")
    synth.generate(spark, base, persons=PERSONS, seed=SEED, datasets=["gp", "hes"])
    manifests = []
    for name in ("gp", "hes"):
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        manifests.append(tokenise_delivery(spark, ds, key, data_dir=str(base), out=base))
    model_cfg = cfgmod.load(ROOT / "conf" / "model_deterministic.yaml", ModelConfig)
    model_path = train.train_job(spark, manifests=manifests, cfg=model_cfg, out_path=base / "model.json")
    return {"base": base, "manifests": [Path(m.path) for m in manifests], "model": model_path}


def test_link_on_standalone_cluster_equals_local(spark, artefacts, cluster, inputs):
    base = inputs["base"]
    # The Spark engine: at this size auto would score on the driver, and the point here is the executors.
    link_yaml = base / "link_spark.yaml"
    text = (ROOT / "conf" / "link.yaml").read_text()
    assert "\nengine: auto\n" in text
    link_yaml.write_text(text.replace("\nengine: auto\n", "\nengine: spark\n"))
    t = time.perf_counter()
    cluster.wait_ready()
    # One application: the probe (what the code runs on), then jobs/link.py as __main__.
    wait = _submit(cluster, artefacts, ROOT / "tests" / "cluster" / "probe_env.py", [
        str(ROOT / "jobs" / "link.py"),
        *[a for m in inputs["manifests"] for a in ("--manifest", str(m))],
        "--model", str(inputs["model"]), "--link-config", str(link_yaml),
        "--tables", str(base / "on_cluster"), "--run-id", RUN_ID,
    ], "link")
    # The same run locally while the cluster application starts up and runs.
    t_local = time.perf_counter()
    local = linkrun.run(spark, manifests=inputs["manifests"], model_path=inputs["model"],
                        link_cfg=cfgmod.load(link_yaml, LinkConfig), tables=base / "local", run_id=RUN_ID)
    local_seconds = time.perf_counter() - t_local
    out = wait()
    cluster_seconds = time.perf_counter() - t

    # 1. What the submitted code ran on: natlink from the zip, Python from the packed env.
    probe = json.loads(next(l for l in out.splitlines() if l.startswith("PROBE "))[len("PROBE "):])
    zip_name = artefacts["zip"].name
    assert probe["master"] == cluster.url
    assert probe["registered_executors"] == 2
    assert (probe["delta_backend"], probe["delta_version"]) == ("delta-spark", version("delta-spark"))  # from --jars
    assert len({e["cwd"] for e in probe["executors"]}) == 2, "both workers' executors ran tasks"
    postcode_rows = len(synth_tables.read_data_csv("postcode_areas.csv"))
    for where in [probe["driver"], *probe["executors"]]:
        assert f"{zip_name}/natlink/__init__.py" in where["natlink"], where
        # Only the Spark installation (SPARK_HOME: pyspark.zip, py4j) may come from the local venv.
        assert not [v for k, v in where.items() if k != "pyspark" and "/.venv/" in str(v)], where
        assert where["postcode_rows"] == postcode_rows  # a data file read from inside the zip
    for e in probe["executors"]:
        assert e["prefix"] == str(Path(e["cwd"]) / "environment"), e
        assert e["pyarrow"].startswith(e["prefix"]), e
        assert e["pyspark"].endswith("pyspark.zip/pyspark/__init__.py"), e  # the cluster's Spark
    with tarfile.open(artefacts["env"]) as tar:
        assert not [n for n in tar.getnames() if "site-packages/natlink" in n], "natlink travels in the zip only"

    # 1b. Secured: the daemons authenticate every connection, and nothing warned that the I/O
    # encryption keys travel in clear (what Spark says when network encryption is off).
    for name in ("master", "worker0", "worker1"):
        assert "authentication enabled" in (cluster.tmp / f"{name}.log").read_text(errors="replace"), name
    assert "visible on the wire" not in (cluster.tmp / "link.err").read_text(errors="replace") + out
    secret = (cluster.tmp / "spark-auth.key").read_text().strip()
    logs = [(cluster.tmp / f).read_text(errors="replace") for f in ("link.err", "master.log", "worker0.log", "worker1.log")]
    assert not [log for log in [*logs, out] if secret in log]  # Spark redacts it wherever it lists properties

    # 2. The link job's output equals the local run's.
    on_cluster = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    assert on_cluster["status"] == local.status == "completed"
    assert on_cluster["mode"] == local.mode == "full"
    assert on_cluster["counts"] == json.loads(json.dumps(local.counts, default=int))
    assert on_cluster["counts"]["records"] > 1.5 * PERSONS  # gp + hes
    for table in TABLES:
        assert delta.row_count(str(base / "on_cluster" / table)) == delta.row_count(str(base / "local" / table)), table

    def read(where: str, table: str, cols: list[str]):
        return delta.read(spark, str(base / where / table)).select(*cols)

    # record -> person id mapping, exactly.
    cols = [C.DATASET, C.RECORD_ID, C.REGION, C.PERSON_ID, C.RUN_ID]
    assertDataFrameEqual(read("on_cluster", "clusters", cols), read("local", "clusters", cols))
    cols = ["unique_id_l", "unique_id_r", "match_weight", "match_probability", "match_key"]
    assertDataFrameEqual(read("on_cluster", "edges", cols), read("local", "edges", cols))
    cols = [C.PERSON_ID, C.DATASET, "record_count"]
    assertDataFrameEqual(read("on_cluster", "person_index", cols), read("local", "person_index", cols))
    persons = read("local", "clusters", [C.PERSON_ID]).agg(F.countDistinct(C.PERSON_ID)).first()[0]
    assert persons == local.counts["persons"] and PERSONS * 0.8 < persons < PERSONS * 1.2
    print(f"\ncluster test: link local {local_seconds:.0f}s; cluster application (probe + link, overlapping the "
          f"local run) {cluster_seconds:.0f}s; {local.counts['records']} records, {persons} persons")
