"""Block-salted tokens whose inner tokens come from the key service (federated mode), in Spark."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from natlink import columns as C
from natlink.config import ModelConfig, load, project_root
from natlink.errors import KeyServiceProofError, KeyServiceUnavailableError
from natlink.keyservice import oprf
from natlink.keyservice.spark import ServiceInnerTokens, named_failures, service_encoding_key
from natlink.tokens import keys
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.encode import TOKEN_SPECS
from natlink.tokens.salted import SaltedScheme, encode, inner_tokens

from ks_support import ENCODING_KEY, MASTER_V1, groups

ROOT = project_root()
MODEL_PATH = ROOT / "conf" / "model.yaml"  # the block-salted default
# The shipped fields with a fixed rule set (rule 2 on the family name and the year of birth, as
# shipped until 2026-12-02), so these by-hand checks do not move with the shipped rules.
SCHEME = SaltedScheme(rules=(("nhs_number",), ("dob", "given_initial"), ("family_name", "dob_year"), ("postcode", "given_initial")),
                      fields=SaltedScheme.from_model(load(MODEL_PATH, ModelConfig)).fields)
POSTCODE_RULE = SCHEME.rules.index(("postcode", "given_initial"))
KEEP = [C.DATASET, C.RECORD_ID, C.REGION]
SCHEMA = ("dataset string, record_id string, region string, nhs_number string, given_name string, family_name string, "
          "date_of_birth date, sex string, postcode string")


def rows(dataset: str):
    d = dt.date
    return [
        (dataset, "a", "R1", "9434765919", "JOHN", "SMITH", d(1980, 3, 4), "M", "LS1 4AB"),
        (dataset, "b", "R1", "9434765919", "JON", "SMITH", d(1980, 3, 4), "M", "LS1 4AB"),
        (dataset, "c", "R1", "9434765870", "JANE", "SMITH", d(1980, 7, 9), "F", "M1 1AA"),
        (dataset, "d", "R2", None, "JOHN", "SMITH", d(1980, 4, 3), "M", "LS1 4AB"),
        (dataset, "e", "R2", None, None, None, None, None, None),
    ]


def hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def test_service_tokens_by_hand(spark, keyservice):
    cfg = keyservice.client_config("gp")
    encoding = service_encoding_key(keys.resolve(keyservice.encoding_key), cfg)
    out = encode(spark.createDataFrame(rows("gp"), SCHEMA), encoding, SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(cfg))
    got = {r[C.RECORD_ID]: r for r in out.collect()}
    assert sorted(got) == ["a", "b", "c", "d", "e"]
    # By hand, for record a and rule 0 (NHS number alone): the inner token is the service's OPRF
    # of the value (computed here from the fake master key), the block key and salted token are
    # HMACs under the encoding key derived for this service and key version.
    master = KeyMaterial("fake", MASTER_V1)
    inner = oprf.inner_token(oprf.PurposeKey(master, "salted:inner/field:nhs_number").evaluate_known("9434765919"))
    block = hmac_hex(encoding.subkey("salted:block/nhs_number"), inner)[:32]
    salted = hmac_hex(encoding.subkey("salted:salt/field:nhs_number"), block + inner)[:16]
    assert got["a"][SCHEME.block_column(0)] == block
    assert got["a"][SCHEME.salted_column("nhs_number", 0)] == salted
    # Same structure as local tokens: equal inside a block, NULL where a field is missing.
    assert got["a"][SCHEME.block_column(1)] == got["b"][SCHEME.block_column(1)] != got["c"][SCHEME.block_column(1)]
    assert got["d"][SCHEME.block_column(0)] is None
    # a and d share the block of [postcode, given_initial], where d's swapped date is a's date.
    assert got["d"][SCHEME.salted_column("dob_swapped", POSTCODE_RULE)] == got["a"][SCHEME.salted_column("dob", POSTCODE_RULE)]
    assert all(v is None for k, v in got["e"].asDict().items() if k not in KEEP)
    # Each distinct (purpose, value) was evaluated once: the audit counts add up to the distinct pairs.
    assert sum(r["count"] for r in keyservice.audit_lines() if r["outcome"] == "ok") == distinct_pairs(rows("gp"))


def distinct_pairs(data) -> int:
    # nhs 2, given_name 3 (JOHN, JON, JANE), initial 1 (J), family 1, dob purpose: the dates
    # 1980-03-04, 1980-07-09, 1980-04-03 and their swaps 1980-04-03, 1980-09-07, 1980-03-04 = 4,
    # year 1, sex 2, postcode 2, district 2 (LS1, M1): 18.
    return 18


def test_two_providers_link_and_the_modes_do_not_mix(spark, keyservice):
    tables = {}
    for provider in ("gp", "hes"):
        cfg = keyservice.client_config(provider)
        encoding = service_encoding_key(keys.resolve(keyservice.encoding_key), cfg)
        tables[provider] = {r[C.RECORD_ID]: r for r in encode(
            spark.createDataFrame(rows(provider), SCHEMA), encoding, SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(cfg)).collect()}
    local = {r[C.RECORD_ID]: r for r in encode(spark.createDataFrame(rows("gp"), SCHEMA), keys.resolve(keyservice.encoding_key), SCHEME, keep=KEEP).collect()}
    for column in SCHEME.columns:
        assert tables["gp"]["a"][column] == tables["hes"]["a"][column]  # both providers: the same tokens
        assert tables["gp"]["a"][column] != local["a"][column]  # centralised tokens under the encoding key: others


def test_unpinned_purposes_and_a_dead_service_are_named(spark, keyservice):
    cfg = keyservice.client_config("gp")
    unpinned = cfg.model_copy(update={"public_keys": {k: v for k, v in cfg.public_keys.items() if not k.endswith("field:sex")}})
    frame = spark.createDataFrame(rows("gp"), SCHEMA)
    with pytest.raises(KeyServiceProofError, match="field:sex"):
        encode(frame, keys.resolve(keyservice.encoding_key), SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(unpinned))
    dead = cfg.model_copy(update={"url": "http://127.0.0.1:9", "retries": 1})
    out = encode(frame, keys.resolve(keyservice.encoding_key), SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(dead))
    with pytest.raises(KeyServiceUnavailableError, match="in a Spark task"):
        with named_failures():
            out.collect()



def test_both_modes_group_records_alike(spark, keyservice):
    """Accuracy is unchanged because every salted column groups the records exactly as in
    centralised mode: the same pairs agree on every token, so every comparison vector, the model
    and the clusters are the same. 400 records with many shared values (names, dates, postcodes)."""
    d = dt.date
    data = [("gp", f"r{i}", "R1", str(9990000000 + i % 150) if i % 7 else None, f"N{i % 23}", f"F{i % 31}",
             d(1950 + i % 11, 1 + i % 12, 1 + i % 5), "MF"[i % 2], f"LS{i % 6} {i % 4}AB" if i % 5 else None) for i in range(400)]
    frame = spark.createDataFrame(data, SCHEMA)
    cfg = keyservice.client_config("gp")
    encoding = keys.resolve(keyservice.encoding_key)
    federated = encode(frame, service_encoding_key(encoding, cfg), SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(cfg)).collect()
    local = encode(frame, encoding, SCHEME, keep=KEEP).collect()

    nulls = {c: sum(r[c] is None for r in local) for c in SCHEME.columns}
    for column in SCHEME.columns:
        assert groups(federated, column) == groups(local, column), column
        assert sum(r[column] is None for r in federated) == nulls[column]
    assert any(len(g) > 1 for g in groups(local, SCHEME.salted_column("family_name", POSTCODE_RULE)))  # values do repeat (one postcode block)


def test_projects_get_their_own_oprf_keys(spark, keyservice):
    """Per-project separation on top of the service: project-prefixed purposes, other tokens."""
    cfg = keyservice.client_config("gp")
    key = service_encoding_key(keys.resolve(keyservice.encoding_key), cfg)
    frame = spark.createDataFrame(rows("gp")[:1], SCHEMA)
    plain = encode(frame, key, SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(cfg)).first()
    project = encode(frame, key, SCHEME, keep=KEEP, project="p1", inner_source=ServiceInnerTokens(cfg)).first()
    assert all(plain[c] != project[c] for c in SCHEME.columns if plain[c] is not None)
    purposes = {r["purpose"] for r in keyservice.audit_lines() if r["outcome"] == "ok"}
    assert "project:p1/salted:inner/field:nhs_number" in purposes and "salted:inner/field:nhs_number" in purposes


@pytest.mark.parametrize("concurrency", [1, 3])
def test_each_distinct_pair_is_evaluated_once_across_arrow_batches(spark, keyservice, concurrency):
    """The tasks evaluate runs of equal (purpose, value) pairs from a sorted partition; with Arrow
    batches of 7 rows most runs cross a batch boundary. Each distinct pair is still evaluated
    exactly once (the audit counts), and the tokens group the records as local ones do."""
    d = dt.date
    data = [("gp", f"r{i}", "R1", str(9990000000 + i % 40), f"N{i % 9}", f"F{i % 13}", d(1950 + i % 3, 1 + i % 12, 1 + i % 5),
             "MF"[i % 2], f"LS{i % 4} {i % 3}AB") for i in range(120)]
    frame = spark.createDataFrame(data, SCHEMA)
    cfg = keyservice.client_config("gp", concurrency=concurrency, batch_size=5)
    encoding = keys.resolve(keyservice.encoding_key)
    # The distinct (purpose, value) pairs, counted from local inner tokens (one per value and purpose).
    purposes = {s.name: s.purpose for s in TOKEN_SPECS}
    inner = inner_tokens(frame, encoding, SCHEME).collect()
    expected = {(purposes[c[len(C.TOKEN_PREFIX):]], r[c]) for r in inner for c in r.asDict() if C.is_token(c) and r[c] is not None}
    previous = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        federated = encode(frame, service_encoding_key(encoding, cfg), SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(cfg)).collect()
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous)
    local = encode(frame, encoding, SCHEME, keep=KEEP).collect()
    assert len(federated) == 120
    for column in SCHEME.columns:
        assert groups(federated, column) == groups(local, column), column
    ok = [r for r in keyservice.audit_lines() if r["outcome"] == "ok"]
    assert sum(r["count"] for r in ok) == len(expected)
    assert max(r["count"] for r in ok) <= 5  # batch_size: values per request
    assert len(expected) > 120  # nhs 40 + given 9 + family 13 + dates, years, sexes, postcodes...
