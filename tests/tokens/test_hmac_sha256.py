"""HMAC-SHA256 columns: RFC 4231 vectors, the JVM function against the native composition, the
choice between them (an argument; NATLINK_HMAC its default), and pads kept out of plans and logs."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink.errors import HmacImplementationError, JvmHmacUnavailableError
from natlink.tokens import encode, hmac_sha256
from natlink.tokens.keys import KeyMaterial

# RFC 4231 section 4, test cases 1-7 (case 5 is truncated to 128 bits in the RFC).
RFC4231 = [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]

# Obviously fake test key: never use outside tests.
TEST_KEY = KeyMaterial("test:not-secret", b"test-key-not-secret-" + b"0" * 12)


def test_rfc4231_vectors_native_spark(spark):
    schema = T.StructType([T.StructField(n, T.BinaryType()) for n in ("msg", "ipad", "opad")])
    rows = [(bytearray(msg), *map(bytearray, hmac_sha256.hmac_pads(key))) for key, msg, _ in RFC4231]
    df = spark.createDataFrame(rows, schema)
    got = [r[0] for r in df.select(hmac_sha256.hmac_sha256_hex(F.col("msg"), F.col("ipad"), F.col("opad"))).collect()]
    assert len(got) == 7
    for (_, _, expected), actual in zip(RFC4231, got):
        assert actual.startswith(expected)


HMAC_INPUTS = [
    *[(key, msg) for key, msg, _ in RFC4231],
    (b"\x0b" * 20, None),  # NULL message -> NULL
    (TEST_KEY.subkey("field:given_name"), b""),  # empty message: a value, hashed
    (TEST_KEY.subkey("field:given_name"), "Zoë Ångström 山田 😀".encode("utf-8")),  # non-ASCII
    (TEST_KEY.subkey("field:given_name"), bytes(range(256)) * 3),  # every byte value, several blocks
    (b"", b"x" * 55),  # empty key; 55/56/64 bytes sit at SHA-256 padding boundaries
    (b"k", b"x" * 56),
    (b"k", b"x" * 64),
]


def _hmac_frame(spark, inputs=HMAC_INPUTS):
    schema = T.StructType([T.StructField(n, T.BinaryType()) for n in ("msg", "ipad", "opad")])
    rows = [(None if msg is None else bytearray(msg), *map(bytearray, hmac_sha256.hmac_pads(key))) for key, msg in inputs]
    return spark.createDataFrame(rows, schema)


def _hmac_with(impl: str, df, message=None):
    message = F.col("msg") if message is None else message
    return df.select(hmac_sha256.hmac_sha256_hex(message, F.col("ipad"), F.col("opad"), implementation=impl).alias("h"))


def _plan(df) -> str:
    return df._jdf.queryExecution().toString().lower()


def test_jvm_hmac_is_used_when_the_jar_is_present(spark):
    from natlink.spark.session import natlink_jar

    jar = natlink_jar()
    if jar is None:
        pytest.skip("natlink-jvm.jar is not built (make setup / python deploy/build_jvm.py); fallback tested below")
    assert jar in spark.conf.get("spark.jars").split(",")
    assert hmac_sha256.hmac_uses_jvm()
    plan = _plan(_hmac_with("auto", _hmac_frame(spark)))
    assert hmac_sha256.JVM_HMAC_NAME in plan and "sha2(" not in plan
    native = _plan(_hmac_with("native", _hmac_frame(spark)))
    assert hmac_sha256.JVM_HMAC_NAME not in native and "sha2(" in native


def test_jvm_and_native_hmac_agree_with_python_on_vectors_nulls_empty_and_non_ascii(spark):
    if not hmac_sha256.hmac_uses_jvm():
        pytest.skip("natlink-jvm.jar is not loadable in this session")
    df = _hmac_frame(spark)
    jvm = [r.h for r in _hmac_with("jvm", df).collect()]
    native = [r.h for r in _hmac_with("native", df).collect()]
    expected = [None if msg is None else hmac.new(key, msg, hashlib.sha256).hexdigest() for key, msg in HMAC_INPUTS]
    assert jvm == native == expected
    for (_, _, rfc), got in zip(RFC4231, jvm):
        assert got.startswith(rfc)
    # String messages (cast to their UTF-8 bytes), NULL pads, and many rows over a few pad pairs
    # (the JVM caches pad states per thread) agree as well.
    words = spark.createDataFrame([("Zoë",), ("",), (None,), ("O'BRIEN",)], "w string")
    keyed = words.crossJoin(_hmac_frame(spark, [(b"k1", b""), (b"k2", b"")]).drop("msg"))
    with_null_pad = keyed.unionByName(words.select("w", F.lit(None).cast("binary").alias("ipad"), F.lit(b"\x5c" * 64).alias("opad")))
    many = spark.range(1000).select(F.col("id").cast("string").alias("w")).crossJoin(
        _hmac_frame(spark, [(bytes([k]) * 32, b"") for k in range(70)]).drop("msg"))
    for frame in (with_null_pad, many):
        got = {impl: _hmac_with(impl, frame, F.col("w")).select(F.sum(F.hash("h")), F.count("h")).first() for impl in ("jvm", "native")}
        assert got["jvm"] == got["native"]
    assert _hmac_with("jvm", with_null_pad, F.col("w")).where(F.col("h").isNull()).count() == 2 + 4  # NULL words; every word with a NULL pad


def test_hmac_falls_back_to_native_when_the_class_is_not_loadable(spark, monkeypatch, caplog):
    # A class name never looked up before: its lookup (cached per SparkContext and class) is fresh.
    monkeypatch.setattr(hmac_sha256, "JVM_HMAC_CLASS", "natlink.NoSuchHmacClass")
    monkeypatch.delenv("NATLINK_HMAC", raising=False)
    df = _hmac_frame(spark)
    with caplog.at_level("INFO", logger="natlink.tokens.hmac_sha256"):
        assert not hmac_sha256.hmac_uses_jvm()
        out = _hmac_with("auto", df)
    lines = [r.getMessage() for r in caplog.records if r.name == "natlink.tokens.hmac_sha256"]
    assert len(lines) == 1 and "native sha2/concat" in lines[0] and "NoSuchHmacClass" in lines[0]
    assert "sha2(" in _plan(out) and hmac_sha256.JVM_HMAC_NAME not in _plan(out)
    expected = [None if msg is None else hmac.new(key, msg, hashlib.sha256).hexdigest() for key, msg in HMAC_INPUTS]
    assert [r.h for r in out.collect()] == expected
    # Demanding the JVM function now is a named error that carries no key material.
    with pytest.raises(JvmHmacUnavailableError, match="NATLINK_HMAC=jvm") as err:
        _hmac_with("jvm", df)
    for key, _ in HMAC_INPUTS:
        for pad in hmac_sha256.hmac_pads(key):
            assert pad.hex() not in str(err.value)
    monkeypatch.setenv("NATLINK_HMAC", "native")
    assert not hmac_sha256.hmac_uses_jvm()
    monkeypatch.setenv("NATLINK_HMAC", "bogus")
    with pytest.raises(HmacImplementationError, match="NATLINK_HMAC"):
        hmac_sha256.hmac_uses_jvm()


def test_the_choice_is_logged_once_per_spark_context_without_secrets(spark, monkeypatch, caplog):
    hmac_sha256.forget_jvm_hmac_lookup()
    monkeypatch.delenv("NATLINK_HMAC", raising=False)
    with caplog.at_level("DEBUG"):
        for _ in range(3):
            encode.tokenise(spark.createDataFrame([("SMITH",)], "v string"), TEST_KEY, keep=[],
                            specs=(encode.TokenSpec("v", "field:given_name", lambda: F.col("v")),), blooms=())
    lines = [r.getMessage() for r in caplog.records if r.name == "natlink.tokens.hmac_sha256"]
    assert len(lines) == 1 and lines[0].startswith("HMAC-SHA256: ")
    text = caplog.text.lower()
    for secret in (TEST_KEY.subkey("field:given_name"), *hmac_sha256.hmac_pads(TEST_KEY.subkey("field:given_name"))):
        assert secret.hex() not in text


def test_the_implementation_is_an_argument_with_the_environment_as_its_default(spark, monkeypatch):
    monkeypatch.setenv("NATLINK_HMAC", " Native ")
    assert hmac_sha256.choose_hmac_implementation() == "native"
    assert hmac_sha256.choose_hmac_implementation("jvm") == "jvm"  # an argument wins over the environment
    monkeypatch.delenv("NATLINK_HMAC")
    assert hmac_sha256.choose_hmac_implementation() == "auto"
    monkeypatch.setenv("NATLINK_HMAC", "bogus")
    assert hmac_sha256.choose_hmac_implementation("native") == "native"
    df = spark.createDataFrame([("SMITH",)], "v string")
    spec = (encode.TokenSpec("v", "field:given_name", lambda: F.col("v")),)
    for bad in ("bogus", "JVM", ""):
        with pytest.raises(HmacImplementationError, match="HMAC implementation must be one of"):
            encode.tokenise(df, TEST_KEY, keep=[], specs=spec, blooms=(), hmac_implementation=bad)
    # The native path asked for explicitly is taken whatever NATLINK_HMAC says.
    out = encode.tokenise(df, TEST_KEY, keep=[], specs=spec, blooms=(), hmac_implementation="native")
    assert "sha2(" in _plan(out) and hmac_sha256.JVM_HMAC_NAME not in _plan(out)


def test_pads_never_reach_a_py4j_debug_log(spark):
    # key_frame hands the padded subkeys to the JVM through py4j, whose DEBUG lines echo every
    # command: a root logger at DEBUG must not copy them into a log file.
    import base64
    import logging

    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    py4j = logging.getLogger("py4j")
    handler, level = Grab(level=logging.DEBUG), py4j.level
    py4j.addHandler(handler)
    py4j.setLevel(logging.DEBUG)
    try:
        frame = hmac_sha256.key_frame(spark, TEST_KEY, ["field:given_name"])
        assert frame.count() == 1
        assert logging.getLogger("py4j").getEffectiveLevel() >= logging.INFO
    finally:
        py4j.removeHandler(handler)
        py4j.setLevel(level)
    inner, outer = hmac_sha256.hmac_pads(TEST_KEY.subkey("field:given_name"))
    text = "\n".join(records)
    for pad in (inner, outer):
        for needle in (pad.hex(), base64.b64encode(pad).decode()[:40], base64.b64encode(pad[7:]).decode()[4:40]):
            assert needle not in text
