"""Keyed HMAC-SHA256 columns: the padded-key frame and the two implementations that use it.

Every token is HMAC-SHA256 (RFC 2104) under a per-purpose HKDF subkey of the managed key
(:mod:`natlink.tokens.keys`), as 64 lowercase hex characters:

    HMAC(K, m) = SHA256((K0 xor opad) || SHA256((K0 xor ipad) || m))

K0 is the 32-byte subkey zero-padded to the 64-byte block. The padded keys travel as columns of
a one-row broadcast frame (:func:`key_frame`), never as literals, so no key-derived secret appears
in a Spark plan, ``explain()`` text or event log. Two implementations give identical tokens:
* natlink's JVM function ``natlink.HmacSha256Hex`` (``jvm/``, shipped as ``natlink-jvm.jar``, put on
  ``spark.jars`` by :func:`natlink.spark.session.get_spark`): SHA-256 states after each pad computed once
  per pad pair and executor thread, two compressions per short value; used whenever the class is
  loadable;
* otherwise a composition of Spark's native ``sha2``/``concat``/``unhex`` (the fallback).

The choice is an argument (``implementation``: "auto" | "jvm" | "native"); when a caller passes
None, ``NATLINK_HMAC=auto|jvm|native`` decides, and "auto" when that is unset
(:func:`choose_hmac_implementation`). Callers resolve it once, at their outermost call, and pass
the result down. (Measured in ``benchmarks/bench_tokenise.py``, also against an Arrow-vectorised
``mapInArrow`` with reused hashlib states.)
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink.errors import HmacImplementationError, JvmHmacUnavailableError
from natlink.tokens.keys import KeyMaterial

__all__ = [
    "HMAC_ENV",
    "HMAC_IMPLEMENTATIONS",
    "JVM_HMAC_CLASS",
    "JVM_HMAC_NAME",
    "PadColumns",
    "choose_hmac_implementation",
    "forget_jvm_hmac_lookup",
    "hmac_pads",
    "hmac_sha256_hex",
    "hmac_uses_jvm",
    "key_frame",
]

log = logging.getLogger(__name__)

HMAC_ENV = "NATLINK_HMAC"
HMAC_IMPLEMENTATIONS = ("auto", "jvm", "native")
JVM_HMAC_CLASS = "natlink.HmacSha256Hex"
JVM_HMAC_NAME = "natlink_hmac_sha256_hex"  # HmacSha256Hex.NAME: what plans show for the function

_BLOCK = 64
_PAD_COL = "__natlink_pad_"
# (SparkContext, class name, the JVM UserDefinedFunction or None when the class is not loadable).
_jvm_hmac_cache: tuple[object, str, object] | None = None


# --------------------------------------------------------------------------------------------
# Which implementation


def choose_hmac_implementation(implementation: str | None = None) -> str:
    """``implementation`` when given, else the ``NATLINK_HMAC`` environment variable, else "auto".

    "auto": natlink's JVM function when its class is loadable, else native; "jvm": required (an
    error when not loadable); "native": Spark's ``sha2``/``concat`` composition."""
    if implementation is not None:
        if implementation not in HMAC_IMPLEMENTATIONS:
            raise HmacImplementationError(f"HMAC implementation must be one of {HMAC_IMPLEMENTATIONS}, got {implementation!r}")
        return implementation
    choice = os.environ.get(HMAC_ENV, "auto").strip().lower() or "auto"
    if choice not in HMAC_IMPLEMENTATIONS:
        raise HmacImplementationError(f"{HMAC_ENV} must be one of {HMAC_IMPLEMENTATIONS}, got {choice!r}")
    return choice


def _jvm_hmac_udf():
    """natlink's JVM HMAC function as a JVM ``UserDefinedFunction`` of the running SparkContext,
    or None (class not on the classpath, no SparkContext, Spark Connect). Decided, and logged
    once, per SparkContext and class name."""
    global _jvm_hmac_cache
    try:
        from pyspark import SparkContext
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    sc = SparkContext._active_spark_context
    if sc is None:
        return None
    if _jvm_hmac_cache is not None and _jvm_hmac_cache[0] is sc and _jvm_hmac_cache[1] == JVM_HMAC_CLASS:
        return _jvm_hmac_cache[2]
    udf, reason = None, ""
    try:
        target = sc._jvm
        for part in JVM_HMAC_CLASS.split("."):
            target = getattr(target, part)
        # functions.udf(UDF3, DataType) named JVM_HMAC_NAME, built in Java: py4j could pick the
        # untyped Scala overload. A py4j JavaPackage (class not found) has no such method.
        udf = target.function()
    except Exception as exc:  # noqa: BLE001 - any failure means: use the native composition
        udf, reason = None, f" ({JVM_HMAC_CLASS} not loadable: {type(exc).__name__})"
    if udf is not None:
        log.info("HMAC-SHA256: JVM function %s", JVM_HMAC_CLASS)
    else:
        log.info("HMAC-SHA256: native sha2/concat composition%s", reason)
    _jvm_hmac_cache = (sc, JVM_HMAC_CLASS, udf)
    return udf


def forget_jvm_hmac_lookup() -> None:
    """Forget whether the JVM function was loadable, so the next HMAC column looks it up (and logs
    the choice) again: for a driver that put the jar on the classpath after its first lookup."""
    global _jvm_hmac_cache
    _jvm_hmac_cache = None


def hmac_uses_jvm(implementation: str | None = None) -> bool:
    """Whether :func:`hmac_sha256_hex` builds natlink's JVM function now (else the native one)."""
    return choose_hmac_implementation(implementation) != "native" and _jvm_hmac_udf() is not None


# --------------------------------------------------------------------------------------------
# HMAC columns


def _native_hmac(message: Column, inner_pad: Column, outer_pad: Column) -> Column:
    inner = F.unhex(F.sha2(F.concat(inner_pad, message.cast("binary")), 256))
    return F.sha2(F.concat(outer_pad, inner), 256)


def hmac_sha256_hex(message: Column, inner_pad: Column, outer_pad: Column, *, implementation: str | None = None) -> Column:
    """HMAC-SHA256 of a binary or string column as 64 lowercase hex characters (NULL stays NULL).

    ``inner_pad``/``outer_pad`` are binary columns (see :func:`key_frame`), never literals.
    ``implementation`` (see :func:`choose_hmac_implementation`) picks natlink's JVM function or
    Spark's native ``sha2``/``concat``/``unhex``; both give identical results."""
    choice = choose_hmac_implementation(implementation)
    udf = _jvm_hmac_udf() if choice != "native" else None
    if udf is None:
        if choice == "jvm":
            raise JvmHmacUnavailableError(
                f"HMAC implementation 'jvm' ({HMAC_ENV}=jvm or the argument) was asked for, but {JVM_HMAC_CLASS} "
                "is not loadable in this Spark session (build natlink-jvm.jar: make setup, or python deploy/build_jvm.py)"
            )
        return _native_hmac(message, inner_pad, outer_pad)
    from pyspark import SparkContext
    from pyspark.sql.classic.column import Column as ClassicColumn, _to_java_column, _to_seq

    args = [message.cast("binary"), inner_pad, outer_pad]
    return ClassicColumn(udf.apply(_to_seq(SparkContext._active_spark_context, args, _to_java_column)))


class PadColumns:
    """HMAC columns by key purpose, over the pad columns of a :func:`key_frame` of those purposes
    (in the same order) joined to the frame; every column is built with one implementation."""

    def __init__(self, purposes: Sequence[str], implementation: str | None = None) -> None:
        self.index = {p: i for i, p in enumerate(purposes)}
        self.implementation = choose_hmac_implementation(implementation)

    def hmac(self, purpose: str, message: Column) -> Column:
        i = self.index[purpose]
        return hmac_sha256_hex(
            message, F.col(f"{_PAD_COL}i{i}"), F.col(f"{_PAD_COL}o{i}"), implementation=self.implementation
        )


# --------------------------------------------------------------------------------------------
# Pads and the key frame


def hmac_pads(subkey: bytes) -> tuple[bytes, bytes]:
    """RFC 2104 inner and outer pads of ``subkey`` (keys longer than the block are hashed first).

    The pads are key-derived secrets, as secret as the subkey itself: never log, print, store or
    put them in an exception message or a Spark literal (:func:`key_frame` carries them)."""
    if len(subkey) > _BLOCK:
        subkey = hashlib.sha256(subkey).digest()
    k0 = subkey.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in k0), bytes(b ^ 0x5C for b in k0)


def key_frame(spark, key: KeyMaterial, purposes: Sequence[str]) -> DataFrame:
    """One row holding the inner/outer padded subkey of each purpose (binary columns i<n>, o<n>).

    Built in the JVM as a local relation where possible: broadcasting it then runs no Spark job
    and no Python worker per action (``createDataFrame`` of Python rows does both: a fixed cost of
    0.2-0.7 CPU-seconds per action on 2 cores, measured while tuning ``bench_tokenise.py``).
    Plans (every explain mode) show a local relation's columns, never its rows."""
    fields, values = [], []
    for i, purpose in enumerate(purposes):
        inner, outer = hmac_pads(key.subkey(purpose))
        fields += [
            T.StructField(f"{_PAD_COL}i{i}", T.BinaryType(), False),
            T.StructField(f"{_PAD_COL}o{i}", T.BinaryType(), False),
        ]
        values += [bytearray(inner), bytearray(outer)]
    schema = T.StructType(fields)
    local = _jvm_local_frame(spark, schema, values)
    return local if local is not None else spark.createDataFrame([tuple(values)], schema)


def _jvm_local_frame(spark, schema: T.StructType, values: list) -> DataFrame | None:
    """A one-row DataFrame over a JVM ``LocalRelation`` (classic PySpark), else None (Connect)."""
    try:
        from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

        jspark = spark._jsparkSession
        gateway = spark.sparkContext._gateway
    except (ImportError, AttributeError):
        return None
    from natlink.spark.session import quiet_py4j

    quiet_py4j()  # the pads cross the py4j bridge here: never in a py4j DEBUG log line
    jvm = gateway.jvm
    cells = gateway.new_array(jvm.java.lang.Object, len(values))
    for i, value in enumerate(values):
        cells[i] = value
    rows = jvm.java.util.ArrayList()
    rows.add(jvm.org.apache.spark.sql.RowFactory.create(cells))
    return ClassicDataFrame(jspark.createDataFrame(rows, jspark.parseDataType(schema.json())), spark)
