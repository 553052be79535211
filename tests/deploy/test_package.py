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


def test_delta_pins_agree_pom_constraints_installed_and_fetched_jars():
    import xml.etree.ElementTree as ET

    env = cfgmod.load(ROOT / "conf" / "environments" / "cluster.yaml", EnvironmentConfig)
    assert env.name == "cluster" and env.master is None
    assert env.spark_conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert env.spark_conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert "spark.jars.packages" not in env.spark_conf  # the jars travel with --jars (docs/cluster.md)
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    delta_version, spark_version = (re.search(rf"^{n}==(\S+)$", constraints, flags=re.M).group(1) for n in ("delta-spark", "pyspark"))
    assert _pinned("delta-spark") == delta_version  # pyproject pins delta-spark exactly; pyspark is a range
    assert (delta_version, spark_version) == (version("delta-spark"), version("pyspark")) == ("4.4.0", "4.1.4")
    spark_binary = ".".join(spark_version.split(".")[:2])
    # jvm/delta/pom.xml's defaults name the same artefact deploy/fetch_jars.py asks mvn for.
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(ROOT / "jvm" / "delta" / "pom.xml").getroot().find("m:properties", ns)
    assert props.find("m:delta.version", ns).text == delta_version
    assert props.find("m:spark.binary.version", ns).text == spark_binary
    fetched = sorted(p.name for p in (ROOT / "jars" / "delta").glob("*.jar"))
    assert f"delta-spark_{spark_binary}_2.13-{delta_version}.jar" in fetched
    assert f"delta-storage-{delta_version}.jar" in fetched
    ignored = subprocess.run(["git", "check-ignore", "-q", "jars/delta/x.jar"], cwd=ROOT)
    assert ignored.returncode == 0, "fetched jars stay out of git"


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
    zip_name = f"natlink-{PACKAGE['_project'](ROOT)['version']}.zip"
    jar_name = Path(similarity_jar_location()).name
    for section in ("YARN", "Kubernetes", "EMR", "Databricks", "standalone"):
        assert re.search(rf"^## .*{section}", docs, flags=re.M | re.I), section
    commands = _bash_commands(docs)
    assert len(commands) == 4  # YARN, Kubernetes, EMR, standalone (Databricks: a job JSON)
    for command in commands:
        assert "--packages" not in command, command[:80]
        for key in DELTA_KEYS:
            assert f"--conf {key}={env.spark_conf[key]}" in command, (key, command[:80])
        assert re.search(rf"--py-files \S*{re.escape(zip_name)}", command)
        assert re.search(r"--archives \S*natlink-env\.tar\.gz#environment", command)
        assert re.search(rf"--jars \S*{re.escape(jar_name)},\S*natlink-jvm\.jar,\$DELTA_JARS ", command)
        assert "PYSPARK_PYTHON=./environment/bin/python" in command
        assert "jobs/link.py" in command and "--run-id 2026-11" in command
    task = json.loads(re.search(r"```json\n(.*?)```", docs, flags=re.S).group(1))
    libraries = [next(iter(lib.values())) for lib in task["libraries"]]
    assert [Path(p).name for p in libraries] == [
        f"natlink-{PACKAGE['_project'](ROOT)['version']}-py3-none-any.whl", jar_name, "natlink-jvm.jar"
    ]
    assert task["spark_python_task"]["python_file"].endswith("jobs/link.py")
    assert "DELTA_JARS=$(ls dist/delta/*.jar | paste -sd, -)" in docs
    assert "io.delta:delta-spark_4.1_2.13:4.4.0" in docs and "4.0.1" not in docs


BUILD_JVM = runpy.run_path(str(ROOT / "deploy" / "build_jvm.py"))


def test_jvm_jar_is_reproducible_git_ignored_and_package_data(tmp_path):
    import shutil

    if BUILD_JVM["javac"]() is None:
        import pytest

        pytest.skip("no JDK (javac): natlink falls back to the native HMAC composition")
    first = BUILD_JVM["build"](tmp_path / "a" / "natlink-jvm.jar")
    again = BUILD_JVM["build"](tmp_path / "b" / "natlink-jvm.jar")
    assert first.read_bytes() == again.read_bytes()  # fixed timestamps: rebuilds do not churn
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
    assert {"META-INF/MANIFEST.MF", "natlink/HmacSha256.class", "natlink/HmacSha256Hex.class"} <= names
    jar = ROOT / "src" / "natlink" / "data" / "natlink-jvm.jar"
    assert BUILD_JVM["JAR"] == jar
    ignored = subprocess.run(["git", "check-ignore", "-q", str(jar)], cwd=ROOT)
    assert ignored.returncode == 0, "the built jar must stay out of git"
    assert '"data/*.jar"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # in the wheel
    # package.py keeps natlink's jar next to Splink's in dist/ (both go to --jars).
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "stale-old.jar").write_bytes(b"x")
    shutil.copyfile(first, dist / jar.name)
    PACKAGE["copy_jar"](dist)
    assert sorted(p.name for p in dist.glob("*.jar")) == sorted([jar.name, Path(_splink_jar()).name])


def _splink_jar() -> str:
    from splink.backends.spark import similarity_jar_location

    return similarity_jar_location()


def test_zip_carries_the_jvm_jar_and_natlink_finds_it_outside_the_zip(tmp_path):
    jar = ROOT / "src" / "natlink" / "data" / "natlink-jvm.jar"
    if not jar.exists():
        import pytest

        pytest.skip("natlink-jvm.jar not built (make setup)")
    path = PACKAGE["build_zip"](ROOT, tmp_path, "0.0.test")
    with zipfile.ZipFile(path) as zf:
        assert zf.read("natlink/data/natlink-jvm.jar") == jar.read_bytes()
    # Imported from the zip (as under spark-submit --py-files), natlink copies the jar to a real
    # file once (the JVM cannot load a jar nested in a zip); -I -S: not the editable install.
    probe = "import sys; sys.path.insert(0, sys.argv[1]); from natlink.spark.session import natlink_jar; print(natlink_jar())"
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        out = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(path)], capture_output=True, text=True,
                             check=True, cwd=tmp_path, env=env)
        extracted = Path(out.stdout.strip())
        assert extracted.is_relative_to(tmp_path) and extracted.name == jar.name
        assert extracted.read_bytes() == jar.read_bytes()
