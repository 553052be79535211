"""Keyed pseudonymisation: the only module that derives tokens.

Tokens
------
Every token is HMAC-SHA256 (RFC 2104) under a per-purpose HKDF subkey of the managed key
(:mod:`natlink.tokens.keys`), as 64 lowercase hex characters:

    HMAC(K, m) = SHA256((K0 xor opad) || SHA256((K0 xor ipad) || m))

K0 is the 32-byte subkey zero-padded to the 64-byte block. The padded keys travel as columns of
a one-row broadcast frame, never as literals, so no key-derived secret appears in a Spark plan,
``explain()`` text or event log. Two implementations give identical tokens:
* natlink's JVM function ``natlink.HmacSha256Hex`` (``jvm/``, shipped as ``natlink-jvm.jar``, put on
  ``spark.jars`` by :func:`natlink.spark.session.get_spark`): SHA-256 states after each pad computed once
  per pad pair and executor thread, two compressions per short value; used whenever the class is
  loadable;
* otherwise a composition of Spark's native ``sha2``/``concat``/``unhex`` (the fallback).
``NATLINK_HMAC=auto|jvm|native`` (or :func:`hmac_implementation`) overrides the choice.
(Measured in ``benchmarks/bench_tokenise.py``, also against an Arrow-vectorised ``mapInArrow``
with reused hashlib states.)

Before hashing, values are normalised natively so tokens do not depend on the standardiser:
Unicode NFC (ICU, bundled with Spark) and upper case, whitespace collapsed, '' -> NULL; NHS
numbers lose spaces and hyphens; postcodes are re-spaced as ``OUTWARD INWARD``.

Fuzzy variants
--------------
So that typos still link, each field also yields tokens of derived variants, each under its own
purpose (so a Soundex token can never equal a name token): first initials, Soundex and a native
NYSIIS-like code of names; year, month and day of birth separately and the day/month-swapped date
(under the date-of-birth purpose, since it must equal the other record's plain date); postcode
sector and district.

Bloom filters
-------------
Names are also encoded as keyed Bloom filters, stored as ``array<int>`` of set bit positions
(sorted, distinct) so native Spark SQL compares them: Dice = 2|A∩B| / (|A|+|B|)
(:func:`dice_sql`). Each bigram of the padded name (``_SMITH_`` -> ``_S``, ``SM``, ...) sets
``hashes`` positions taken from 16-bit chunks of its HMAC under the field's Bloom subkey, so
positions are key-dependent: without the key nobody can build the filter of a guessed name.

Hardening against frequency attacks: every record's filter then has ``flips`` positions flipped
(set <-> unset), chosen by an HMAC of the record's dataset and record id under a separate noise
subkey (a keyed, reproducible form of random bit flipping, "BLIP"). Why this choice:
* Attacks on field-level Bloom filters start by aligning the most frequent *filters* with the most
  frequent names, then learn which positions each bigram sets and decode rare names. With per-record
  noise, identical names no longer give identical filters, and position co-occurrence statistics
  are blurred, while Dice between two spellings of one name drops only a little (measured in
  ``benchmarks/bench_encodings_accuracy.py``).
* Balanced filters (a filter concatenated with its complement) hide the popcount but double the
  length and, stored as positions, make every record carry ``bits`` integers; XOR-folding halves
  the length but distorts Dice; salting positions with another attribute (e.g. year of birth)
  stops all matching whenever that attribute has an error. Keyed flips keep the arrays short and
  the comparison a plain Dice.
Residual risk, stated plainly: the exact name tokens are deterministic, so the frequency of each
name *token* is visible to whoever holds a token table; the key prevents dictionary reversal, not
frequency alignment of very common values. Low-cardinality tokens (sex, month, day, initial) are
likewise recognisable as a class by their counts, though not reversible without the key.

Project re-keying
-----------------
:func:`rekey` turns stored tokens into project-specific pseudonyms without plaintext:
``HMAC(project subkey, token bytes)`` per column, with subkeys derived per project and per field
purpose from a project key, so two projects' extracts share no values and cannot be joined.
Bloom filter columns are dropped from project extracts (a position permutation would keep their
set structure, which is enough to join them).
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.errors import SchemaError
from natlink.tokens.keys import KeyMaterial

__all__ = [
    "BLOOM_PREFIX",
    "BLOOM_SPECS",
    "BloomSpec",
    "SCHEMA_VERSION",
    "TOKEN_SPECS",
    "TokenSpec",
    "bloom",
    "bloom_columns",
    "column_purposes",
    "dice_sql",
    "hmac_implementation",
    "hmac_sha256_hex",
    "key_frame",
    "normalise_identifiers",
    "rekey",
    "token_columns",
    "tokenise",
]

# Bump when any token or filter would change for the same input and key (golden tests pin it).
SCHEMA_VERSION = "natlink.tokens/2"
BLOOM_PREFIX = "bf_"

log = logging.getLogger(__name__)

_BLOCK = 64
_PAD_COL = "__natlink_pad_"
_ICU_NORMALIZER = "com.ibm.icu.text.Normalizer"


# --------------------------------------------------------------------------------------------
# Native normalisation (no Python UDFs)


def _icu(method: str, col: Column) -> Column:
    # reflect() is non-deterministic to Spark, so callers materialise its result in one projection.
    return F.when(col.isNotNull(), F.reflect(F.lit(_ICU_NORMALIZER), F.lit(method), col, F.lit(False)))


def _is_ascii(col: Column) -> Column:
    # Cheap test that lets ASCII values (most of them) skip the ICU calls.
    return F.octet_length(col) == F.length(col)


def _empty_to_null(col: Column) -> Column:
    return F.when(col != "", col)


def normalise_text(col: Column) -> Column:
    """NFC, upper case, whitespace (incl. Unicode spaces) collapsed and trimmed, '' -> NULL."""
    spaced = F.regexp_replace(F.regexp_replace(col, r"[\s\p{Z}]+", " "), r"^ | $", "")
    upper = F.when(_is_ascii(spaced), F.upper(spaced)).otherwise(_icu("compose", F.upper(_icu("compose", spaced))))
    return _empty_to_null(upper)


def normalise_nhs_number(col: Column) -> Column:
    return _empty_to_null(F.regexp_replace(col, r"[\s\p{Z}\-]", ""))


def normalise_code(col: Column) -> Column:
    return _empty_to_null(F.upper(F.trim(col)))


def _postcode_parts(col: Column) -> tuple[Column, Column]:
    """(district, sector) of a normalised postcode ``OUTWARD INWARD``; NULL unless it has that shape."""
    outward = F.substring_index(col, " ", 1)
    inward = F.substring_index(col, " ", -1)
    shaped = col.contains(" ")
    return F.when(shaped, outward), F.when(shaped, F.concat(outward, F.lit(" "), F.substring(inward, 1, 1)))


def letters(col: Column) -> Column:
    """A-Z only, accents stripped (NFD, marks removed): the input of phonetic codes."""
    stripped = F.when(_is_ascii(col), col).otherwise(F.regexp_replace(_icu("decompose", col), r"\p{M}", ""))
    return _empty_to_null(F.regexp_replace(stripped, r"[^A-Z]", ""))


def soundex(col: Column, *, letters_of: Column | None = None) -> Column:
    """Spark's Soundex of the letters of a normalised name (``letters_of``: precomputed letters)."""
    return F.soundex(letters(col) if letters_of is None else letters_of)


def nysiis(col: Column, *, letters_of: Column | None = None) -> Column:
    """A native approximation of NYSIIS (New York State Identification and Intelligence System).

    Follows the published rules with regular expressions: prefix and suffix translations,
    vowels to A, consonant folds, H/W dropped where NYSIIS copies the previous letter, runs
    collapsed, final S / A removed and final AY -> Y. Not truncated. It is a blocking and
    comparison aid, not a reference implementation.
    """
    x = letters(col) if letters_of is None else letters_of
    for pattern, repl in ((r"^MAC", "MCC"), (r"^KN", "NN"), (r"^K", "C"), (r"^P[HF]", "FF"), (r"^SCH", "SSS")):
        x = F.regexp_replace(x, pattern, repl)
    x = F.regexp_replace(F.regexp_replace(x, r"(EE|IE)$", "Y"), r"(DT|RT|RD|NT|ND)$", "D")
    first = F.substring(x, 1, 1)
    rest = F.regexp_replace(x, r"^.", "")
    for pattern, repl in (
        (r"EV", "AF"), (r"[AEIOU]", "A"), (r"Q", "G"), (r"Z", "S"), (r"M", "N"), (r"KN", "N"),
        (r"K", "C"), (r"SCH", "SSS"), (r"PH", "FF"), (r"(?<=[^A])H|H(?=[^A]|$)", ""), (r"(?<=A)W", ""),
    ):
        rest = F.regexp_replace(rest, pattern, repl)
    code = F.regexp_replace(F.concat(first, rest), r"(.)\1+", "$1")
    code = F.regexp_replace(F.regexp_replace(code, r"S$", ""), r"AY$", "Y")
    return _empty_to_null(F.regexp_replace(code, r"(?<=.)A$", ""))


def normalise_postcode(col: Column) -> Column:
    """``OUTWARD INWARD`` for 5-7 alphanumerics (the UK shapes); otherwise the compact form."""
    compact = F.regexp_replace(F.upper(col), r"[^A-Z0-9]", "")
    n = F.length(compact)
    outward = F.substring(compact, F.lit(1), n - 3)
    spaced = F.concat(outward, F.lit(" "), F.substring(compact, -3, 3))
    return _empty_to_null(F.when((n >= 5) & (n <= 7), spaced).otherwise(compact))


_NORMALISERS: dict[str, Callable[[Column], Column]] = {
    C.NHS_NUMBER: normalise_nhs_number,
    C.GIVEN_NAME: normalise_text,
    C.FAMILY_NAME: normalise_text,
    C.SEX: normalise_code,
    C.POSTCODE: normalise_postcode,
}
_DATE_TYPES = (T.DateType, T.TimestampType, T.TimestampNTZType)


def normalise_identifiers(df: DataFrame, columns: Iterable[str] | None = None) -> list[Column]:
    """Normalised canonical identifier columns (same names) of ``df``, for one projection."""
    out = []
    for name in columns if columns is not None else [c for c in C.IDENTIFIERS if c in df.columns]:
        if name == C.DATE_OF_BIRTH:
            out.append(F.to_date(F.col(name)).alias(name))
        else:
            out.append(_NORMALISERS[name](F.col(name).cast("string")).alias(name))
    return out


# --------------------------------------------------------------------------------------------
# Token specifications


@dataclass(frozen=True)
class TokenSpec:
    """One token column ``tk_<name>``: the key purpose (same purpose = comparable) and its input.

    ``value`` builds the input from the *normalised* canonical columns.
    """

    name: str
    purpose: str
    value: Callable[[], Column]

    @property
    def column(self) -> str:
        return C.token(self.name)


_LETTERS = "__natlink_letters_"
_NAME_COLUMNS = (C.GIVEN_NAME, C.FAMILY_NAME)


def _letters_col(name: str) -> Column:
    """The letters of a normalised name, computed once in tokenise's first projection."""
    return F.col(_LETTERS + name)


def _date_text(col: Column) -> Column:
    return F.date_format(col, "yyyy-MM-dd")


def _dob_swapped() -> Column:
    dob = F.col(C.DATE_OF_BIRTH)
    day, month = F.dayofmonth(dob), F.month(dob)
    # Only dates that stay valid when day and month trade places, and that actually change.
    swapped = F.make_date(F.year(dob), day, month)
    return F.when((day <= 12) & (day != month), _date_text(swapped))


def _district() -> Column:
    return _postcode_parts(F.col(C.POSTCODE))[0]


def _sector() -> Column:
    return _postcode_parts(F.col(C.POSTCODE))[1]


# Derived variants share the key purpose of the field they must compare against (the swapped
# date of birth is compared with the plain date of birth); every other variant has its own.
TOKEN_SPECS: tuple[TokenSpec, ...] = (
    TokenSpec("nhs_number", "field:nhs_number", lambda: F.col(C.NHS_NUMBER)),
    TokenSpec("given_name", "field:given_name", lambda: F.col(C.GIVEN_NAME)),
    TokenSpec("given_initial", "field:given_initial", lambda: F.substring(C.GIVEN_NAME, 1, 1)),
    TokenSpec("given_soundex", "field:given_soundex", lambda: soundex(F.col(C.GIVEN_NAME), letters_of=_letters_col(C.GIVEN_NAME))),
    TokenSpec("given_nysiis", "field:given_nysiis", lambda: nysiis(F.col(C.GIVEN_NAME), letters_of=_letters_col(C.GIVEN_NAME))),
    TokenSpec("family_name", "field:family_name", lambda: F.col(C.FAMILY_NAME)),
    TokenSpec("family_initial", "field:family_initial", lambda: F.substring(C.FAMILY_NAME, 1, 1)),
    TokenSpec("family_soundex", "field:family_soundex", lambda: soundex(F.col(C.FAMILY_NAME), letters_of=_letters_col(C.FAMILY_NAME))),
    TokenSpec("family_nysiis", "field:family_nysiis", lambda: nysiis(F.col(C.FAMILY_NAME), letters_of=_letters_col(C.FAMILY_NAME))),
    TokenSpec("dob", "field:date_of_birth", lambda: _date_text(F.col(C.DATE_OF_BIRTH))),
    TokenSpec("dob_swapped", "field:date_of_birth", _dob_swapped),
    TokenSpec("dob_year", "field:dob_year", lambda: F.year(C.DATE_OF_BIRTH).cast("string")),
    TokenSpec("dob_month", "field:dob_month", lambda: F.month(C.DATE_OF_BIRTH).cast("string")),
    TokenSpec("dob_day", "field:dob_day", lambda: F.dayofmonth(C.DATE_OF_BIRTH).cast("string")),
    TokenSpec("sex", "field:sex", lambda: F.col(C.SEX)),
    TokenSpec("postcode", "field:postcode", lambda: F.col(C.POSTCODE)),
    TokenSpec("postcode_sector", "field:postcode_sector", _sector),
    TokenSpec("postcode_district", "field:postcode_district", _district),
)


@dataclass(frozen=True)
class BloomSpec:
    """A keyed Bloom filter ``bf_<name>`` of the bigrams of one name column.

    bits: filter length m (a power of two up to 65536, so 16-bit chunks map uniformly);
    hashes: positions set per bigram (1-16: chunks of one HMAC);
    flips: positions flipped per record by keyed noise (0-16; 0 disables the hardening).
    """

    name: str
    source: str
    bits: int = 1024
    hashes: int = 10
    flips: int = 8

    def __post_init__(self) -> None:
        if self.bits < 64 or self.bits > 65536 or self.bits & (self.bits - 1):
            raise ValueError(f"Bloom filter {self.name}: bits must be a power of two in [64, 65536], got {self.bits}")
        if not 1 <= self.hashes <= 16 or not 0 <= self.flips <= 16:
            raise ValueError(f"Bloom filter {self.name}: hashes must be 1-16 and flips 0-16")

    @property
    def column(self) -> str:
        return f"{BLOOM_PREFIX}{self.name}"

    @property
    def purpose(self) -> str:
        return f"bloom:{self.name}"

    @property
    def noise_purpose(self) -> str:
        return f"bloom-noise:{self.name}"


BLOOM_SPECS: tuple[BloomSpec, ...] = (
    BloomSpec("given_name", C.GIVEN_NAME),
    BloomSpec("family_name", C.FAMILY_NAME),
)


def token_columns(specs: Sequence[TokenSpec] = TOKEN_SPECS) -> list[str]:
    return [spec.column for spec in specs]


def bloom_columns(blooms: Sequence[BloomSpec] = BLOOM_SPECS) -> list[str]:
    return [b.column for b in blooms]


def column_purposes(specs: Sequence[TokenSpec] = TOKEN_SPECS) -> dict[str, str]:
    """Token column -> key purpose (recorded in manifests; re-keying keeps purposes apart)."""
    return {spec.column: spec.purpose for spec in specs}


def dice_sql(column: str, left: str = "_l", right: str = "_r") -> str:
    """SQL for the Dice coefficient of two position arrays (Splink ``_l``/``_r`` columns), valid in
    both Spark and DuckDB (``cardinality``, not Spark-only ``size``) so a model trains on either."""
    a, b = f"{column}{left}", f"{column}{right}"
    return f"(CAST(2 * cardinality(array_intersect({a}, {b})) AS DOUBLE) / (cardinality({a}) + cardinality({b})))"


# --------------------------------------------------------------------------------------------
# HMAC-SHA256 from native functions


def _pads(subkey: bytes) -> tuple[bytes, bytes]:
    """RFC 2104 inner and outer pads; keys longer than the block are hashed first."""
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
        inner, outer = _pads(key.subkey(purpose))
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


JVM_HMAC_CLASS = "natlink.HmacSha256Hex"
JVM_HMAC_NAME = "natlink_hmac_sha256_hex"  # HmacSha256Hex.NAME: what plans show for the function
HMAC_IMPLEMENTATIONS = ("auto", "jvm", "native")
_hmac_override: str | None = None
# (SparkContext, the JVM UserDefinedFunction or None when natlink's class is not loadable).
_jvm_hmac_cache: tuple[object, object] | None = None


@contextmanager
def hmac_implementation(name: str) -> Iterator[None]:
    """Within the block, build HMAC columns with ``name``: "auto" (the JVM function when its class
    is loadable, else native), "jvm" (required: error when not loadable) or "native"."""
    global _hmac_override
    if name not in HMAC_IMPLEMENTATIONS:
        raise ValueError(f"HMAC implementation must be one of {HMAC_IMPLEMENTATIONS}, got {name!r}")
    before, _hmac_override = _hmac_override, name
    try:
        yield
    finally:
        _hmac_override = before


def _hmac_choice() -> str:
    choice = _hmac_override or os.environ.get("NATLINK_HMAC", "auto").strip().lower() or "auto"
    if choice not in HMAC_IMPLEMENTATIONS:
        raise ValueError(f"NATLINK_HMAC must be one of {HMAC_IMPLEMENTATIONS}, got {choice!r}")
    return choice


def _jvm_hmac_udf():
    """natlink's JVM HMAC function as a JVM ``UserDefinedFunction`` of the running SparkContext,
    or None (class not on the classpath, no SparkContext, Spark Connect). Decided, and logged
    once, per SparkContext."""
    global _jvm_hmac_cache
    try:
        from pyspark import SparkContext
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    sc = SparkContext._active_spark_context
    if sc is None:
        return None
    if _jvm_hmac_cache is not None and _jvm_hmac_cache[0] is sc:
        return _jvm_hmac_cache[1]
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
    _jvm_hmac_cache = (sc, udf)
    return udf


def hmac_uses_jvm() -> bool:
    """Whether :func:`hmac_sha256_hex` builds natlink's JVM function now (else the native one)."""
    choice = _hmac_choice()
    return choice != "native" and _jvm_hmac_udf() is not None


def _native_hmac(message: Column, inner_pad: Column, outer_pad: Column) -> Column:
    inner = F.unhex(F.sha2(F.concat(inner_pad, message.cast("binary")), 256))
    return F.sha2(F.concat(outer_pad, inner), 256)


def hmac_sha256_hex(message: Column, inner_pad: Column, outer_pad: Column) -> Column:
    """HMAC-SHA256 of a binary or string column as 64 lowercase hex characters (NULL stays NULL).

    ``inner_pad``/``outer_pad`` are binary columns (see :func:`key_frame`), never literals. Uses
    natlink's JVM function when its class is loadable in the session, else Spark's native
    ``sha2``/``concat``/``unhex``; both give identical results (``NATLINK_HMAC`` chooses)."""
    choice = _hmac_choice()
    udf = _jvm_hmac_udf() if choice != "native" else None
    if udf is None:
        if choice == "jvm":
            raise RuntimeError(
                f"NATLINK_HMAC=jvm but {JVM_HMAC_CLASS} is not loadable in this Spark session "
                "(build natlink-jvm.jar: make setup, or python deploy/build_jvm.py)"
            )
        return _native_hmac(message, inner_pad, outer_pad)
    from pyspark import SparkContext
    from pyspark.sql.classic.column import Column as ClassicColumn, _to_java_column, _to_seq

    args = [message.cast("binary"), inner_pad, outer_pad]
    return ClassicColumn(udf.apply(_to_seq(SparkContext._active_spark_context, args, _to_java_column)))


class _Pads:
    """Maps purposes to the pad columns of a key frame."""

    def __init__(self, purposes: Sequence[str]) -> None:
        self.index = {p: i for i, p in enumerate(purposes)}

    def hmac(self, purpose: str, message: Column) -> Column:
        i = self.index[purpose]
        return hmac_sha256_hex(message, F.col(f"{_PAD_COL}i{i}"), F.col(f"{_PAD_COL}o{i}"))


def _chunks(hex_col: Column, count: int, bits: int) -> Column:
    """``count`` positions in [0, bits) from consecutive 16-bit chunks of a 64-hex-digit hash."""
    return F.transform(
        F.sequence(F.lit(0), F.lit(count - 1)),
        lambda j: F.pmod(F.conv(F.substring(hex_col, j * 4 + 1, 4), 16, 10).cast("int"), F.lit(bits)),
    )


def bloom(spec: BloomSpec, pads: _Pads, value: Column, record_key: Column | None, prefix: str = "") -> Column:
    """The keyed, hardened Bloom filter of one normalised name as sorted distinct positions."""
    name = F.regexp_replace(value, r"[^\p{L}]", "")
    padded = F.concat(F.lit("_"), name, F.lit("_"))
    bigrams = F.array_distinct(
        F.transform(F.sequence(F.lit(1), F.length(padded) - 1), lambda i: F.substring(padded, i, 2))
    )
    hashes = F.transform(bigrams, lambda b: pads.hmac(prefix + spec.purpose, b))
    positions = F.array_distinct(F.flatten(F.transform(hashes, lambda h: _chunks(h, spec.hashes, spec.bits))))
    if spec.flips and record_key is not None:
        noise = F.array_distinct(_chunks(pads.hmac(prefix + spec.noise_purpose, record_key), spec.flips, spec.bits))
        # Symmetric difference; the one-element transform binds both arrays so each is computed once.
        bound = F.array(F.struct(positions.alias("p"), noise.alias("n")))
        positions = F.element_at(
            F.transform(bound, lambda s: F.array_union(F.array_except(s["p"], s["n"]), F.array_except(s["n"], s["p"]))),
            1,
        )
    return F.when(F.length(name) > 0, F.array_sort(positions))


# --------------------------------------------------------------------------------------------
# Tokenise


def _purposes_needed(specs: Sequence[TokenSpec], blooms: Sequence[BloomSpec]) -> list[str]:
    wanted = {s.purpose for s in specs} | {b.purpose for b in blooms}
    wanted |= {b.noise_purpose for b in blooms if b.flips}
    return sorted(wanted)


def check_input(df: DataFrame, keep: Sequence[str], specs: Sequence[TokenSpec], blooms: Sequence[BloomSpec]) -> None:
    """Schema checks before any Spark job: named errors, column names and types only."""
    present = {f.name: f.dataType for f in df.schema.fields}
    leaking = sorted(set(keep) & set(C.IDENTIFIERS))
    if leaking:
        raise SchemaError(f"tokenise: 'keep' names plaintext identifier columns {leaking}; they are never carried over")
    missing = sorted(set(keep) - set(present))
    if missing:
        raise SchemaError(f"tokenise: columns to keep {missing} are missing; present: {sorted(present)}")
    if C.DATE_OF_BIRTH in present and not isinstance(present[C.DATE_OF_BIRTH], _DATE_TYPES):
        raise SchemaError(
            f"tokenise: column {C.DATE_OF_BIRTH!r} is {present[C.DATE_OF_BIRTH].simpleString()}; "
            "expected date (standardise parses dates before tokenise)"
        )
    if any(b.flips for b in blooms):
        need = [c for c in (C.DATASET, C.RECORD_ID) if c not in present]
        if need:
            raise SchemaError(f"tokenise: Bloom filter noise is keyed by {C.DATASET}/{C.RECORD_ID}; missing {need}")
    for b in blooms:
        if b.source not in present:
            raise SchemaError(f"tokenise: Bloom filter {b.column} needs column {b.source!r}; present: {sorted(present)}")


def tokenise(
    df: DataFrame,
    key: KeyMaterial,
    *,
    keep: Sequence[str],
    specs: Sequence[TokenSpec] = TOKEN_SPECS,
    blooms: Sequence[BloomSpec] = BLOOM_SPECS,
    project: str | None = None,
) -> DataFrame:
    """Replace identifier columns by tokens and Bloom filters.

    ``keep`` lists non-identifying columns to carry over (never a canonical identifier).
    ``project`` derives every subkey per project (``project:NAME/...``), so tokens made for
    different projects never join.
    """
    keep = list(keep)
    check_input(df, keep, specs, blooms)
    prefix = f"project:{project}/" if project else ""
    purposes = _purposes_needed(specs, blooms)
    pads = _Pads([prefix + p for p in purposes])
    keys = key_frame(df.sparkSession, key, [prefix + p for p in purposes])

    record_key = "__natlink_record_key"
    has_record = C.RECORD_ID in df.columns and C.DATASET in df.columns
    identifiers = [c for c in C.IDENTIFIERS if c in df.columns]
    others = [c for c in df.columns if c not in identifiers]
    # Stage 1: normalise once (ICU reflect is non-deterministic to Spark, so this projection is
    # materialised rather than inlined into every token that uses it).
    stage1 = df.select(
        *[F.col(c) for c in others],
        *normalise_identifiers(df, identifiers),
        *([F.concat_ws("\u001f", F.col(C.DATASET), F.col(C.RECORD_ID)).alias(record_key)] if has_record else []),
    )
    # Letters of names (accents stripped) feed several phonetic codes: computed once, likewise.
    stage1 = stage1.select("*", *[letters(F.col(n)).alias(_LETTERS + n) for n in _NAME_COLUMNS if n in identifiers])
    joined = stage1.crossJoin(F.broadcast(keys))
    token_cols = [pads.hmac(prefix + spec.purpose, spec.value()).alias(spec.column) for spec in specs]
    bloom_cols = [
        bloom(b, pads, F.col(b.source), F.col(record_key) if has_record else None, prefix).alias(b.column)
        for b in blooms
    ]
    return joined.select(*[F.col(c) for c in keep], *token_cols, *bloom_cols)


def rekey(
    df: DataFrame,
    purposes: Mapping[str, str],
    project_key: KeyMaterial,
    *,
    project: str,
    ids: Sequence[str] = (C.RECORD_ID, C.PERSON_ID),
    keep: Sequence[str] | None = None,
) -> DataFrame:
    """Project pseudonyms from stored tokens, without plaintext.

    ``purposes`` maps each token column to its key purpose (from the manifest): columns of one
    purpose stay comparable within the project. ``ids`` (record and person ids, when present) are
    pseudonymised too, since a shared record id would join two projects' extracts. Bloom filter
    columns are dropped. ``keep`` (default: every other column) is carried over unchanged.
    """
    if not project or "/" in project:
        raise SchemaError(f"rekey: project name {project!r} must be non-empty and contain no '/'")
    unknown = sorted(c for c in df.columns if C.is_token(c) and c not in purposes)
    if unknown:
        raise SchemaError(f"rekey: token columns {unknown} have no purpose in the manifest")
    tokens = [c for c in df.columns if c in purposes]
    id_cols = [c for c in ids if c in df.columns]
    dropped = {*tokens, *id_cols, *(c for c in df.columns if c.startswith(BLOOM_PREFIX))}
    carried = list(keep) if keep is not None else [c for c in df.columns if c not in dropped]
    leaking = sorted(set(carried) & (set(C.IDENTIFIERS) | dropped))
    if leaking:
        raise SchemaError(f"rekey: cannot carry {leaking} into a project extract")

    needed = sorted({f"rekey:{project}/{purposes[c]}" for c in tokens} | {f"rekey:{project}/id:{c}" for c in id_cols})
    pads = _Pads(needed)
    joined = df.crossJoin(F.broadcast(key_frame(df.sparkSession, project_key, needed)))
    out = [F.col(c) for c in carried]
    out += [pads.hmac(f"rekey:{project}/id:{c}", F.col(c).cast("string")).alias(c) for c in id_cols]
    out += [pads.hmac(f"rekey:{project}/{purposes[c]}", F.unhex(F.col(c))).alias(c) for c in tokens]
    return joined.select(*out)
