"""The one place that builds the SparkSession.

* Local (the embedded default): ``local[*]``, few shuffle partitions, loopback only,
  UI off unless asked, Splink's similarity jar, natlink's JVM jar (HMAC-SHA256, built by
  ``deploy/build_jvm.py``; skipped when not built) and delta-spark's jars (fetched from Maven
  by ``make setup`` into ``jars/delta``, see :func:`delta_jars`) on ``spark.jars`` with
  Delta's two session confs, ``PYSPARK_PYTHON`` set to the running interpreter so Python
  workers see this venv's packages.
* Under ``spark-submit`` (a cluster): the master and confs come from spark-submit (Delta's jars
  and confs included, docs/cluster.md); we only add what natlink needs and does not override
  what the submitter set.

Checkpoint directory (:func:`ensure_checkpoint_dir`): Splink's checkpoints and natlink's scratch
Parquet (:mod:`natlink.spark.scratch`) hold key-derived values, so the folders natlink creates for
them are private (mode 0700) and the application's own checkpoint folder is removed when the
job's Python process ends (or at once with :func:`release_checkpoint_dir`); Spark also cleans
each checkpoint once nothing references it (``spark.cleaner.referenceTracking.cleanCheckpoints``).

Local mode authenticates and encrypts RPC as a cluster does (Spark makes the secret itself), so
the I/O encryption keys never travel in clear and Spark's "visible on the wire" warning is gone.
Spark's log4j configuration (``natlink/data/log4j2.properties``) is applied from the JVM's start,
at ``$NATLINK_SPARK_LOG_LEVEL`` (the natlink command: ERROR, WARN with ``--verbose``; default WARN).

Cluster security (``conf/environments/cluster.yaml``, docs/cluster.md): ``spark.authenticate``
with a secret from a key reference, ``spark.network.crypto.enabled`` (RPC and shuffle traffic
encrypted: without it Spark warns that the I/O encryption keys "will be visible on the wire") and
``spark.io.encryption.enabled`` (shuffle and spill files encrypted).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from natlink.errors import DeltaTableError

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
    # Shuffle and spill files may hold key-derived intermediate values: encrypt them. I/O
    # encryption keys travel by RPC, so RPC is authenticated and encrypted too (as on a cluster):
    # in local mode Spark makes the authentication secret itself, and driver and executor share
    # one JVM, so nothing crosses a network. Without it Spark warns at every start that the keys
    # "will be visible on the wire". Measured (benchmarks/bench_local_rpc_encryption.py --repeats 6,
    # 2M rows, alternating, load 7-8 on 2 cores): median 9.4 s on vs 9.0 s off, min 7.8 vs 8.5: noise.
    "spark.io.encryption.enabled": "true",
    "spark.authenticate": "true",
    "spark.network.crypto.enabled": "true",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    # Checkpoints hold key-derived values too: delete each once nothing references it.
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
}

# Delta Lake through delta-spark: its SQL extension (MERGE, OPTIMIZE, VACUUM, ...) and catalog.
DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# delta-spark's defaults are sized for clusters: 50 tasks to rebuild a table's state from its log
# and 10,000 to list a table's files (VACUUM). Measured on 2 cores (docs/delta.md).
LOCAL_DELTA_DEFAULTS: dict[str, str] = {
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
}
DELTA_JARS_ENV = "NATLINK_DELTA_JARS"
PROJECT_ROOT = Path(__file__).resolve().parents[3]

# Confs natlink needs on every deployment (cluster included) unless the submitter set them.
ALWAYS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.io.encryption.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
}
# What a cluster must set on top (conf/environments/cluster.yaml; a standalone cluster also needs
# spark.authenticate.secret, from the environment's auth_secret key reference).
CLUSTER_SECURITY: dict[str, str] = {
    "spark.authenticate": "true",
    "spark.network.crypto.enabled": "true",
    "spark.io.encryption.enabled": "true",
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


def delta_jars() -> list[str]:
    """delta-spark and the jars it needs beyond Spark's own, for local sessions.

    From the folder ``$NATLINK_DELTA_JARS``, else the project's ``jars/delta`` (``make setup``
    fills it with ``mvn`` from ``jvm/delta/pom.xml``).
    """
    configured = os.environ.get(DELTA_JARS_ENV)
    folder = Path(configured) if configured else PROJECT_ROOT / "jars" / "delta"
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not any(Path(j).name.startswith("delta-spark_") for j in jars):
        raise DeltaTableError(
            f"no delta-spark jar in {folder}: run `make setup` (fetches the Delta jars with mvn) "
            f"or point {DELTA_JARS_ENV} at a folder holding them"
        )
    return jars


def _jars(existing: str | None = None, extra: list[str] | None = None) -> str:
    """``spark.jars``: ``existing`` plus Splink's jar, natlink's (when built) and ``extra``."""
    jars = _merge_jars(existing, splink_jar())
    ours = natlink_jar()
    for jar in ([ours] if ours else []) + list(extra or []):
        jars = _merge_jars(jars, jar)
    return jars


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
        from pyspark import SparkConf, SparkContext

        # SparkConf() sees what spark-submit set (--jars included) only once Python is connected
        # to the JVM; before that it is empty, and spark.jars set here would drop the submitted
        # jars (the Delta jars among them) from the executors.
        SparkContext._ensure_initialized()
        submitted = SparkConf()
        settings.update({k: v for k, v in ALWAYS.items() if not submitted.contains(k)})
        settings["spark.jars"] = _jars(submitted.get("spark.jars", None))
        log.info("SparkSession: under spark-submit, master=%s", submitted.get("spark.master", "?"))
    else:
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        settings.update(LOCAL_DEFAULTS)
        settings.update(DELTA_CONF)
        settings.update(LOCAL_DELTA_DEFAULTS)
        settings["spark.ui.enabled"] = "true" if ui else "false"
        if ui:
            settings["spark.ui.host"] = LOOPBACK
        settings["spark.jars"] = _jars(extra=delta_jars())
        builder = builder.master(master or os.environ.get("NATLINK_SPARK_MASTER", "local[*]"))
        log.info("SparkSession: local mode, master=%s", master or "local[*]")
    for key, value in (conf or {}).items():
        settings[key] = str(value)
    if not under_spark_submit():
        settings["spark.driver.extraJavaOptions"] = " ".join(filter(None, [settings.get("spark.driver.extraJavaOptions"), *log4j_options()]))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spark_log_level())
    ensure_checkpoint_dir(spark, checkpoint_dir)
    return spark


LOG_LEVEL_ENV = "NATLINK_SPARK_LOG_LEVEL"
_LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


def spark_log_level() -> str:
    """Spark's log level: ``$NATLINK_SPARK_LOG_LEVEL`` (the natlink command sets ERROR, or WARN with
    ``--verbose``), else WARN."""
    level = os.environ.get(LOG_LEVEL_ENV, "WARN").upper()
    return level if level in _LOG_LEVELS else "WARN"


def log4j_options() -> list[str]:
    """Driver JVM options that apply natlink's log4j2 configuration from the JVM's first line on
    (``setLogLevel`` comes too late for start-up warnings): the package's ``log4j2.properties``
    at :func:`spark_log_level`. Empty when the file is not on disk (imported from a zip)."""
    from importlib import resources

    res = resources.files("natlink.data").joinpath("log4j2.properties")
    if not isinstance(res, Path) or not res.is_file():
        return []
    return [f"-Dlog4j2.configurationFile={res.as_uri()}", f"-Dnatlink.spark.log.level={spark_log_level().lower()}"]


def quiet_py4j() -> None:
    """Cap py4j's loggers at INFO: at DEBUG they echo every command and answer crossing the
    Python-JVM bridge, which includes data (file heads read for schema checks, collected rows).
    A root logger at DEBUG would otherwise copy identifiers (and, from :func:`natlink.tokens.hmac_sha256.key_frame`,
    padded subkeys) into log files. Called by :func:`get_spark` and before secrets cross the bridge."""
    for name in ("py4j", "py4j.clientserver", "py4j.java_gateway"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def _private_dir(path: Path) -> bool:
    """Create ``path`` (and missing parents) with mode 0700; True when this call created it."""
    if path.exists():
        return False
    path.mkdir(mode=0o700, parents=True)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    return True


def _remove_dir(uri: str, spark=None) -> None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        shutil.rmtree(parsed.path, ignore_errors=True)
        return
    try:  # another file system: through Hadoop, while the JVM is up
        jvm = spark._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(uri)
        hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(hpath, True)
    except Exception:  # noqa: BLE001 - best effort at exit: the store's lifecycle rules are the backstop
        log.warning("checkpoint folder %s was not removed (JVM gone or no access)", uri)


_CLEANUP: dict[str, tuple] = {}  # checkpoint folder -> (created root or None, session): removed at exit


def _cleanup_at_exit() -> None:
    for uri, (root, spark) in list(_CLEANUP.items()):
        _remove_dir(uri, spark)
        if root is not None:
            try:
                root.rmdir()  # only when nothing else was left in it
            except OSError:
                pass
    _CLEANUP.clear()


atexit.register(_cleanup_at_exit)


def ensure_checkpoint_dir(spark, checkpoint_dir=None) -> str:
    """Set the checkpoint directory (``checkpoint_dir``, else a private default when none is set) and return it.

    A folder created here is mode 0700. Spark checkpoints into a new subfolder of it per call,
    which is made private too (on local paths) and removed when the Python process ends
    (:func:`release_checkpoint_dir` removes it at once), together with the folder if created here.
    """
    jsc = spark.sparkContext._jsc
    created: Path | None = None
    if checkpoint_dir is not None:
        target = Path(checkpoint_dir)
        created = target if _private_dir(target) else None
    elif jsc.sc().getCheckpointDir().isEmpty():
        # Splink breaks lineage with checkpoints; give it somewhere private by default.
        target = Path(tempfile.mkdtemp(prefix=f"natlink-checkpoints-{os.getpid()}-"))  # mode 0700
        created = target
    else:
        return jsc.sc().getCheckpointDir().get()
    spark.sparkContext.setCheckpointDir(str(target))
    current = jsc.sc().getCheckpointDir().get()
    local = urlparse(current)
    if local.scheme in ("", "file") and os.path.isdir(local.path):
        os.chmod(local.path, stat.S_IRWXU)
    _CLEANUP[current] = (created, spark)
    return current


def release_checkpoint_dir(spark) -> None:
    """Remove this session's current checkpoint folder now (what the end of the process does).

    For the end of a job: later checkpoints of the session need :func:`ensure_checkpoint_dir` again.
    """
    current = spark.sparkContext._jsc.sc().getCheckpointDir()
    if current.isEmpty():
        return
    root, _session = _CLEANUP.pop(current.get(), (None, spark))
    _remove_dir(current.get(), spark)
    if root is not None:
        try:
            root.rmdir()
        except OSError:
            pass


def local_dir(spark) -> str | None:
    """The first of ``spark.local.dir`` when it is a local directory that exists (spill space)."""
    value = spark.conf.get("spark.local.dir", None) or ""
    first = value.split(",")[0].strip()
    return first if first and os.path.isdir(first) else None
