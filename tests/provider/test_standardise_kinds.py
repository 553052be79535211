"""Declared identifiers cleaned by kind (natlink.provider.kinds through standardise), values worked
out by hand from the rules in the module docstring."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from natlink import columns as C
from natlink.config import DatasetConfig, project_root
from natlink.provider import standardise as S

ROOT = project_root()
AS_OF = dt.date(2026, 1, 1)
RAW = ("rec_id string, given_name string, surname string, street_number string, address_1 string, address_2 string, "
       "suburb string, postcode string, state string, date_of_birth string, soc_sec_id string, ref_no string, seen string")


@pytest.fixture(scope="module")
def cfg() -> DatasetConfig:
    raw = yaml.safe_load((ROOT / "conf/datasets/febrl/febrl3.yaml").read_text())
    raw["columns"].update(ref_no="ref_no", seen="seen")
    raw["identifiers"].update(ref_no={"kind": "person_id", "check_digit": "modulus11"},
                              seen={"kind": "date", "formats": ["d/M/yyyy"]}, address_2={"kind": "address", "max_length": 12})
    return DatasetConfig.model_validate(raw)


def rows(spark, cfg, data):
    out = S.standardise(spark.createDataFrame(data, RAW), cfg, as_of=AS_OF).orderBy(C.RECORD_ID).collect()
    return {r[C.RECORD_ID]: r.asDict() for r in out}


def test_declared_identifiers_are_cleaned_by_kind(spark, cfg):
    got = rows(spark, cfg, [
        ("r1", "mitchell", "green", "7 ", "St. John's  rd", "delmar", " cleveland", "2119", " nsw", "19560409", " 180-4974", "943 476 5919", "9/4/1956"),
        ("r2", "harley", "mccarthy", "", None, "a very long line here", "x", "21 19", "qld", "19560231", "0000000", "9434765918", "31/2/1956"),
        ("r3", "ann", "lee", "12", "x", None, None, "2000", "wa", "20300101", "12a!", "94347659", "junk"),
    ])
    r1, r2, r3 = got["r1"], got["r2"], got["r3"]
    # person id without a check digit: spaces and hyphens removed; one repeated digit is a placeholder
    assert (r1["soc_sec_id"], r1[C.flag("soc_sec_id")]) == ("1804974", None)
    assert (r2["soc_sec_id"], r2[C.flag("soc_sec_id")]) == (None, "placeholder")
    assert (r3["soc_sec_id"], r3[C.flag("soc_sec_id")]) == (None, "bad_format")
    # modulus 11 (943 476 5919 is the NHS's published example; ...18 fails the check; 8 digits: bad format)
    assert (r1["ref_no"], r2[C.flag("ref_no")], r3[C.flag("ref_no")]) == ("9434765919", "bad_check_digit", "bad_format")
    # free text: punctuation made spaces, upper case, whitespace collapsed; blank -> NULL
    assert r1["address_1"] == "ST JOHN S RD" and r1["street_number"] == "7" and r2["street_number"] is None
    assert (r2["address_2"], r2[C.flag("address_2")]) == (None, "too_long")  # 21 characters > max_length 12
    # category: upper case, trimmed
    assert (r1["state"], r2["state"]) == ("NSW", "QLD")
    # the built-in postcode with format free: letters and digits only, no UK area, district or sector
    assert (r1[C.POSTCODE], r2[C.POSTCODE], r1[C.flag(C.POSTCODE)]) == ("2119", "2119", None)
    assert (r1[C.POSTCODE_AREA], r1[C.POSTCODE_DISTRICT], r1[C.POSTCODE_SECTOR]) == (None, None, None)
    assert r1[C.REGION] == "AU"
    # a declared date with its own pattern
    assert (r1["seen"], r2[C.flag("seen")], r3[C.flag("seen")]) == (dt.date(1956, 4, 9), "impossible", "unparseable")
    # the built-in date of birth with the dataset's patterns (yyyyMMdd)
    assert (r1[C.DATE_OF_BIRTH], r2[C.flag(C.DATE_OF_BIRTH)], r3[C.flag(C.DATE_OF_BIRTH)]) == (dt.date(1956, 4, 9), "impossible", "out_of_range")
    declared = ["soc_sec_id", "street_number", "address_1", "address_2", "suburb", "state", "ref_no", "seen"]
    assert S.output_columns(cfg)[-16:] == [*declared, *[C.flag(n) for n in declared]]


def test_every_declared_flag_reason_is_listed(cfg):
    assert S.reasons_of(cfg, "soc_sec_id") == ("bad_format", "placeholder", "bad_check_digit", "too_long")
    assert S.reasons_of(cfg, "state") == ("too_long",)
    assert S.reasons_of(cfg, C.POSTCODE) == S.REASONS[C.POSTCODE]
    assert S.identifier_columns(cfg)[:6] == list(C.IDENTIFIERS)
