"""The one place that builds the SparkSession.

* Local (the embedded default): ``local[*]``, few shuffle partitions, loopback only,
  UI off unless asked, Splink's similarity jar and natlink's JVM jar (HMAC-SHA256, built by
  ``deploy/build_jvm.py``; skipped when not built) on ``spark.jars``, ``PYSPARK_PYTHON``
  set to the running interpreter so Python workers see this venv's packages.
* Under ``spark-submit`` (a cluster): the master and confs come from spark-submit;
  we only add what natlink needs and does not override what the submitter set.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Local defaults chosen for a 2-core machine; measured in benchmarks/, not guessed per call.
LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "8g",
    "spark.driver.host": LOOPBACK,
    "spark.driver.bindAddress": LOOPBACK,
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    # Shuffle and spill files may hold key-derived intermediate values: encrypt them.
    "spark.io.encryption.enabled": "true",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
}

# Confs natlink needs on every deployment (cluster included) unless the submitter set them.
ALWAYS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.io.encryption.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def under_spark_submit() -> bool:
    """True when this Python driver was launched by spark-submit (the JVM is already up)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def splink_jar() -> str:
    from splink.backends.spark import similarity_jar_location

    return similarity_jar_location()


NATLINK_JAR = "natlink-jvm.jar"


def natlink_jar() -> str | None:
    """Local path of natlink's JVM jar (package data), or None when it was not built.

    Imported from a zip (``--py-files``), the jar is copied once to a private temporary
    directory, since the JVM cannot load a jar nested in a zip.
    """
    import hashlib
    from importlib import resources

    res = resources.files("natlink.data").joinpath(NATLINK_JAR)
    try:
        if not res.is_file():
            return None
        if isinstance(res, Path):
            return str(res)
        data = res.read_bytes()
    except OSError:
        return None
    target = Path(tempfile.gettempdir()) / f"natlink-jvm-{os.getuid()}-{hashlib.sha256(data).hexdigest()[:16]}" / NATLINK_JAR
    if not target.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = target.with_name(f".{NATLINK_JAR}.{os.getpid()}")
        part.write_bytes(data)
        part.replace(target)
    return str(target)


def _jars(existing: str | None = None) -> str:
    """``spark.jars``: ``existing`` plus Splink's jar and natlink's (when built)."""
    jars = _merge_jars(existing, splink_jar())
    ours = natlink_jar()
    return _merge_jars(jars, ours) if ours else jars


def _merge_jars(existing: str | None, extra: str) -> str:
    parts = [p for p in (existing or "").split(",") if p]
    if not any(Path(p).name == Path(extra).name for p in parts):
        parts.append(extra)
    return ",".join(parts)


def get_spark(
    app_name: str = "natlink",
    *,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    ui: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
):
    """Return the active SparkSession, building it with natlink's settings if needed."""
    from pyspark.sql import SparkSession

    quiet_py4j()
    active = SparkSession.getActiveSession()
    if active is not None:
        ensure_checkpoint_dir(active, checkpoint_dir)
        return active

    # Python workers must run the interpreter that has natlink's dependencies.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    settings: dict[str, str] = {}
    if under_spark_submit():
        # spark-submit already chose master, jars and resources; only fill natlink's needs.
        from pyspark import SparkConf

        submitted = SparkConf()
        settings.update({k: v for k, v in ALWAYS.items() if not submitted.contains(k)})
        settings["spark.jars"] = _jars(submitted.get("spark.jars", None))
        log.info("SparkSession: under spark-submit, master=%s", submitted.get("spark.master", "?"))
    else:
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        settings.update(LOCAL_DEFAULTS)
        settings["spark.ui.enabled"] = "true" if ui else "false"
        if ui:
            settings["spark.ui.host"] = LOOPBACK
        settings["spark.jars"] = _jars()
        builder = builder.master(master or os.environ.get("NATLINK_SPARK_MASTER", "local[*]"))
        log.info("SparkSession: local mode, master=%s", master or "local[*]")
    for key, value in (conf or {}).items():
        settings[key] = str(value)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("NATLINK_SPARK_LOG_LEVEL", "WARN"))
    ensure_checkpoint_dir(spark, checkpoint_dir)
    return spark


def quiet_py4j() -> None:
    """Cap py4j's loggers at INFO: at DEBUG they echo every command and answer crossing the
    Python-JVM bridge, which includes data (file heads read for schema checks, collected rows).
    A root logger at DEBUG would otherwise copy identifiers (and, from :func:`natlink.tokens.hmac_sha256.key_frame`,
    padded subkeys) into log files. Called by :func:`get_spark` and before secrets cross the bridge."""
    for name in ("py4j", "py4j.clientserver", "py4j.java_gateway"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def ensure_checkpoint_dir(spark, checkpoint_dir=None) -> str:
    """Set the checkpoint directory (``checkpoint_dir``, else a private default when none is set) and return it."""
    jsc = spark.sparkContext._jsc
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        spark.sparkContext.setCheckpointDir(str(checkpoint_dir))
    elif jsc.sc().getCheckpointDir().isEmpty():
        # Splink breaks lineage with checkpoints; give it somewhere private by default.
        default = Path(tempfile.gettempdir()) / f"natlink-checkpoints-{os.getpid()}"
        default.mkdir(parents=True, exist_ok=True)
        spark.sparkContext.setCheckpointDir(str(default))
    return jsc.sc().getCheckpointDir().get()


def local_dir(spark) -> str | None:
    """The first of ``spark.local.dir`` when it is a local directory that exists (spill space)."""
    value = spark.conf.get("spark.local.dir", None) or ""
    first = value.split(",")[0].strip()
    return first if first and os.path.isdir(first) else None
