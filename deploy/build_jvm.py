"""Build natlink's JVM jar (``src/natlink/data/natlink-jvm.jar``) from ``jvm/src/main/java``.

    python deploy/build_jvm.py [--force] [--check] [--out PATH]

Compiles with ``javac --release 17`` against the jars of the installed pyspark (no Maven) and
writes the jar with fixed timestamps, so identical sources give identical bytes (the --py-files
zip and the wheel carry it as package data; git does not). Up to date when the jar is newer
than every source file; ``--force`` rebuilds. Without a JDK it says so and exits 0 (natlink then
falls back to Spark's native HMAC composition), unless ``--strict``.
Standard library only.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "jvm" / "src" / "main" / "java"
JAR = ROOT / "src" / "natlink" / "data" / "natlink-jvm.jar"
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)
_MANIFEST = "Manifest-Version: 1.0\r\nCreated-By: natlink deploy/build_jvm.py\r\n\r\n"


def java_sources(src: Path = SOURCES) -> list[Path]:
    return sorted(src.rglob("*.java"))


def stale(jar: Path = JAR, src: Path = SOURCES) -> bool:
    if not jar.exists():
        return True
    newest = max((p.stat().st_mtime for p in java_sources(src)), default=0.0)
    return newest > jar.stat().st_mtime or Path(__file__).stat().st_mtime > jar.stat().st_mtime


def spark_classpath() -> str:
    """Compile-time classpath: every jar of the installed pyspark (``jars/*``, a javac wildcard)."""
    import pyspark

    jars = Path(pyspark.__file__).resolve().parent / "jars"
    if not any(jars.glob("spark-sql-api_*.jar")):
        raise SystemExit(f"build_jvm: no spark-sql-api jar under {jars} (is pyspark installed?)")
    return str(jars / "*")


def javac() -> str | None:
    found = shutil.which("javac")
    if found:
        return found
    import os

    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "javac" if home else None
    return str(candidate) if candidate and candidate.exists() else None


def build(jar: Path = JAR, src: Path = SOURCES) -> Path:
    """Compile and write the jar (raises SystemExit when javac is missing or fails)."""
    compiler = javac()
    if compiler is None:
        raise SystemExit("build_jvm: javac not found (install a JDK 17+, or set JAVA_HOME)")
    sources = java_sources(src)
    if not sources:
        raise SystemExit(f"build_jvm: no Java sources under {src}")
    with tempfile.TemporaryDirectory(prefix="natlink-jvm-") as tmp:
        classes = Path(tmp) / "classes"
        # -path: Spark jars' manifests name Class-Path entries that pyspark does not ship.
        cmd = [compiler, "--release", "17", "-Xlint:all,-path", "-Werror", "-encoding", "UTF-8",
               "-cp", spark_classpath(), "-d", str(classes), *map(str, sources)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"build_jvm: javac failed ({done.returncode})")
        jar.parent.mkdir(parents=True, exist_ok=True)
        part = jar.with_suffix(".jar.tmp")
        with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            entries = [("META-INF/MANIFEST.MF", _MANIFEST.encode())]
            entries += [(p.relative_to(classes).as_posix(), p.read_bytes()) for p in sorted(classes.rglob("*.class"))]
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        part.replace(jar)
    return jar


def ensure(jar: Path = JAR, *, force: bool = False, strict: bool = True, log=print) -> Path | None:
    """Build when stale (or forced). Without a JDK: raise if ``strict``, else warn and return the
    existing jar (or None)."""
    if not force and not stale(jar):
        return jar
    if javac() is None and not strict:
        log("build_jvm: javac not found; natlink will use Spark's native HMAC composition")
        return jar if jar.exists() else None
    out = build(jar)
    log(f"build_jvm: built {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when stale")
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) when no JDK is installed")
    parser.add_argument("--out", type=Path, default=JAR)
    args = parser.parse_args(argv)
    if args.check:
        is_stale = stale(args.out)
        print("stale" if is_stale else "up to date")
        return 1 if is_stale else 0
    ensure(args.out, force=args.force, strict=args.strict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
