"""Project re-keying: disjoint across projects, equality kept within one, extracts never joinable."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from natlink.errors import FingerprintMismatchError, NotTokenTableError
from natlink.tokens import encode
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.reader import read_token_tables
from natlink.tokens.rekey import rekey, rekey_table

# Obviously fake test keys: never use outside tests.
TEST_KEY = KeyMaterial("test:not-secret", b"test-key-not-secret-" + b"0" * 12)
OTHER_KEY = KeyMaterial("test:not-secret-other", b"test-key-not-secret-other-000000")
PROJECT_KEY = KeyMaterial("test:not-secret-p", b"test-key-not-secret-project-ppp0")


def test_rekey_is_disjoint_across_projects_and_keeps_equality_within(identities):
    rows = [
        ("t", "r1", "9990000018", "ANN", "LEE", "1980-03-07", "F", "B1 1AA"),
        ("t", "r2", "9990000018", "ANN", "LEE", "1980-07-03", "F", "B1 1AA"),
    ]
    tokens = encode.tokenise(identities(rows), TEST_KEY, keep=["record_id"]).cache()
    purposes = encode.column_purposes()
    a = rekey(tokens, purposes, OTHER_KEY, project="alpha").orderBy("record_id").collect()
    b = rekey(tokens, purposes, OTHER_KEY, project="beta").orderBy("record_id").collect()
    assert "bf_given_name" not in a[0].asDict()  # Bloom filters never go into project extracts
    values = lambda rows: {v for r in rows for v in r.asDict().values() if v is not None}  # noqa: E731
    source = {v for r in tokens.collect() for k, v in r.asDict().items() if k.startswith("tk_") or k == "record_id"}
    assert not (values(a) & values(b)) and not (values(a) & source)
    assert {r["record_id"] for r in a} & {"r1", "r2"} == set()
    # Equality survives within one project, including across columns of one purpose (swapped dob).
    assert a[0]["tk_nhs_number"] == a[1]["tk_nhs_number"]
    assert a[0]["tk_dob_swapped"] == a[1]["tk_dob"]
    row = tokens.orderBy("record_id").first()
    expected = hmac.new(
        OTHER_KEY.subkey("rekey:alpha/field:nhs_number"), bytes.fromhex(row["tk_nhs_number"]), hashlib.sha256
    ).hexdigest()
    assert sorted(a, key=lambda r: r["tk_nhs_number"])[0]["tk_nhs_number"] == expected
    tokens.unpersist()



def test_rekeyed_project_extracts_cannot_be_joined(spark, token_tables, tmp_path):
    gp, key = token_tables.gp, token_tables.key
    a = rekey_table(spark, gp, PROJECT_KEY, project="alpha", out_dir=tmp_path / "alpha")
    b = rekey_table(spark, gp, PROJECT_KEY, project="beta", out_dir=tmp_path / "beta")
    ta, tb = read_token_tables(spark, [a]), read_token_tables(spark, [b])
    src = read_token_tables(spark, [gp])
    values = lambda df: {v for r in df.drop("dataset", "region", "event_date").collect() for v in r if isinstance(v, str)}  # noqa: E731
    assert ta.count() == tb.count() == 2
    assert not (values(ta) & values(tb)) and not (values(ta) & values(src))
    assert not any(c.startswith("bf_") for c in ta.columns)
    assert a.project == "alpha" and a.key_fingerprint == PROJECT_KEY.fingerprint and a["source_key_fingerprint"] == key.fingerprint
    with pytest.raises(FingerprintMismatchError, match="project"):
        read_token_tables(spark, [a, b])
    with pytest.raises(NotTokenTableError, match="already a project extract"):
        rekey_table(spark, a, PROJECT_KEY, project="gamma", out_dir=tmp_path / "gamma")
