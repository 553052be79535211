"""Build the artefacts spark-submit needs on a cluster, into ``dist/`` (``make package``).

* ``natlink-<version>.zip``      our code for ``--py-files``: the natlink package with its data files
                                 (read through ``importlib.resources``, so they work from the zip).
* ``natlink-env.tar.gz``         a venv-pack archive of the *runtime* dependencies (compiled ones
                                 included: pyarrow, cryptography, numpy, scipy, duckdb) for
                                 ``--archives dist/natlink-env.tar.gz#environment``. Built from a
                                 throw-away, non-editable venv under ``build/`` that does not hold
                                 natlink itself (the code travels in the zip) nor pyspark (the
                                 cluster's Spark provides it; delta-spark's Python shim is kept).
* ``natlink-<version>-py3-none-any.whl``  the wheel, for images and ``pip install`` on a cluster.
* Splink's similarity jar        for ``--jars`` (``splink.backends.spark.similarity_jar_location()``).
* ``natlink-jvm.jar``            natlink's JVM HMAC-SHA256 function, for ``--jars`` too. Built first
                                 (``deploy/build_jvm.py``, needs a JDK) into ``src/natlink/data/``,
                                 so the zip and the wheel carry it as package data as well.
* ``delta/``                     delta-spark's jars for ``--jars`` (copied from ``jars/delta``, which
                                 ``make setup`` fetches from Maven with ``deploy/fetch_jars.py``).

Incremental: ``dist/BUILD.json`` records a hash of each artefact's inputs, and an artefact is
rebuilt only when its inputs changed (the env archive only when pyproject.toml's dependencies,
constraints.txt or the Python version change). ``--force`` rebuilds everything; ``--check``
only reports (exit 1 when stale). Standard library only, plus venv-pack run as a command.

    python deploy/package.py [--dist dist] [--force] [--check] [--python-prefix /usr]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_jvm  # noqa: E402  (deploy/build_jvm.py, next to this file)

ENV_ARCHIVE = "natlink-env.tar.gz"
# Provided by the cluster's Spark installation (pyspark.zip on every executor's PYTHONPATH).
NOT_IN_ENV = {"pyspark"}
# Installed without dependencies: delta-spark's Python shim would otherwise pull in pyspark.
NO_DEPS = {"delta-spark"}
_SKIP_PARTS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
# A fixed timestamp makes the zip byte-identical for identical sources.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _project(root: Path) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _req_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _code_files(root: Path) -> list[Path]:
    pkg = root / "src" / "natlink"
    return sorted(
        p for p in pkg.rglob("*")
        if p.is_file() and not (_SKIP_PARTS & set(p.relative_to(pkg).parts)) and p.suffix not in _SKIP_SUFFIXES
    )


def _hash(items: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in items:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def input_hashes(root: Path = ROOT, python_prefix: str | None = None) -> dict[str, str]:
    """What each artefact is built from: change one input and that artefact is stale."""
    code = [(str(p.relative_to(root)), p.read_bytes()) for p in _code_files(root)]
    pyproject = (root / "pyproject.toml").read_bytes()
    deps = json.dumps(sorted(_project(root)["dependencies"])).encode()
    py = f"{sys.version_info.major}.{sys.version_info.minor}".encode()
    return {
        "zip": _hash(code),
        "wheel": _hash([*code, ("pyproject.toml", pyproject)]),
        "env": _hash([("deps", deps), ("constraints.txt", (root / "constraints.txt").read_bytes()), ("python", py), ("prefix", (python_prefix or "").encode())]),
        "jar": _hash([("splink", _splink_version().encode())]),
        "jvm": _hash([("natlink-jvm.jar", _jvm_jar(root).read_bytes() if _jvm_jar(root).exists() else b"")]),
        "delta": _hash([(p.name, p.read_bytes()) for p in _delta_jars(root)]),
    }


def _delta_jars(root: Path) -> list[Path]:
    return sorted((root / "jars" / "delta").glob("*.jar"))


def _jvm_jar(root: Path) -> Path:
    return root / "src" / "natlink" / "data" / build_jvm.JAR.name


def _splink_version() -> str:
    from importlib.metadata import version

    return version("splink")


def build_zip(root: Path, dist: Path, version: str) -> Path:
    out = dist / f"natlink-{version}.zip"
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _code_files(root):
            arcname = str(path.relative_to(root / "src"))
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def build_wheel(root: Path, dist: Path, version: str) -> Path:
    for old in dist.glob("natlink-*.whl"):
        old.unlink()
    _run_quiet([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(root)], cwd=root)
    wheels = sorted(dist.glob(f"natlink-{version}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one natlink {version} wheel in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def _run_quiet(cmd: list[str], **kwargs) -> None:
    """Run a build step; its (noisy) output is shown only when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}")


def _venv_pack() -> str:
    exe = Path(sys.executable).with_name("venv-pack")
    if exe.exists():
        return str(exe)
    found = shutil.which("venv-pack")
    if found is None:
        raise SystemExit("venv-pack not found: install the dev extras (make setup)")
    return found


def build_env(root: Path, dist: Path, build: Path, python_prefix: str | None = None) -> Path:
    """A fresh venv with the runtime dependencies only (not natlink, not pyspark), venv-packed."""
    venv = build / "pack-venv"
    shutil.rmtree(venv, ignore_errors=True)
    _run_quiet([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    constraints = ["-c", str(root / "constraints.txt")]
    deps = _project(root)["dependencies"]
    with_deps = [d for d in deps if _req_name(d) not in NOT_IN_ENV | NO_DEPS]
    no_deps = [d for d in deps if _req_name(d) in NO_DEPS]
    _run_quiet([*pip, *constraints, *with_deps])
    if no_deps:
        _run_quiet([*pip, "--no-deps", *constraints, *no_deps])
    out = dist / ENV_ARCHIVE
    # The archive's bin/python links to this base interpreter; --python-prefix rewrites the link
    # for clusters whose Python lives elsewhere (same version and platform still required).
    prefix = ["--python-prefix", python_prefix] if python_prefix else []
    _run_quiet([_venv_pack(), "--prefix", str(venv), "--output", str(out), "--force", "--quiet", *prefix])
    return out


def copy_jar(dist: Path) -> Path:
    from splink.backends.spark import similarity_jar_location

    src = Path(similarity_jar_location())
    for old in dist.glob("*.jar"):
        if old.name not in (src.name, build_jvm.JAR.name):
            old.unlink()
    out = dist / src.name
    shutil.copyfile(src, out)
    return out


def copy_jvm_jar(root: Path, dist: Path) -> Path:
    src = _jvm_jar(root)
    if not src.exists():
        raise SystemExit(f"{src} is missing: build it with deploy/build_jvm.py (needs a JDK)")
    out = dist / src.name
    shutil.copyfile(src, out)
    return out


def copy_delta_jars(root: Path, dist: Path) -> Path:
    jars = _delta_jars(root)
    if not any(j.name.startswith("delta-spark_") for j in jars):
        raise SystemExit(f"no delta-spark jar in {root / 'jars' / 'delta'}: run make setup (deploy/fetch_jars.py)")
    out = dist / "delta"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for jar in jars:
        shutil.copyfile(jar, out / jar.name)
    return out


def _size(path: Path) -> str:
    n = sum(p.stat().st_size for p in path.glob("*")) if path.is_dir() else path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def artefacts(dist: Path = ROOT / "dist") -> dict[str, Path]:
    """The built artefacts by kind (zip, env, wheel, jar, jvm, delta: a folder), read from dist/BUILD.json."""
    state = json.loads((dist / "BUILD.json").read_text(encoding="utf-8"))
    return {kind: dist / entry["file"] for kind, entry in state["artefacts"].items()}


def stale(root: Path = ROOT, dist: Path | None = None, python_prefix: str | None = None) -> list[str]:
    """Artefact kinds whose inputs changed since they were built (or that are missing)."""
    dist = dist or root / "dist"
    state_file = dist / "BUILD.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {"artefacts": {}}
    built = state["artefacts"]
    return [
        kind for kind, digest in input_hashes(root, python_prefix).items()
        if kind not in built or built[kind]["inputs"] != digest or not (dist / built[kind]["file"]).exists()
    ]


def package(
    root: Path = ROOT, dist: Path | None = None, *, force: bool = False, python_prefix: str | None = None, log=print
) -> dict[str, Path]:
    """Build what is stale (everything with ``force``); returns every artefact's path."""
    dist = dist or root / "dist"
    build = root / "build"
    dist.mkdir(parents=True, exist_ok=True)
    build.mkdir(parents=True, exist_ok=True)
    version = _project(root)["version"]
    if root == ROOT:
        # The JVM jar is package data of the zip and the wheel: (re)build it before hashing them.
        build_jvm.ensure(strict=True, log=log)
    hashes = input_hashes(root, python_prefix)
    todo = list(hashes) if force else stale(root, dist, python_prefix)
    state_file = dist / "BUILD.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {"artefacts": {}}
    builders = {
        "zip": lambda: build_zip(root, dist, version),
        "wheel": lambda: build_wheel(root, dist, version),
        "env": lambda: build_env(root, dist, build, python_prefix),
        "jar": lambda: copy_jar(dist),
        "jvm": lambda: copy_jvm_jar(root, dist),
        "delta": lambda: copy_delta_jars(root, dist),
    }
    for kind in builders:
        if kind not in todo:
            continue
        t = time.perf_counter()
        path = builders[kind]()
        state["artefacts"][kind] = {"file": path.name, "inputs": hashes[kind], "seconds": round(time.perf_counter() - t, 1)}
        # Saved after each artefact, so an interrupted build keeps what it finished.
        state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths = {kind: dist / entry["file"] for kind, entry in state["artefacts"].items()}
    for kind, path in paths.items():
        verb = "built" if kind in todo else "up to date"
        log(f"{kind:6} {path.relative_to(root) if path.is_relative_to(root) else path}  {_size(path)}  ({verb})")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--force", action="store_true", help="rebuild every artefact")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when an artefact is stale")
    parser.add_argument("--python-prefix", default=None, help="the cluster's Python prefix (venv-pack --python-prefix)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if args.check:
        todo = stale(ROOT, args.dist, args.python_prefix)
        print("stale: " + (", ".join(todo) if todo else "nothing"))
        return 1 if todo else 0
    package(ROOT, args.dist, force=args.force, python_prefix=args.python_prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
