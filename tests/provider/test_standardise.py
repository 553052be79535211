"""natlink.provider.standardise: every rule on tiny inline frames, expected values worked out by hand."""

from __future__ import annotations

import csv
import datetime as dt
import re
import unicodedata
from importlib import resources

import pytest
from pyspark.sql import types as T

from natlink.provider import standardise as S
from natlink.config.datasets import DatasetConfig

AS_OF = dt.date(2026, 1, 1)
RAW = T.StructType([T.StructField(c, T.StringType()) for c in ("id", "nhs", "given", "family", "dob", "sex", "pc")])


def mod11(nine: str) -> int:
    """Reference check digit (independent of the Spark code): weights 10..2, 11 -> 0, 10 invalid."""
    c = 11 - sum(int(d) * w for d, w in zip(nine, range(10, 1, -1))) % 11
    return 0 if c == 11 else c


def valid_nhs(prefix: str) -> str:
    """The first valid NHS number at or after prefix + zeros (prefix of up to 9 digits)."""
    n = int(prefix.ljust(9, "0"))
    while mod11(f"{n:09d}") == 10:
        n += 1
    return f"{n:09d}{mod11(f'{n:09d}')}"


def cfg(**extra) -> DatasetConfig:
    base = {
        "name": "t",
        "source": {"path": "unused"},
        "record_id": "id",
        "columns": {
            "nhs_number": "nhs", "given_name": "given", "family_name": "family",
            "date_of_birth": "dob", "sex": "sex", "postcode": "pc",
        },
        "date_formats": ["yyyy-MM-dd", "d/M/yyyy"],
    }
    base.update(extra)
    return DatasetConfig.model_validate(base)


def run(spark, rows, config=None):
    full = [tuple(r.get(k) for k in ("id", "nhs", "given", "family", "dob", "sex", "pc")) for r in rows]
    df = spark.createDataFrame(full, RAW)
    out = S.standardise(df, config or cfg(), as_of=AS_OF)
    return {r["record_id"]: r.asDict() for r in out.collect()}


class Batch:
    """Rows of several tests standardised in one Spark job (ids are prefixed per test)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {}
        self._out: dict | None = None

    def add(self, test: str, rows: list[dict]) -> None:
        self.rows[test] = [{**r, "id": f"{test}:{r['id']}"} for r in rows]

    def result(self, spark, test: str) -> dict:
        if self._out is None:
            self._out = run(spark, [r for rows in self.rows.values() for r in rows])
        prefix = f"{test}:"
        return {k[len(prefix):]: v for k, v in self._out.items() if k.startswith(prefix)}


BATCH = Batch()
_VARIANT: dict = {}


def variant(spark) -> dict:
    """One run under a config with every non-default rule switched on."""
    if not _VARIANT:
        rows = [
            {"id": "test", "nhs": valid_nhs("999000")},
            {"id": "jan1", "dob": "01/01/1975"},
            {"id": "x", "pc": "LS1 4AP"},
            {"id": "y"},
        ]
        config = cfg(
            nhs_number={"allow_test_range": True}, date_of_birth={"unknown_day_month": ["01-01"]}, region="LONDON"
        )
        _VARIANT.update(run(spark, rows, config))
    return _VARIANT


def test_mod11_reference_matches_published_example():
    # NHS Digital's published example number 401 023 2137: check digit 7.
    assert mod11("401023213") == 7


GOOD = "4010232137"
NINE_BAD = next(f"{n:09d}" for n in range(400000000, 400001000) if mod11(f"{n:09d}") == 10)
TEST_RANGE = valid_nhs("999000")
BATCH.add("nhs", [
    {"id": "spaced", "nhs": "401 023 2137"},
    {"id": "hyphen", "nhs": "401-023-2137"},
    {"id": "wrongcheck", "nhs": GOOD[:9] + "8"},
    {"id": "check10", "nhs": NINE_BAD + "0"},
    {"id": "short", "nhs": "40102321"},
    {"id": "letters", "nhs": "40102321AB"},
    {"id": "test", "nhs": TEST_RANGE},
        {"id": "zeros", "nhs": "0000000000"},  # passes modulus 11 (sum 0 -> check 0) but is filler
    {"id": "blank", "nhs": "   "},
])


def test_nhs_number_rules(spark):
    good, test_range = GOOD, TEST_RANGE
    out = BATCH.result(spark, "nhs")
    assert out["spaced"]["nhs_number"] == good and out["spaced"]["nhs_number_flag"] is None
    assert out["hyphen"]["nhs_number"] == good
    expect = {
        "wrongcheck": "bad_check_digit", "check10": "bad_check_digit", "short": "bad_format",
        "letters": "bad_format", "test": "test_range", "zeros": "placeholder", "blank": None,
    }
    for rid, flag in expect.items():
        assert out[rid]["nhs_number"] is None, rid
        assert out[rid]["nhs_number_flag"] == flag, rid
    assert variant(spark)["test"]["nhs_number"] == test_range


VALUES = [f"{n:09d}" for n in range(401023200, 401023260)]
BATCH.add("many", [{"id": f"{v}{d}", "nhs": f"{v}{d}"} for v in VALUES for d in range(10)])


def test_nhs_numbers_agree_with_reference_on_many_values(spark):
    values = VALUES
    out = BATCH.result(spark, "many")
    for v in values:
        for d in range(10):
            assert (out[f"{v}{d}"]["nhs_number"] is not None) == (mod11(v) == d), f"{v}{d}"


NFD = unicodedata.normalize("NFD", "Zoë")
NFC = unicodedata.normalize("NFC", "Zoë")
BATCH.add("names", [
    {"id": "nfd", "given": NFD, "family": "Brontë"},
    {"id": "nfc", "given": NFC, "family": unicodedata.normalize("NFD", "Brontë")},
    {"id": "title", "given": "Mr John  Paul", "family": "O'Brien"},
    {"id": "hyph1", "given": "Jean-Paul", "family": "Smith-Jones"},
    {"id": "hyph2", "given": "dr. mary", "family": "smith - jones"},
    {"id": "hyph3", "given": "Ann", "family": "SMITH JONES"},
    {"id": "suffix", "given": "Sam", "family": "Davis Jnr"},
    {"id": "placeholder", "given": "Baby", "family": "Unknown"},
    {"id": "babyof", "given": "BABY OF", "family": "Khan"},
    {"id": "titleonly", "given": "Mrs", "family": "Lord"},
    {"id": "digits", "given": "123", "family": "!!"},
    {"id": "blank", "given": " ", "family": None},
])


def test_names(spark):
    assert NFD != NFC
    out = BATCH.result(spark, "names")
    assert out["nfd"]["given_name"] == out["nfc"]["given_name"] == "ZOË"
    assert out["nfd"]["family_name"] == out["nfc"]["family_name"] == "BRONTË"
    assert (out["title"]["given_name"], out["title"]["given_name_other"]) == ("JOHN", "PAUL")
    assert out["title"]["family_name"] == "OBRIEN"
    assert out["hyph1"]["given_name"] == "JEANPAUL"
    for rid in ("hyph1", "hyph2", "hyph3"):
        r = out[rid]
        assert (r["family_name"], r["family_name_first"], r["family_name_last"]) == ("SMITHJONES", "SMITH", "JONES"), rid
    assert out["hyph2"]["given_name"] == "MARY"
    assert out["suffix"]["family_name"] == "DAVIS" and out["suffix"]["family_name_first"] is None
    assert out["placeholder"]["given_name"] is None and out["placeholder"]["given_name_flag"] == "placeholder"
    assert out["placeholder"]["family_name"] is None and out["placeholder"]["family_name_flag"] == "placeholder"
    assert out["babyof"]["given_name_flag"] == "placeholder"
    assert out["titleonly"]["given_name_flag"] == "title_only"
    assert out["titleonly"]["family_name"] == "LORD"  # a real surname, kept
    # A digit is part of no name: flagged, never dropped; punctuation alone leaves no letters.
    assert out["digits"]["given_name_flag"] == "invalid_characters" and out["digits"]["family_name_flag"] == "invalid"
    assert out["blank"]["given_name"] is None and out["blank"]["given_name_flag"] is None
    assert out["blank"]["family_name_flag"] is None


# One rule for the characters of a name: whitespace of any kind separates words like a space;
# punctuation separates too; anything else (digit, symbol, emoji, control or format character)
# flags the value and nulls it. Expected values by hand from that rule.
CHARACTER_CASES = {
    "nbsp": ("Ann\u00a0Marie", ("ANN", "MARIE", None), ("ANNMARIE", None)),
    "nbsp_edges": ("\u00a0Ann\u202f", ("ANN", None, None), ("ANN", None)),
    "thin": ("Ann\u2009Marie", ("ANN", "MARIE", None), ("ANNMARIE", None)),
    "tab": ("Ann\tMarie", ("ANN", "MARIE", None), ("ANNMARIE", None)),
    "ideographic": ("Ann\u3000Marie", ("ANN", "MARIE", None), ("ANNMARIE", None)),
    "nbsp_hyphen": ("Smith\u00a0-\u2009Jones", ("SMITHJONES", None, None), ("SMITHJONES", None)),
    "only_nbsp": ("\u00a0\u2009\t", (None, None, None), (None, None)),  # blank: missing, not invalid
    "emoji": ("Ann\U0001F600", (None, None, "invalid_characters"), (None, "invalid_characters")),
    "emoji_mid": ("An\U0001F600n", (None, None, "invalid_characters"), (None, "invalid_characters")),
    "control": ("Ann\u0007", (None, None, "invalid_characters"), (None, "invalid_characters")),
    "zero_width": ("An\u200bn", (None, None, "invalid_characters"), (None, "invalid_characters")),
    "digit": ("John2", (None, None, "invalid_characters"), (None, "invalid_characters")),
    "symbol": ("Ann+Marie", (None, None, "invalid_characters"), (None, "invalid_characters")),
    "punctuation": ("St. John (Jr)", ("ST", "JOHN JR", None), ("STJOHN", None)),
    "accents": ("Zoë-Ærøskøbing", ("ZOËÆRØSKØBING", None, None), ("ZOËÆRØSKØBING", None)),
}
BATCH.add("chars", [{"id": k, "given": v, "family": v} for k, (v, _g, _f) in CHARACTER_CASES.items()])


def test_one_rule_for_the_characters_of_a_name(spark):
    out = BATCH.result(spark, "chars")
    for rid, (_value, given, family) in CHARACTER_CASES.items():
        r = out[rid]
        assert (r["given_name"], r["given_name_other"], r["given_name_flag"]) == given, rid
        assert (r["family_name"], r["family_name_flag"]) == family, rid


def test_names_that_were_clean_are_unchanged_by_the_character_rule(spark):
    # Plain, accented, hyphenated, apostrophe and punctuated names: the values of the rule
    # before issue 19 (tokens depend on them), worked out by hand.
    out = BATCH.result(spark, "names")
    got = {rid: (out[rid]["given_name"], out[rid]["given_name_other"], out[rid]["family_name"]) for rid in out}
    assert got["title"] == ("JOHN", "PAUL", "OBRIEN") and got["hyph2"] == ("MARY", None, "SMITHJONES")
    assert got["nfd"] == ("ZOË", None, "BRONTË") and got["hyph1"] == ("JEANPAUL", None, "SMITHJONES")


LIMITS = {"nhs": 32, "given": 255, "family": 255, "dob": 40, "sex": 32, "pc": 16}  # the defaults
BATCH.add("long", [
    {"id": "at_limit", "nhs": " " * 11 + "401 023 2137" + " " * 9, "given": "A" * 255, "family": "B" * 255,
     "dob": "1980-02-01" + " " * 30, "sex": "M" + " " * 31, "pc": "LS1 4AP" + " " * 9},
    {"id": "over", **{k: "9" * (n + 1) for k, n in LIMITS.items()}},
    {"id": "over_names", "given": "Ann" * 86, "family": "\u00a0" * 256},
])


def test_over_long_values_are_nulled_as_too_long_before_cleaning(spark):
    out = BATCH.result(spark, "long")
    at = out["at_limit"]
    assert (at["nhs_number"], at["given_name"], at["family_name"]) == (GOOD, "A" * 255, "B" * 255)
    assert (at["date_of_birth"], at["sex"], at["postcode"]) == (dt.date(1980, 2, 1), "M", "LS1 4AP")
    assert all(at[c] is None for c in S.FLAG_COLUMNS)
    for rid in ("over",):
        for column in ("nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode"):
            assert out[rid][column] is None and out[rid][f"{column}_flag"] == "too_long", (rid, column)
    assert out["over"]["region"] == "UNKNOWN" and out["over"]["given_name_other"] is None
    # 258 characters; 256 no-break spaces are over-long before they are blank.
    assert out["over_names"]["given_name_flag"] == out["over_names"]["family_name_flag"] == "too_long"


def test_length_limits_are_configurable(spark):
    config = cfg(max_length={"given_name": 3, "postcode": 8})
    out = run(spark, [{"id": "a", "given": "Ann", "family": "Smith", "pc": "LS1 4AP"},
                      {"id": "b", "given": "Anne", "pc": "LS1  4AP "}], config)
    assert (out["a"]["given_name"], out["a"]["postcode"]) == ("ANN", "LS1 4AP")
    assert out["b"]["given_name_flag"] == "too_long" and out["b"]["postcode_flag"] == "too_long"
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        cfg(max_length={"surname": 3})


BATCH.add("dob", [
    {"id": "iso", "dob": "1980-02-01"},
    {"id": "uk", "dob": "1/2/1980"},
    {"id": "uk2", "dob": "01/02/1980"},
    {"id": "feb30", "dob": "2020-02-30"},
    {"id": "day31", "dob": "31/04/1990"},
    {"id": "placeholder", "dob": "1900-01-01"},
    {"id": "future", "dob": "2090-05-05"},
    {"id": "ancient", "dob": "1850-05-05"},
    {"id": "text", "dob": "not known"},
    {"id": "jan1", "dob": "01/01/1975"},
    {"id": "blank", "dob": ""},
    {"id": "y1899", "dob": "31/12/1899"},
    {"id": "age121", "dob": "1905-01-01"},  # 121 on 2026-01-01 (AS_OF)
    {"id": "age120", "dob": "1905-01-02"},  # 120 on 2026-01-01: the oldest plausible
    {"id": "tomorrow", "dob": "2026-01-02"},
])


def test_dates_of_birth(spark):
    out = BATCH.result(spark, "dob")
    for rid in ("iso", "uk", "uk2"):
        assert out[rid]["date_of_birth"] == dt.date(1980, 2, 1), rid
    expect = {
        "feb30": "impossible", "day31": "impossible", "placeholder": "placeholder", "future": "out_of_range",
        "ancient": "implausible_date", "text": "unparseable", "blank": None, "y1899": "implausible_date",
        "age121": "implausible_date", "tomorrow": "out_of_range",
    }
    for rid, flag in expect.items():
        assert out[rid]["date_of_birth"] is None and out[rid]["date_of_birth_flag"] == flag, rid
    assert out["jan1"]["date_of_birth"] == dt.date(1975, 1, 1)  # kept unless configured
    assert out["age120"]["date_of_birth"] == dt.date(1905, 1, 2) and out["age120"]["date_of_birth_flag"] is None
    strict = variant(spark)
    assert strict["jan1"]["date_of_birth"] is None and strict["jan1"]["date_of_birth_flag"] == "placeholder"


SEX_CASES = {
        "1": ("M", None), "2": ("F", None), "m": ("M", None), "Female": ("F", None), "MALE ": ("M", None),
        "0": (None, "not_known"), "U": (None, "not_known"), "9": (None, "not_specified"),
        "I": (None, "not_specified"), "Q": (None, "unrecognised"), "3": (None, "unrecognised"), "": (None, None),
}
BATCH.add("sex", [{"id": f"s{i}", "sex": code} for i, code in enumerate(SEX_CASES)])


def test_sex_codes(spark):
    cases = SEX_CASES
    out = BATCH.result(spark, "sex")
    for i, (code, (value, flag)) in enumerate(cases.items()):
        assert (out[f"s{i}"]["sex"], out[f"s{i}"]["sex_flag"]) == (value, flag), code


BATCH.add("pc", [
    {"id": "ls", "pc": "ls14ap"},
    {"id": "ec", "pc": " EC1A 1bb "},
    {"id": "ca", "pc": "CA1 1AA"},
    {"id": "mk", "pc": "MK9 2AA"},
    {"id": "nfa", "pc": "ZZ99 3VZ"},
    {"id": "wales", "pc": "zz993gz"},
    {"id": "bad", "pc": "QQ1 1AA"},
    {"id": "junk", "pc": "N/A"},
    {"id": "bfpo", "pc": "BF1 3AA"},
    {"id": "blank", "pc": None},
])


def test_postcodes_and_regions(spark):
    out = BATCH.result(spark, "pc")
    ls = out["ls"]
    assert (ls["postcode"], ls["postcode_area"], ls["postcode_district"], ls["postcode_sector"]) == (
        "LS1 4AP", "LS", "LS1", "LS1 4",
    )
    assert ls["region"] == "NORTH_EAST_AND_YORKSHIRE"
    assert (out["ec"]["postcode"], out["ec"]["postcode_district"], out["ec"]["region"]) == ("EC1A 1BB", "EC1A", "LONDON")
    assert out["ca"]["region"] == "NORTH_EAST_AND_YORKSHIRE" and out["mk"]["region"] == "EAST_OF_ENGLAND"
    assert out["nfa"]["postcode"] is None and out["nfa"]["postcode_flag"] == "pseudo" and out["nfa"]["region"] == "UNKNOWN"
    assert out["wales"]["postcode_flag"] == "pseudo" and out["wales"]["region"] == "WALES"
    assert out["bad"]["postcode_flag"] == "invalid" and out["junk"]["postcode_flag"] == "invalid"
    assert out["bfpo"]["postcode"] == "BF1 3AA" and out["bfpo"]["region"] == "UNKNOWN"
    assert out["blank"]["postcode_flag"] is None and out["blank"]["region"] == "UNKNOWN"
    fixed = variant(spark)
    assert fixed["x"]["region"] == fixed["y"]["region"] == "LONDON"


def test_output_contract(spark):
    df = spark.createDataFrame([("1",) + (None,) * 6], RAW)
    out = S.standardise(df, cfg(), as_of=AS_OF)
    assert out.columns == S.output_columns(cfg())
    assert dict(out.dtypes)["date_of_birth"] == "date"
    row = out.collect()[0]
    assert row["region"] == "UNKNOWN" and all(row[c] is None for c in S.FLAG_COLUMNS)


def test_postcode_area_table_is_complete_and_safe():
    with resources.files("natlink.data").joinpath("postcode_areas.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    areas = [r["area"] for r in rows]
    assert len(areas) == len(set(areas)) == 124  # 121 UK areas + GY, JE, IM
    assert all(re.fullmatch(r"[A-Z]{1,2}", a) for a in areas)
    assert all(re.fullmatch(r"[A-Z_]+", r["region"]) for r in rows)
    nhs_regions = {"LONDON", "SOUTH_EAST", "SOUTH_WEST", "EAST_OF_ENGLAND", "MIDLANDS", "NORTH_WEST", "NORTH_EAST_AND_YORKSHIRE"}
    assert {r["region"] for r in rows} == nhs_regions | {"WALES", "SCOTLAND", "NORTHERN_IRELAND", "CHANNEL_ISLANDS", "ISLE_OF_MAN"}
    by_area = {r["area"]: r["region"] for r in rows}
    # Spot checks against the ICB configuration (July 2022), see natlink/data/README.md.
    assert by_area["CA"] == "NORTH_EAST_AND_YORKSHIRE" and by_area["MK"] == "EAST_OF_ENGLAND"
    assert by_area["BT"] == "NORTHERN_IRELAND" and by_area["CF"] == "WALES" and by_area["EH"] == "SCOTLAND"


@pytest.mark.parametrize("bad", [{"region": "london"}, {"date_format": "yyyy", "date_formats": ["yyyy"]}, {"name": "GP"}])
def test_config_rejects_unsafe_values(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        cfg(**bad)


def test_skeleton_era_config_still_loads():
    legacy = DatasetConfig.model_validate(
        {
            "name": "old",
            "source": {"path": "{data_dir}/raw/old", "format": "csv"},
            "record_id": "id",
            "columns": {"nhs_number": "nhs", "family_name": "surname"},
            "date_format": "dd/MM/yyyy",
            "event_columns": {"event_date": "adm"},
        }
    )
    assert legacy.dob_formats == ["dd/MM/yyyy"] and legacy.nhs_number.allow_test_range is False
    from natlink.config import DatasetConfig as FromConfig
    from natlink.config.datasets import source_path

    assert FromConfig is DatasetConfig
    assert source_path(legacy, "/data") == "/data/raw/old"


def test_date_of_birth_plausibility_is_configurable(spark):
    rules = cfg().date_of_birth
    assert (rules.earliest, rules.max_age_years) == (dt.date(1900, 1, 1), 120)
    # Whole years of age at the as-of date; on 2024-02-29 someone born 1903-02-28 is 121, born 1903-03-01 is 120.
    assert S.oldest_plausible(rules, dt.date(2026, 1, 1)) == dt.date(1905, 1, 2)
    assert S.oldest_plausible(rules, dt.date(2024, 2, 29)) == dt.date(1903, 3, 1)
    assert S.oldest_plausible(rules.model_copy(update={"max_age_years": 150}), dt.date(2026, 1, 1)) == dt.date(1900, 1, 1)
    lenient = cfg(date_of_birth={"earliest": "1850-01-01", "max_age_years": None, "placeholder_dates": []})
    out = run(spark, [{"id": "a", "dob": "31/12/1899"}, {"id": "b", "dob": "1849-12-31"}], lenient)
    assert out["a"]["date_of_birth"] == dt.date(1899, 12, 31) and out["a"]["date_of_birth_flag"] is None
    assert out["b"]["date_of_birth_flag"] == "implausible_date"
