"""Fetch delta-spark's jars from Maven Central into ``jars/delta`` (run by ``make setup``).

    python deploy/fetch_jars.py [--check]

Runs ``mvn dependency:copy-dependencies`` on ``jvm/delta/pom.xml`` with the versions of the
installed packages (delta-spark's version and pyspark's major.minor name the artefact
``io.delta:delta-spark_<spark major.minor>_2.13:<delta version>``), into a fresh folder that
then replaces ``jars/delta`` whole, so jars of an older pin never linger. ``--check`` only
prints what is there. Standard library only (plus the installed packages' metadata).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "jvm" / "delta" / "pom.xml"
JARS = ROOT / "jars" / "delta"


def versions() -> tuple[str, str]:
    """(delta-spark version, Spark major.minor) of the installed packages."""
    spark = metadata.version("pyspark")
    return metadata.version("delta-spark"), ".".join(spark.split(".")[:2])


def fetch(out: Path = JARS) -> list[Path]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SystemExit("fetch_jars: mvn not found (install Maven: apt-get install maven)")
    delta, spark = versions()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".delta-", dir=out.parent))
    cmd = [mvn, "-B", "-q", "-f", str(POM), f"-Ddelta.version={delta}", f"-Dspark.binary.version={spark}",
           f"-Djars.dir={staging}", "dependency:copy-dependencies"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    jars = sorted(staging.glob("*.jar"))
    if done.returncode != 0 or not any(j.name.startswith(f"delta-spark_{spark}_2.13-{delta}") for j in jars):
        shutil.rmtree(staging, ignore_errors=True)
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"fetch_jars: mvn did not deliver io.delta:delta-spark_{spark}_2.13:{delta} ({done.returncode})")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return sorted(out.glob("*.jar"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list the jars in jars/delta, fetch nothing")
    args = parser.parse_args(argv)
    jars = sorted(JARS.glob("*.jar")) if args.check else fetch()
    delta, spark = versions()
    print(f"fetch_jars: delta-spark {delta} for Spark {spark}: {len(jars)} jar(s) in {JARS.relative_to(ROOT)}")
    for jar in jars:
        print(f"  {jar.name} ({jar.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
