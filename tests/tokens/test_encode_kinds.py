"""Tokens of declared identifiers (natlink.config.identifiers): keyed under purposes that name their
kind, normalised by kind, in both encodings; expected tokens are Python's HMAC of the values
normalised by hand."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config import ModelConfig, load, load_dataset, project_root
from natlink.errors import EncodingSpecError, SchemaError
from natlink.tokens import encode, salted
from natlink.tokens.keys import KeyMaterial

ROOT = project_root()
# Obviously fake test key, labelled as such (never a real key).
TEST_KEY = KeyMaterial("test:not-secret", b"test-key-not-secret-" + b"k" * 12)
SCHEMA = ("dataset string, record_id string, given_name string, family_name string, date_of_birth string, postcode string, "
          "soc_sec_id string, street_number string, address_1 string, address_2 string, suburb string, state string")


def py_hmac(purpose: str, value: str) -> str:
    return hmac.new(TEST_KEY.subkey(purpose), value.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def kinds():
    return load_dataset(ROOT / "conf/datasets/febrl/febrl3.yaml").identifier_kinds


@pytest.fixture(scope="module")
def frame(spark):
    rows = [("febrl3", "r1", "ANN", "LEE", "1956-04-09", "21-19", " 180 4974", "7", "st. john's  rd", None, "Milton", " nsw ")]
    df = spark.createDataFrame(rows, SCHEMA).withColumn(C.DATE_OF_BIRTH, F.to_date(C.DATE_OF_BIRTH))
    # standardise gives NULL for identifiers a dataset lacks: the built-in ones FEBRL has no column for
    return df.select("*", F.lit(None).cast("string").alias(C.NHS_NUMBER), F.lit(None).cast("string").alias(C.SEX))


def test_declared_identifiers_get_keyed_tokens_by_kind(frame, kinds):
    specs = encode.token_specs(kinds)
    row = encode.tokenise(frame, TEST_KEY, keep=[C.RECORD_ID], specs=specs, blooms=(), identifiers=kinds).first().asDict()
    assert row["tk_soc_sec_id"] == py_hmac("id:person_id:soc_sec_id", "1804974")
    assert row["tk_address_1"] == py_hmac("id:address:address_1", "ST JOHN S RD")
    assert row["tk_address_1_soundex"] == py_hmac("id:address:address_1_soundex", "S325")  # STJOHNSRD: S, T 3, J 2, (O H), N 5
    assert row["tk_suburb_nysiis"] == py_hmac("id:address:suburb_nysiis", "MALTAN")  # MILTON: I, O -> A
    assert row["tk_state"] == py_hmac("id:category:state", "NSW")
    assert row["tk_street_number"] == py_hmac("id:address:street_number", "7")
    assert row["tk_street_number_soundex"] is None and row["tk_address_2"] is None  # no letters; NULL stays NULL
    # the built-in postcode with format free: letters and digits only, no district or sector
    assert row["tk_postcode"] == py_hmac("field:postcode", "2119")
    assert row["tk_postcode_district"] is None and row["tk_postcode_sector"] is None
    # the built-in identifiers keep their purposes
    assert row["tk_given_name"] == py_hmac("field:given_name", "ANN") and row["tk_dob"] == py_hmac("field:date_of_birth", "1956-04-09")
    assert not any(v in str(row) for v in ("1804974", "JOHN", "NSW"))


def test_declared_identifiers_are_never_kept_as_plaintext(frame, kinds):
    with pytest.raises(SchemaError, match=r"plaintext identifier columns \['soc_sec_id'\]"):
        encode.tokenise(frame, TEST_KEY, keep=["soc_sec_id"], specs=encode.token_specs(kinds), blooms=(), identifiers=kinds)


def test_salted_tokens_of_declared_identifiers(frame, kinds):
    cfg = load(ROOT / "conf/model_febrl.yaml", ModelConfig)
    unbound = salted.SaltedScheme.from_model(cfg, specs=None)
    with pytest.raises(EncodingSpecError, match="declare the identifier"):
        unbound.for_identifiers(None)  # a UK dataset has no soc_sec_id
    scheme = unbound.for_identifiers(kinds)
    assert scheme == unbound and scheme.fingerprint == unbound.fingerprint  # specs are not the scheme's identity
    rule = scheme.rules.index(("soc_sec_id",))
    row = salted.encode(frame, TEST_KEY, scheme, keep=[C.RECORD_ID], identifiers=kinds).first().asDict()
    inner = py_hmac("salted:inner/id:person_id:soc_sec_id", "1804974")
    block = hmac.new(TEST_KEY.subkey("salted:block/soc_sec_id"), inner.encode(), hashlib.sha256).hexdigest()[:32]
    assert row[scheme.block_column(rule)] == block
    state_inner = py_hmac("salted:inner/id:category:state", "NSW")
    expected = hmac.new(TEST_KEY.subkey("salted:salt/id:category:state"), (block + state_inner).encode(), hashlib.sha256).hexdigest()[:16]
    assert row[scheme.salted_column("state", rule)] == expected
    assert scheme.column_purposes()[scheme.salted_column("address_1", rule)] == f"salted:salt/id:address:address_1/r{rule}"


def test_a_date_identifier_of_another_name_is_keyed_apart(spark):
    from natlink.config.identifiers import IdentifierKind, resolve

    kinds = resolve({"seen": IdentifierKind(kind="date")})
    df = spark.createDataFrame([("d", "r", dt.date(2001, 2, 3), dt.date(2001, 2, 3))], "dataset string, record_id string, seen date, date_of_birth date")
    specs = [s for s in encode.token_specs(kinds) if s.name in ("dob", "seen", "seen_swapped", "seen_year")]
    row = encode.tokenise(df, TEST_KEY, keep=[], specs=specs, blooms=(), identifiers=kinds).first().asDict()
    assert row["tk_seen"] == py_hmac("id:date:seen", "2001-02-03") != row["tk_dob"]
    assert row["tk_seen_swapped"] == py_hmac("id:date:seen", "2001-03-02") and row["tk_seen_year"] == py_hmac("id:date:seen_year", "2001")


def test_the_centre_refuses_tables_whose_providers_declared_an_identifier_differently():
    from natlink.errors import EncodingMismatchError
    from natlink.tokens.manifest import TokenManifest
    from natlink.tokens.reader import check_identifiers

    def made(name, identifiers=None):
        return TokenManifest({"dataset": name, **({"identifiers": identifiers} if identifiers else {})})

    free = {"postcode": {"kind": "postcode", "format": "free"}, "soc_sec_id": {"kind": "person_id"}}
    check_identifiers([made("a", free), made("b", free), made("c", {"postcode": free["postcode"]})])  # c lacks soc_sec_id: fine
    check_identifiers([made("gp"), made("hes")])  # UK tables record nothing: the built-in defaults
    with pytest.raises(EncodingMismatchError, match=r"identifier 'postcode' is \{'kind': 'postcode', 'format': 'uk'\} in dataset 'gp' but"):
        check_identifiers([made("gp"), made("febrl", free)])
    with pytest.raises(EncodingMismatchError, match="identifier 'soc_sec_id'"):
        check_identifiers([made("a", free), made("b", {**free, "soc_sec_id": {"kind": "person_id", "check_digit": "modulus11"}})])
