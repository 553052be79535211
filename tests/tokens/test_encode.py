"""Keyed encodings: golden tokens, normalisation, fuzzy variants, Bloom filters, disjointness
across fields and projects, the NHS-number dictionary attack, and identical tokens on both HMAC paths."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

import pytest
from pyspark.sql import functions as F

from natlink.errors import EncodingSpecError, SchemaError
from natlink.tokens import encode, hmac_sha256
from natlink.tokens.keys import KeyMaterial

# Obviously fake test keys: never use outside tests.
TEST_KEY = KeyMaterial("test:not-secret", b"test-key-not-secret-" + b"0" * 12)
GOLDEN_KEY = KeyMaterial("test:not-secret-golden", b"test-key-not-secret-golden-00000")
OTHER_KEY = KeyMaterial("test:not-secret-other", b"test-key-not-secret-other-000000")

# Golden tokens of one fixed record under GOLDEN_KEY (token schema natlink.tokens/2). They pin
# token stability across versions: if one changes, every stored token table would stop linking
# with new ones, so a change here needs a new SCHEMA_VERSION and a re-tokenisation plan.
GOLDEN_RECORD = ("golden", "R1", "999 000 0018", "Zoë", "O'Brien-Smith", "1984-03-07", "F", "sw1a 1aa")
GOLDEN_TOKENS = {
    "tk_nhs_number": "4a01d76bb0a871562b777d49bc5f7c7de6c9f8c2a49fe6d1e64a6446e1acedad",
    "tk_given_name": "1d9e383f5067370522179965b6ae2bf79a24f2a061776f4195ed249efdd974d4",
    "tk_given_initial": "bbb813595d5b336cf34ce8b4825066f6cdc7a06d04c00a49b2a1c2d9299b6009",
    "tk_given_soundex": "45eba59a505c77e5269abce1e3e1b152c306265ac79bd0a3f17d37145781ef23",
    "tk_given_nysiis": "d85b417dd41cb395cdbd8ac186db5770a1cc4856cc150cc09d1316414f7b2145",
    "tk_family_name": "06a5f11e4b3d874ea2a1b4e367ee7d4382835cb103309e1c5c6bbff35d8b72c9",
    "tk_family_initial": "1cd6ac6ac1ed176db4f4b7b48a234c7d7e84f892fdbd1d4a0976a27b4a409a24",
    "tk_family_soundex": "158b76d8222f909e79e043064d2c700a853514e30ed4ae6dadc54c31f7197035",
    "tk_family_nysiis": "9eb9cf51df807b45821ee6a543ba915b17f7f99dd729329418d17276153e5009",
    "tk_dob": "6db8f426f8a3dc2e5045f1cd3dfd15f8110ec06bde51fbd4b81f6149cd40d8cb",
    "tk_dob_swapped": "71fb0c52b7a6d9b52185953817064ec596f75b01ae058aaa8440220d94cbb6cf",
    "tk_dob_year": "8ff786e95ad4d6b008cf0e326f0a863f018d8c0ca382ddfbc29936e6a12b3ec8",
    "tk_dob_month": "d88d675bc977b80f37d82214094579484bc569ed2057fc3aef6a56710189dfd8",
    "tk_dob_day": "3ceb5a7be41aee471a8250c0d0d9746b69e53723f6699a229a487b770410ad3b",
    "tk_sex": "97f7aafb3f932f51ce5a73fb68cff97508ab53de1e838ce38d3d544cc16d8589",
    "tk_postcode": "351e4e50d2ddde94d8d7efefc34d25900e670e7638bef94a8dfadb50762c04f9",
    "tk_postcode_sector": "c131e43f15debfb3a349412d83ce7b3dda36f574c0475ed231df8047de510a08",
    "tk_postcode_district": "b792deed3d47accfc5cdfcca944ab55120755c3b2d6f7573f3d735713a55e50e",
}
GOLDEN_BF_GIVEN_NAME = [
    24, 55, 59, 70, 73, 88, 102, 114, 144, 212, 248, 256, 270, 308, 310, 313,
    356, 362, 372, 413, 429, 433, 434, 437, 473, 500, 507, 509, 543, 554, 559, 568,
    572, 588, 591, 619, 658, 677, 689, 733, 745, 754, 763, 857, 873, 906, 996, 1018,
]
GOLDEN_BF_FAMILY_NAME = [
    6, 9, 14, 15, 26, 35, 40, 48, 51, 52, 67, 78, 85, 94, 101, 111,
    114, 118, 134, 137, 141, 144, 146, 150, 153, 160, 193, 214, 257, 261, 266, 274,
    275, 298, 307, 315, 323, 325, 328, 341, 375, 378, 379, 381, 402, 403, 404, 419,
    434, 437, 447, 455, 458, 487, 489, 494, 500, 503, 518, 519, 525, 526, 543, 550,
    553, 558, 562, 570, 580, 584, 606, 647, 649, 665, 674, 693, 694, 695, 711, 732,
    744, 747, 752, 771, 773, 774, 778, 780, 785, 800, 803, 804, 819, 822, 829, 831,
    835, 851, 853, 863, 864, 875, 890, 904, 920, 938, 945, 952, 961, 964, 968, 970,
    983, 992, 994, 1001, 1002, 1010, 1018,
]


def py_hmac(key: KeyMaterial, purpose: str, message: bytes) -> str:
    return hmac.new(key.subkey(purpose), message, hashlib.sha256).hexdigest()


def py_bloom(key: KeyMaterial, spec: encode.BloomSpec, name: str, record_key: bytes | None) -> list[int]:
    """Independent Python statement of the Bloom filter definition in encode.py."""
    padded = "_" + "".join(ch for ch in name if ch.isalpha()) + "_"
    bigrams = {padded[i:i + 2] for i in range(len(padded) - 1)}
    positions = set()
    for bigram in bigrams:
        digest = py_hmac(key, spec.purpose, bigram.encode("utf-8"))
        positions |= {int(digest[4 * j:4 * j + 4], 16) % spec.bits for j in range(spec.hashes)}
    if spec.flips and record_key is not None:
        digest = py_hmac(key, spec.noise_purpose, record_key)
        noise = {int(digest[4 * j:4 * j + 4], 16) % spec.bits for j in range(spec.flips)}
        positions ^= noise
    return sorted(positions)


def dice(a, b) -> float:
    return 2 * len(set(a) & set(b)) / (len(a) + len(b))


def test_tokens_equal_python_hmac_and_null_stays_null(spark):
    df = spark.createDataFrame([("ALICE",), (None,), ("",)], "given_name string")
    spec = (encode.TokenSpec("given_name", "field:given_name", lambda: F.col("given_name")),)
    rows = encode.tokenise(df, TEST_KEY, keep=[], specs=spec, blooms=()).collect()
    assert rows[0][0] == py_hmac(TEST_KEY, "field:given_name", b"ALICE")
    assert rows[1][0] is None
    assert rows[2][0] is None  # '' is no value, never the token of ''


def test_fields_get_disjoint_tokens_and_no_key_in_plan(spark):
    df = spark.createDataFrame([("SMITH",)], "v string")
    specs = (
        encode.TokenSpec("a", "field:given_name", lambda: F.col("v")),
        encode.TokenSpec("b", "field:family_name", lambda: F.col("v")),
    )
    out = encode.tokenise(df, TEST_KEY, keep=[], specs=specs, blooms=())
    a, b = out.first()
    assert a != b
    plan = out._jdf.queryExecution().toString().lower()
    for purpose in ("field:given_name", "field:family_name"):
        inner, outer = hmac_sha256.hmac_pads(TEST_KEY.subkey(purpose))
        assert inner.hex() not in plan and outer.hex() not in plan
        assert TEST_KEY.subkey(purpose).hex() not in plan


def test_golden_tokens_and_bloom_filters(spark, identities):
    row = encode.tokenise(identities([GOLDEN_RECORD]), GOLDEN_KEY, keep=[]).first().asDict()
    assert {k: v for k, v in row.items() if k.startswith("tk_")} == GOLDEN_TOKENS
    assert row["bf_given_name"] == GOLDEN_BF_GIVEN_NAME
    assert row["bf_family_name"] == GOLDEN_BF_FAMILY_NAME
    # The goldens are not self-referential: they equal an independent Python HMAC of the
    # normalised values (NFC upper case, NHS digits only, postcode re-spaced, ISO dates).
    expected_inputs = {
        "tk_nhs_number": ("field:nhs_number", "9990000018"),
        "tk_given_name": ("field:given_name", "ZOË"),
        "tk_given_initial": ("field:given_initial", "Z"),
        "tk_given_soundex": ("field:given_soundex", "Z000"),
        "tk_family_name": ("field:family_name", "O'BRIEN-SMITH"),
        "tk_dob": ("field:date_of_birth", "1984-03-07"),
        "tk_dob_swapped": ("field:date_of_birth", "1984-07-03"),
        "tk_dob_year": ("field:dob_year", "1984"),
        "tk_dob_month": ("field:dob_month", "3"),
        "tk_dob_day": ("field:dob_day", "7"),
        "tk_sex": ("field:sex", "F"),
        "tk_postcode": ("field:postcode", "SW1A 1AA"),
        "tk_postcode_sector": ("field:postcode_sector", "SW1A 1"),
        "tk_postcode_district": ("field:postcode_district", "SW1A"),
    }
    for column, (purpose, value) in expected_inputs.items():
        assert GOLDEN_TOKENS[column] == py_hmac(GOLDEN_KEY, purpose, value.encode("utf-8")), column
    given, family = encode.BLOOM_SPECS
    assert GOLDEN_BF_GIVEN_NAME == py_bloom(GOLDEN_KEY, given, "ZOË", b"golden\x1fR1")
    assert GOLDEN_BF_FAMILY_NAME == py_bloom(GOLDEN_KEY, family, "O'BRIEN-SMITH", b"golden\x1fR1")


def test_nfc_nfd_case_and_spacing_give_one_token(spark, identities):
    nfc = unicodedata.normalize("NFC", "Zoë Ångström")
    nfd = unicodedata.normalize("NFD", "Zoë Ångström")
    assert nfc != nfd
    spellings = [nfc, nfd, "  zoë\u00a0 ångström ", nfd.upper(), "ZOË\tÅNGSTRÖM"]
    rows = [("t", str(i), None, s, s, None, None, None) for i, s in enumerate(spellings)]
    flat = (encode.BloomSpec("given_name", "given_name", flips=0),)
    out = encode.tokenise(identities(rows), TEST_KEY, keep=[], blooms=flat).collect()
    assert len({r["tk_given_name"] for r in out}) == 1
    assert len({tuple(r["bf_given_name"]) for r in out}) == 1
    expected = py_hmac(TEST_KEY, "field:given_name", unicodedata.normalize("NFC", "ZOË ÅNGSTRÖM").encode())
    assert out[0]["tk_given_name"] == expected
    # Phonetic codes strip the accents: ZOEANGSTROM -> Soundex Z523 (G and S share code 2).
    assert out[0]["tk_given_soundex"] == py_hmac(TEST_KEY, "field:given_soundex", b"Z523")


def test_fuzzy_variants_agree_where_typos_break_exact_tokens(spark, identities):
    rows = [
        ("t", "a", "9990000018", "JOHN", "SMITH", "1980-03-07", "M", "SW1A 1AA"),
        ("t", "b", "9990000026", "JON", "SMYTH", "1980-07-03", "M", "sw1a1ab"),  # typos, swapped d/m, next door
    ]
    a, b = encode.tokenise(identities(rows), TEST_KEY, keep=["record_id"]).orderBy("record_id").collect()
    assert a["tk_dob_swapped"] == b["tk_dob"] and b["tk_dob_swapped"] == a["tk_dob"]
    assert a["tk_dob"] != b["tk_dob"] and a["tk_dob_year"] == b["tk_dob_year"]
    assert (a["tk_dob_month"], a["tk_dob_day"]) != (b["tk_dob_month"], b["tk_dob_day"])
    assert a["tk_postcode"] != b["tk_postcode"]
    assert a["tk_postcode_sector"] == b["tk_postcode_sector"] and a["tk_postcode_district"] == b["tk_postcode_district"]
    assert a["tk_family_name"] != b["tk_family_name"] and a["tk_family_soundex"] == b["tk_family_soundex"]
    assert a["tk_given_initial"] == b["tk_given_initial"] and a["tk_given_nysiis"] == b["tk_given_nysiis"]
    assert 0.5 < dice(a["bf_family_name"], b["bf_family_name"]) < 0.9


def test_different_fields_give_disjoint_tokens(spark, identities):
    values = ["SMITH", "JONES", "A", "S530", "1980", "3", "F", "SW1A", "SW1A 1", "SW1A 1AA", "9990000018"]
    rows = [("t", str(i), v, v, v, None, v, v) for i, v in enumerate(values)]
    out = encode.tokenise(identities(rows), TEST_KEY, keep=[], blooms=())
    columns = [c for c in out.columns if c.startswith("tk_")]
    collected = out.collect()
    seen: dict[str, set] = {c: {r[c] for r in collected if r[c] is not None} for c in columns}
    assert sum(map(len, seen.values())) > 80
    purposes = encode.column_purposes()
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            if purposes[a] != purposes[b]:
                assert not (seen[a] & seen[b]), (a, b)


def test_projects_and_keys_give_disjoint_tokens(spark, identities):
    rows = [("t", str(i), f"99900000{i:02d}", n, n, "1980-01-02", "F", "B1 1AA") for i, n in enumerate(["ANN", "BOB", "CAT"])]
    df = identities(rows)

    def tokens(**kw):
        out = encode.tokenise(df, kw.pop("key", TEST_KEY), keep=[], blooms=(), **kw)
        return {v for r in out.collect() for v in r if v is not None}

    plain, a, b, other = tokens(), tokens(project="alpha"), tokens(project="beta"), tokens(key=OTHER_KEY)
    assert len(plain) == len(a) == len(b) == len(other) > 30
    assert not (plain & a) and not (a & b) and not (plain & b) and not (plain & other)


def test_bloom_filters_dice_is_key_dependent_and_hardened(spark, identities):
    rows = [
        ("t", "1", None, "CHRISTOPHER", None, None, None, None),
        ("t", "2", None, "CHRISTOPHER", None, None, None, None),
        ("t", "3", None, "KRISTOPHER", None, None, None, None),
        ("t", "4", None, "WU", None, None, None, None),
    ]
    df = identities(rows)
    hardened = (encode.BloomSpec("given_name", "given_name"),)
    flat = (encode.BloomSpec("given_name", "given_name", flips=0),)
    h = [r[0] for r in encode.tokenise(df, TEST_KEY, keep=[], specs=(), blooms=hardened).collect()]
    f = [r[0] for r in encode.tokenise(df, TEST_KEY, keep=[], specs=(), blooms=flat).collect()]
    o = [r[0] for r in encode.tokenise(df, OTHER_KEY, keep=[], specs=(), blooms=flat).collect()]
    assert f[0] == f[1] and h[0] != h[1]  # identical names no longer give identical filters
    assert dice(h[0], h[1]) >= 0.85  # ... yet still compare as near-identical
    assert 0.55 <= dice(f[0], f[2]) < 0.9 and dice(f[0], f[3]) < 0.2
    assert dice(f[0], o[0]) < 0.2  # positions depend on the key
    assert all(r == sorted(set(r)) for r in h + f)
    # Dice in native Spark SQL (what Splink evaluates) equals the Python definition.
    pairs = spark.createDataFrame([(h[0], h[2])], "bf_l array<int>, bf_r array<int>")
    assert pairs.select(F.expr(encode.dice_sql("bf"))).first()[0] == pytest.approx(dice(h[0], h[2]))
    # ... and so does DuckDB's, where models are trained by default (Splink runs the same SQL there).
    import duckdb

    got = duckdb.sql(f"SELECT {encode.dice_sql('bf')} FROM (SELECT {h[0]} AS bf_l, {h[2]} AS bf_r)").fetchall()[0][0]  # duckdb 2: relations have no fetchone()
    assert got == pytest.approx(dice(h[0], h[2]))


def test_bad_input_gets_named_errors_before_spark_work(spark):
    df = spark.createDataFrame([("t", "1", "1980-01-01")], "dataset string, record_id string, date_of_birth string")
    with pytest.raises(SchemaError, match="date_of_birth.*expected date"):
        encode.tokenise(df, TEST_KEY, keep=[], blooms=())
    with pytest.raises(SchemaError, match="plaintext identifier"):
        encode.tokenise(df.drop("date_of_birth"), TEST_KEY, keep=["dataset", "nhs_number"], blooms=())
    with pytest.raises(SchemaError, match="given_name"):
        encode.tokenise(df.drop("date_of_birth"), TEST_KEY, keep=[], specs=())


def nhs_test_range(spark):
    """Every valid NHS number of the test range 999 000 000x - 999 999 999x (modulus-11 check digit)."""
    prefix = F.col("id").cast("string")
    total = sum(F.substring(prefix, i + 1, 1).cast("int") * (10 - i) for i in range(9))
    check = F.lit(11) - F.pmod(total, F.lit(11))
    numbers = spark.range(999_000_000, 1_000_000_000).select(
        prefix.alias("p"), F.when(check == 11, 0).otherwise(check).alias("c")
    )
    return numbers.where(F.col("c") < 10).select(F.concat("p", F.col("c").cast("string")).alias("nhs_number"))


def python_valid_count() -> int:
    count = 0
    for n in range(999_000_000, 1_000_000_000):
        digits = str(n)
        c = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits)) % 11
        count += c != 10
    return count


def test_dictionary_of_the_whole_nhs_test_range_matches_no_token(spark):
    """All 1,000,000 prefixes of the NHS test range (each valid one with its check digit), hashed
    without the key (plain SHA-256; HMAC under empty or guessable keys), match none of the tokens."""
    numbers = nhs_test_range(spark).cache()
    n_numbers = numbers.count()
    assert n_numbers == python_valid_count()  # ~10/11 of the million prefixes have a valid check digit
    sample = numbers.where(F.pmod(F.substring("nhs_number", 1, 9).cast("long"), F.lit(7919)) == 0)
    tokens = encode.tokenise(sample, TEST_KEY, keep=[], specs=encode.TOKEN_SPECS[:1], blooms=()).cache()
    n_tokens = tokens.count()
    assert n_tokens > 100

    m = F.col("nhs_number").cast("binary")
    spaced = F.concat_ws(" ", F.substring("nhs_number", 1, 3), F.substring("nhs_number", 4, 3), F.substring("nhs_number", 7, 4))
    guessable = [b"", b"\x00" * 32, b"natlink", b"secret", b"field:nhs_number"]
    pads = spark.createDataFrame(
        [(bytearray(i), bytearray(o)) for i, o in (hmac_sha256.hmac_pads(k) for k in guessable)], "i binary, o binary"
    )
    keyed = numbers.crossJoin(F.broadcast(pads)).select(hmac_sha256.hmac_sha256_hex(m, F.col("i"), F.col("o")).alias("h"))
    plain = numbers.select(F.explode(F.array(F.sha2(m, 256), F.sha2(spaced.cast("binary"), 256))).alias("h"))
    dictionary = plain.unionByName(keyed)
    targets = tokens.select(F.col("tk_nhs_number").alias("h"))
    assert dictionary.join(targets, on="h", how="inner").count() == 0

    # Control: the same dictionary under the real subkey finds every token (so the join can hit).
    real = spark.createDataFrame([tuple(map(bytearray, hmac_sha256.hmac_pads(TEST_KEY.subkey("field:nhs_number"))))], "i binary, o binary")
    with_key = numbers.crossJoin(F.broadcast(real)).select(hmac_sha256.hmac_sha256_hex(m, F.col("i"), F.col("o")).alias("h"))
    assert with_key.join(targets, on="h", how="inner").count() == n_tokens
    tokens.unpersist()
    numbers.unpersist()


# --------------------------------------------------------------------------------------------
# Both HMAC implementations (natlink.tokens.hmac_sha256) give the same tokens

def test_tokenise_is_identical_and_no_pad_is_in_the_plan_on_both_paths(spark, identities):
    impls = ["native"] + (["jvm"] if hmac_sha256.hmac_uses_jvm() else [])
    df = identities([GOLDEN_RECORD, ("golden", "R2", None, "Ann", "", None, None, None)])
    results = {}
    for impl in impls:
        out = encode.tokenise(df, GOLDEN_KEY, keep=["record_id"], project="p1", hmac_implementation=impl)
        results[impl] = sorted(out.collect())
        # Every explain mode, "formatted" included (the event log's physicalPlanDescription).
        modes = ("simple", "extended", "codegen", "cost", "formatted")
        explain = out.sparkSession._jvm.org.apache.spark.sql.execution.ExplainMode
        plan = out._jdf.queryExecution().toString().lower() + "".join(out._jdf.queryExecution().explainString(explain.fromString(m)).lower() for m in modes)
        assert (hmac_sha256.JVM_HMAC_NAME in plan) == (impl == "jvm")
        for purpose in encode.key_purposes(encode.TOKEN_SPECS, encode.BLOOM_SPECS):
            subkey = GOLDEN_KEY.subkey("project:p1/" + purpose)
            for secret in (subkey, *hmac_sha256.hmac_pads(subkey)):
                assert secret.hex() not in plan and secret.hex().upper() not in plan.upper()
    assert len(set(map(str, results.values()))) == 1
    row = encode.tokenise(identities([GOLDEN_RECORD]), GOLDEN_KEY, keep=[], hmac_implementation=impls[-1]).first().asDict()
    assert {k: v for k, v in row.items() if k.startswith("tk_")} == GOLDEN_TOKENS
    assert row["bf_given_name"] == GOLDEN_BF_GIVEN_NAME and row["bf_family_name"] == GOLDEN_BF_FAMILY_NAME


def test_bloom_spec_out_of_range_is_a_named_error():
    for bad in ({"bits": 1000}, {"bits": 32}, {"bits": 131072}, {"hashes": 0}, {"hashes": 17}, {"flips": 17}):
        with pytest.raises(EncodingSpecError, match="Bloom filter given_name"):
            encode.BloomSpec("given_name", "given_name", **bad)
    assert encode.key_purposes((), (encode.BloomSpec("g", "given_name", flips=0),)) == ["bloom:g"]  # no noise subkey without flips


def test_bloom_filter_of_a_1mb_name_is_computed_in_seconds(spark, identities):
    # Issue 19: bigrams were taken by a lambda that re-evaluated the padded name's regex for each
    # position (quadratic: 16 KB took 17 s, 1 MB would take hours). Now one pass; the filters
    # still equal the independent Python definition, including for a letter outside the BMP.
    import time

    given, family = encode.BLOOM_SPECS
    long_name = "SMITHJONES" * (1 << 17) + "\U00020000Ä"  # 1.25 M characters
    rows = [("d", "R1", None, "A\U00020000B", long_name, None, None, None)]
    started = time.perf_counter()
    row = encode.tokenise(identities(rows), TEST_KEY, keep=[]).first().asDict()
    assert time.perf_counter() - started < 120  # about 8 s on 2 shared cores
    assert row["bf_family_name"] == py_bloom(TEST_KEY, family, long_name, b"d\x1fR1")
    assert row["bf_given_name"] == py_bloom(TEST_KEY, given, "A\U00020000B", b"d\x1fR1")
