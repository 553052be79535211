"""Keyed encodings of identifiers: which tokens and Bloom filters a record gets, and how.

Tokens
------
Every token is HMAC-SHA256 under a per-purpose subkey (:mod:`natlink.tokens.hmac_sha256`) of a
value normalised natively (:mod:`natlink.tokens.normalise`), as 64 lowercase hex characters.
:data:`TOKEN_SPECS` lists the token columns, :data:`BLOOM_SPECS` the Bloom filter columns, and
:func:`tokenise` replaces a frame's identifier columns by both.

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

No token leaves the linkage centre: research projects receive extracts with random per-project
person ids and allow-listed columns only (:mod:`natlink.outputs.extract`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.identifiers import BUILTIN, IdentifierKind, custom
from natlink.errors import EncodingSpecError, SchemaError
from natlink.tokens.hmac_sha256 import PadColumns, key_frame
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.normalise import (
    DATE_TYPES,
    letters,
    normalise_identifiers,
    nysiis,
    postcode_district,
    postcode_sector,
    soundex,
)

__all__ = [
    "BLOOM_PREFIX",
    "BLOOM_SPECS",
    "BloomSpec",
    "SCHEMA_VERSION",
    "TOKEN_SPECS",
    "TokenSpec",
    "bloom",
    "bloom_columns",
    "check_standardised_input",
    "column_purposes",
    "dice_sql",
    "key_purposes",
    "token_columns",
    "token_specs",
    "tokenise",
]

# Bump when any token or filter would change for the same input and key (golden tests pin it).
SCHEMA_VERSION = "natlink.tokens/2"
BLOOM_PREFIX = "bf_"


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
    return postcode_district(F.col(C.POSTCODE))


def _sector() -> Column:
    return postcode_sector(F.col(C.POSTCODE))


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


def _kind_value(name: str, kind: IdentifierKind, variant: str) -> Callable[[], Column]:
    def col() -> Column:  # built when the spec's value is, under an active Spark session
        return F.col(name)

    def swapped() -> Column:
        day, month = F.dayofmonth(col()), F.month(col())
        return F.when((day <= 12) & (day != month), _date_text(F.make_date(F.year(col()), day, month)))

    values: dict[str, Callable[[], Column]] = {
        "": (lambda: _date_text(col())) if kind.kind == "date" else col,
        "swapped": swapped,
        "year": lambda: F.year(col()).cast("string"),
        "month": lambda: F.month(col()).cast("string"),
        "day": lambda: F.dayofmonth(col()).cast("string"),
        "sector": lambda: postcode_sector(col()),
        "district": lambda: postcode_district(col()),
        "soundex": lambda: soundex(col()),
        "nysiis": lambda: nysiis(col()),
    }
    return values[variant]


def kind_specs(name: str, kind: IdentifierKind) -> list[TokenSpec]:
    """Token specs of a declared identifier (:mod:`natlink.config.identifiers`): ``tk_<name>`` and
    its kind's variants, each under the purpose ``id:<kind>:<token>`` (the swapped date under the
    date's own, so that they compare). The kind is part of the purpose, so identifiers of one name
    but different kinds never give equal tokens."""
    out = []
    for variant in kind.variants():
        token = name if not variant else f"{name}_{variant}"
        purpose = f"id:{kind.kind}:{name if variant == 'swapped' else token}"
        out.append(TokenSpec(token, purpose, _kind_value(name, kind, variant)))
    return out


def token_specs(identifiers: Mapping[str, IdentifierKind] | None = None) -> tuple[TokenSpec, ...]:
    """The token specs of a dataset's identifiers: :data:`TOKEN_SPECS` (the built-in six, always;
    NULL where a dataset lacks one) and those of its declared identifiers."""
    if identifiers is None:
        return TOKEN_SPECS
    return (*TOKEN_SPECS, *[spec for n, k in custom(identifiers).items() for spec in kind_specs(n, k)])


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
            raise EncodingSpecError(f"Bloom filter {self.name}: bits must be a power of two in [64, 65536], got {self.bits}")
        if not 1 <= self.hashes <= 16 or not 0 <= self.flips <= 16:
            raise EncodingSpecError(f"Bloom filter {self.name}: hashes must be 1-16 and flips 0-16")

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
    """Token column -> key purpose (recorded in manifests; each purpose has its own subkey)."""
    return {spec.column: spec.purpose for spec in specs}


def dice_sql(column: str, left: str = "_l", right: str = "_r") -> str:
    """SQL for the Dice coefficient of two position arrays (Splink ``_l``/``_r`` columns), valid in
    both Spark and DuckDB (``cardinality``, not Spark-only ``size``) so a model trains on either."""
    a, b = f"{column}{left}", f"{column}{right}"
    return f"(CAST(2 * cardinality(array_intersect({a}, {b})) AS DOUBLE) / (cardinality({a}) + cardinality({b})))"


# --------------------------------------------------------------------------------------------
# Keyed Bloom filters


def _chunks(hex_col: Column, count: int, bits: int) -> Column:
    """``count`` positions in [0, bits) from consecutive 16-bit chunks of a 64-hex-digit hash."""
    return F.transform(
        F.sequence(F.lit(0), F.lit(count - 1)),
        lambda j: F.pmod(F.conv(F.substring(hex_col, j * 4 + 1, 4), 16, 10).cast("int"), F.lit(bits)),
    )


def bloom(spec: BloomSpec, pads: PadColumns, value: Column, record_key: Column | None, prefix: str = "") -> Column:
    """The keyed, hardened Bloom filter of one normalised name as sorted distinct positions."""
    name = F.regexp_replace(value, r"[^\p{L}]", "")
    # Every pair of adjacent code points, in one pass over the name. (A lambda over sequence(1, n)
    # taking substring(padded, i, 2) evaluated the regex of ``padded`` again for every i and walked
    # the UTF-8 string from its start each time: quadratic, hours for a 1 MB value.)
    chars = F.split(F.concat(F.lit("_"), name, F.lit("_")), "")  # code points, never half a surrogate pair
    pairs = F.size(chars) - 1
    firsts, seconds = F.slice(chars, 1, pairs), F.slice(chars, 2, pairs)
    bigrams = F.array_distinct(F.zip_with(firsts, seconds, lambda a, b: F.concat(a, b)))
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


def key_purposes(specs: Sequence[TokenSpec] = TOKEN_SPECS, blooms: Sequence[BloomSpec] = BLOOM_SPECS) -> list[str]:
    """Every key purpose :func:`tokenise` derives a subkey for (sorted; without a project prefix)."""
    wanted = {s.purpose for s in specs} | {b.purpose for b in blooms}
    wanted |= {b.noise_purpose for b in blooms if b.flips}
    return sorted(wanted)


def check_standardised_input(
    df: DataFrame, keep: Sequence[str], specs: Sequence[TokenSpec], blooms: Sequence[BloomSpec],
    identifiers: Mapping[str, IdentifierKind] | None = None,
) -> None:
    """Schema checks before any Spark job: named errors, column names and types only."""
    present = {f.name: f.dataType for f in df.schema.fields}
    kinds = BUILTIN if identifiers is None else identifiers
    leaking = sorted(set(keep) & {*C.IDENTIFIERS, *kinds})
    if leaking:
        raise SchemaError(f"tokenise: 'keep' names plaintext identifier columns {leaking}; they are never carried over")
    missing = sorted(set(keep) - set(present))
    if missing:
        raise SchemaError(f"tokenise: columns to keep {missing} are missing; present: {sorted(present)}")
    for name in [n for n, k in kinds.items() if k.kind == "date" and n in present]:
        if not isinstance(present[name], DATE_TYPES):
            raise SchemaError(
                f"tokenise: column {name!r} is {present[name].simpleString()}; "
                "expected date (standardise parses dates before tokenise)"
            )
    if any(b.flips for b in blooms):
        need = [c for c in (C.DATASET, C.RECORD_ID) if c not in present]
        if need:
            raise SchemaError(f"tokenise: Bloom filter noise is keyed by {C.DATASET}/{C.RECORD_ID}; missing {need}")
    for b in blooms:
        if b.source not in present:
            raise SchemaError(f"tokenise: Bloom filter {b.column} needs column {b.source!r}; present: {sorted(present)}")


def normalised(df: DataFrame, kinds: Mapping[str, IdentifierKind] | None = None) -> DataFrame:
    """``df`` with its identifiers normalised (once) and the letters of names that the
    :data:`TOKEN_SPECS` values read: the input every ``spec.value()`` expects. ``kinds``: the
    dataset's identifiers and their kinds (None: the six built-in ones)."""
    kinds = BUILTIN if kinds is None else kinds
    identifiers = [c for c in kinds if c in df.columns]
    others = [c for c in df.columns if c not in identifiers]
    # Normalise once (ICU reflect is non-deterministic to Spark, so this projection is
    # materialised rather than inlined into every token that uses it).
    stage1 = df.select(*[F.col(c) for c in others], *normalise_identifiers(df, identifiers, kinds))
    # Letters of names (accents stripped) feed several phonetic codes: computed once, likewise.
    return stage1.select("*", *[letters(F.col(n)).alias(_LETTERS + n) for n in _NAME_COLUMNS if n in identifiers])


def tokenise(
    df: DataFrame,
    key: KeyMaterial,
    *,
    keep: Sequence[str],
    specs: Sequence[TokenSpec] = TOKEN_SPECS,
    blooms: Sequence[BloomSpec] = BLOOM_SPECS,
    project: str | None = None,
    hmac_implementation: str | None = None,
    identifiers: Mapping[str, IdentifierKind] | None = None,
) -> DataFrame:
    """Replace identifier columns by tokens and Bloom filters.

    ``identifiers``: the dataset's identifiers and kinds (None: the six built-in ones); give
    ``specs`` to match (:func:`token_specs`).

    ``keep`` lists non-identifying columns to carry over (never a canonical identifier).
    ``project`` derives every subkey per project (``project:NAME/...``), so tokens made for
    different projects never join. ``hmac_implementation``: "auto", "jvm" or "native"; None reads
    ``NATLINK_HMAC`` (:func:`natlink.tokens.hmac_sha256.choose_hmac_implementation`).
    """
    keep = list(keep)
    check_standardised_input(df, keep, specs, blooms, identifiers)
    prefix = f"project:{project}/" if project else ""
    purposes = key_purposes(specs, blooms)
    pads = PadColumns([prefix + p for p in purposes], hmac_implementation)
    keys = key_frame(df.sparkSession, key, [prefix + p for p in purposes])

    record_key = "__natlink_record_key"
    has_record = C.RECORD_ID in df.columns and C.DATASET in df.columns
    stage1 = normalised(df, identifiers)
    if has_record:
        stage1 = stage1.withColumn(record_key, F.concat_ws("\u001f", F.col(C.DATASET), F.col(C.RECORD_ID)))
    joined = stage1.crossJoin(F.broadcast(keys))
    token_cols = [pads.hmac(prefix + spec.purpose, spec.value()).alias(spec.column) for spec in specs]
    bloom_cols = [
        bloom(b, pads, F.col(b.source), F.col(record_key) if has_record else None, prefix).alias(b.column)
        for b in blooms
    ]
    return joined.select(*[F.col(c) for c in keep], *token_cols, *bloom_cols)
