"""Cluster packaging without a cluster: the --py-files zip, conf/environments/cluster.yaml, docs/cluster.md."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

from natlink import config as cfgmod
from natlink.config import EnvironmentConfig, project_root

ROOT = project_root()
PACKAGE = runpy.run_path(str(ROOT / "deploy" / "package.py"))
DELTA_KEYS = ("spark.sql.extensions", "spark.sql.catalog.spark_catalog")


def _pinned(name: str) -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(rf'"{re.escape(name)}==([^"]+)"', text).group(1)


def test_zip_holds_exactly_the_package_and_its_data_files_import_from_it(tmp_path):
    path = PACKAGE["build_zip"](ROOT, tmp_path, "0.0.test")
    src = ROOT / "src"
    expected = {str(p.relative_to(src)) for p in PACKAGE["_code_files"](ROOT)}
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert names == expected
    assert "natlink/data/postcode_areas.csv" in names and "natlink/data/__init__.py" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    # A clean interpreter (-I: no PYTHONPATH, no user site; -S: no site-packages, so not the
    # editable install) imports natlink from the zip and reads a data file through importlib.resources.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import natlink, natlink.columns; "
        "from importlib import resources; "
        "print(natlink.__file__); print(len(resources.files('natlink.data').joinpath('postcode_areas.csv').read_text().splitlines()))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(path)], capture_output=True, text=True, check=True, cwd=tmp_path)
    where, lines = out.stdout.split()
    assert where == f"{path}/natlink/__init__.py"
    assert int(lines) == len((src / "natlink" / "data" / "postcode_areas.csv").read_text(encoding="utf-8").splitlines())
    # Byte-identical for identical sources (fixed timestamps): rebuilds do not churn.
    (tmp_path / "again").mkdir()
    again = PACKAGE["build_zip"](ROOT, tmp_path / "again", "0.0.test")
    assert again.read_bytes() == path.read_bytes()


def test_env_archive_leaves_out_natlink_and_the_clusters_pyspark():
    deps = {PACKAGE["_req_name"](d) for d in PACKAGE["_project"](ROOT)["dependencies"]}
    assert "pyspark" in deps and PACKAGE["NOT_IN_ENV"] == {"pyspark"}
    assert "natlink" not in deps


def test_cluster_environment_loads_and_pins_the_delta_spark_of_pyproject():
    env = cfgmod.load(ROOT / "conf" / "environments" / "cluster.yaml", EnvironmentConfig)
    assert env.name == "cluster" and env.master is None
    assert env.spark_conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert env.spark_conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    delta_version = _pinned("delta-spark")
    assert delta_version == version("delta-spark") == "4.0.1"
    spark_major_minor = tuple(int(x) for x in version("pyspark").split(".")[:2])
    # Artefact naming (delta python/delta/pip_utils.py): up to 4.0.x delta-spark_2.13, from 4.1 delta-spark_<spark>_2.13.
    suffix = "2.13" if tuple(int(x) for x in delta_version.split(".")[:2]) < (4, 1) else f"{spark_major_minor[0]}.{spark_major_minor[1]}_2.13"
    assert env.spark_conf["spark.jars.packages"] == f"io.delta:delta-spark_{suffix}:{delta_version}"
    assert spark_major_minor == (4, 0)  # delta-spark 4.0.x is built for Spark 4.0


def test_local_environment_still_loads():
    env = cfgmod.load(ROOT / "conf" / "environments" / "local.yaml", EnvironmentConfig)
    assert env.name == "local"


def _bash_commands(docs: str) -> list[str]:
    """Each ``spark-submit`` command (with its continuation lines) in the ```bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", docs, flags=re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("spark-submit"):
                cmd = []
                for part in lines[i:]:
                    cmd.append(part.rstrip("\\").strip())
                    if not part.endswith("\\"):
                        break
                commands.append(" ".join(cmd))
    return commands


def test_cluster_docs_use_the_pinned_artefacts_and_confs():
    import json

    from splink.backends.spark import similarity_jar_location

    docs = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    env = cfgmod.load(ROOT / "conf" / "environments" / "cluster.yaml", EnvironmentConfig)
    packages = env.spark_conf["spark.jars.packages"]
    zip_name = f"natlink-{PACKAGE['_project'](ROOT)['version']}.zip"
    jar_name = Path(similarity_jar_location()).name
    for section in ("YARN", "Kubernetes", "EMR", "Databricks", "standalone"):
        assert re.search(rf"^## .*{section}", docs, flags=re.M | re.I), section
    commands = _bash_commands(docs)
    assert len(commands) == 4  # YARN, Kubernetes, EMR, standalone (Databricks: a job JSON)
    for command in commands:
        assert f"--packages {packages}" in command, command[:80]
        for key in DELTA_KEYS:
            assert f"--conf {key}={env.spark_conf[key]}" in command, (key, command[:80])
        assert re.search(rf"--py-files \S*{re.escape(zip_name)}", command)
        assert re.search(r"--archives \S*natlink-env\.tar\.gz#environment", command)
        assert re.search(rf"--jars \S*{re.escape(jar_name)}", command)
        assert "PYSPARK_PYTHON=./environment/bin/python" in command
        assert "jobs/link.py" in command and "--run-id 2026-11" in command
    task = json.loads(re.search(r"```json\n(.*?)```", docs, flags=re.S).group(1))
    libraries = [next(iter(lib.values())) for lib in task["libraries"]]
    assert [Path(p).name for p in libraries] == [f"natlink-{PACKAGE['_project'](ROOT)['version']}-py3-none-any.whl", jar_name]
    assert task["spark_python_task"]["python_file"].endswith("jobs/link.py")
