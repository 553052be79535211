"""Project re-keying of a token frame: disjoint across projects, equality kept within one.

(:func:`natlink.tokens.rekey.rekey_table` is tested in test_tokenise.py, on its token tables.)"""

from __future__ import annotations

import hashlib
import hmac

from natlink.tokens import encode
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.rekey import rekey

# Obviously fake test keys: never use outside tests.
TEST_KEY = KeyMaterial("test:not-secret", b"test-key-not-secret-" + b"0" * 12)
OTHER_KEY = KeyMaterial("test:not-secret-other", b"test-key-not-secret-other-000000")


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

