"""The block-salted prototype (benchmarks/encodings, issue 15): tokens equal only inside a block."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def fh():
    sys.path.insert(0, str(BENCH))
    import bench_frequency_hiding

    bench_frequency_hiding.encodings_package()
    import fh_encodings.leakage as leakage
    import fh_encodings.linking as linking
    import fh_encodings.provider as provider
    import fh_encodings.salted as salted

    return {"salted": salted, "linking": linking, "provider": provider, "leakage": leakage}


# Obviously fake test key, labelled as such (never a real key).
TEST_KEY_BYTES = b"test-key-not-secret-salted-proto"

RULES = (("nhs_number",), ("dob", "given_initial"), ("family_name", "dob_year"), ("postcode", "given_initial"), ("given_name", "family_name"))
FIELDS = ("nhs_number", "given_name", "given_initial", "family_name", "dob", "dob_swapped", "dob_year", "sex", "postcode", "postcode_district")


def _plain(spark):
    rows = [
        # a and b: one person in two datasets; c: same family name and postcode, other year and initial;
        # d: a's name with day and month swapped, no NHS number and no postcode.
        ("gp", "a", "9434765919", "JOHN", "SMITH", dt.date(1980, 3, 4), "M", "AB1 2CD"),
        ("hes", "b", "9434765919", "JOHN", "SMITH", dt.date(1980, 3, 4), "M", "AB1 2CD"),
        ("gp", "c", "9434765870", "MARY", "SMITH", dt.date(1990, 5, 6), "F", "AB1 2CD"),
        ("gp", "d", None, "JOHN", "SMITH", dt.date(1980, 4, 3), "M", None),
    ]
    schema = "dataset string, record_id string, nhs_number string, given_name string, family_name string, date_of_birth date, sex string, postcode string"
    return spark.createDataFrame(rows, schema)


def test_salted_tokens_are_equal_only_inside_a_block(spark, fh):
    from natlink.tokens.keys import KeyMaterial

    salted = fh["salted"]
    spec = salted.SaltedSpec(rules=RULES, fields=FIELDS)
    out = salted.encode(_plain(spark), KeyMaterial("test:not-secret", TEST_KEY_BYTES), spec).toPandas()
    # Rows per record: every rule whose fields are present. a, b, c: all 5; d: no NHS number and no
    # postcode, so only (dob, initial), (family, year) and (given, family): 3.
    assert out.groupby("record_id").size().to_dict() == {"a": 5, "b": 5, "c": 5, "d": 3}
    by = {(r.record_id, r.rule): r for r in out.itertuples()}
    for rule in range(5):  # a and b agree on everything: same block and same tokens in every rule
        assert by[("a", rule)].bk == by[("b", rule)].bk
        assert by[("a", rule)].tk_family_name == by[("b", rule)].tk_family_name
    # a and c share the family name and postcode but no block (other year, other initial) ...
    assert {by[("a", r)].bk for r in range(5)}.isdisjoint({by[("c", r)].bk for r in range(5)})
    # ... so no exported token of their common values is equal, in any rule.
    for column in ("tk_family_name", "tk_postcode", "tk_postcode_district"):
        assert set(out.loc[out.record_id == "a", column]).isdisjoint(set(out.loc[out.record_id == "c", column]))
    # Inside the (given, family) block, d's swapped date equals a's date of birth.
    assert by[("d", 4)].bk == by[("a", 4)].bk
    assert by[("d", 4)].tk_dob_swapped == by[("a", 4)].tk_dob
    assert by[("d", 4)].tk_dob != by[("a", 4)].tk_dob
    # Every exported token is a 64-hex digest; no plaintext column survives.
    tokens = out[[f"tk_{f}" for f in FIELDS] + ["bk"]].stack()
    assert tokens.str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(out.columns) == {"dataset", "record_id", "rule", "bk", *[f"tk_{f}" for f in FIELDS]}


def test_per_rule_record_pseudonyms_do_not_repeat_across_rules(spark, fh):
    from natlink.tokens.keys import KeyMaterial

    salted = fh["salted"]
    spec = salted.SaltedSpec(rules=RULES, fields=FIELDS)
    out = salted.encode(_plain(spark), KeyMaterial("test:not-secret", TEST_KEY_BYTES), spec, record_key="per_rule").toPandas()
    # 18 rows (5 + 5 + 5 + 3), each with its own pseudonym: no record id links two rules' rows.
    assert len(out) == 18 and out["record_id"].nunique() == 18
    assert not set(out["record_id"]) & {"a", "b", "c", "d"}


def test_frequency_classes_and_lambda_by_hand(fh):
    import pandas as pd

    provider, linking = fh["provider"], fh["linking"]
    # 1000 values: X 600 times (share 0.6 -> class 3), Y 4 times (0.004 -> class 2), 396 unique
    # values (0.001 each: at the 0.001 cut, side=right -> class 2); NULL stays NULL.
    values = pd.Series(["X"] * 600 + ["Y"] * 4 + [f"u{i}" for i in range(396)] + [None])
    cls = provider.frequency_classes(values)
    assert cls.iloc[0] == 3 and cls.iloc[600] == 2 and cls.iloc[700] == 2 and pd.isna(cls.iloc[-1])
    # lambda: rule 0 slice has one block of 3 rows with tk_dob 1, 1, 2 -> 1 pair agreeing on dob;
    # 1 / recall 0.5 / (10 choose 2 = 45) pairs = 2/45.
    spec = fh["salted"].SaltedSpec(rules=RULES, fields=FIELDS)
    salted = pd.DataFrame({"rule": [0, 0, 0, 1], "bk": [7, 7, 7, 7], "tk_nhs_number": [1, 1, 1, 1], "tk_dob": [1, 1, 2, 1]})
    assert linking.estimate_lambda(salted, spec, [["tk_nhs_number", "tk_dob"]], 0.5, 10) == pytest.approx(2 / 45)


def test_equivalence_classes_chain_blocks_through_the_shared_record_key(fh):
    import numpy as np
    import pandas as pd

    spec = fh["salted"].SaltedSpec(rules=RULES, fields=FIELDS)
    # Records 0,1 share a (family, year) block; 1,2 share a (given, family) block; 3 is alone;
    # 4 shares a (dob, initial) block with 3 but not its family token. Classes: {0,1,2}, {3}, {4}.
    salted = pd.DataFrame({
        "record_index": [0, 1, 1, 2, 3, 4],
        "rule": [2, 2, 4, 4, 1, 1],
        "bk": [10, 10, 20, 20, 30, 30],
        "tk_family_name": [1, 1, 2, 2, 3, 4],
    })
    labels = fh["leakage"].equivalence_classes(salted, spec, "family_name", 5)
    assert labels[0] == labels[1] == labels[2] and len({labels[0], labels[3], labels[4]}) == 3
    # Per-rule pseudonyms and record 1 not in any link: its two rows are separate nodes (5 + row
    # position 1 and 2), so the chain breaks: {0, row 1} and {2, row 2}.
    joinable = np.array([True, False, True, True, True])
    split = fh["leakage"].equivalence_classes(salted, spec, "family_name", 5, joinable)
    assert split[0] == split[5 + 1] and split[2] == split[5 + 2] and split[0] != split[2]
    owner = fh["leakage"].node_records(salted, 5, joinable)
    assert owner.tolist() == [0, -1, 2, 3, 4, -1, 1, 1, -1, -1, -1]
