"""The bad-input catalogue, part two (issue 19): RFC 4180 CSV records, bounded work per value and
plausibility rules, each with exact counts. Fixtures are written to tmp_path by the tests; the
identifiers are fake. Expected values are worked out by hand from the rules in
natlink.provider.standardise and the RFC 4180 quoting rules. Part three (the end of this file):
source files that cannot be read whole (truncated, corrupt, removed during the run)."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import random
import time
from pathlib import Path

import pytest

from natlink.config.datasets import DatasetConfig
from natlink.errors import CorruptInputFileError, SchemaError
from natlink.provider import onboard

HEADER = "rid,nhs,forename,surname,dob,sex,postcode,admitted"
GOOD_NHS = "4010232137"  # NHS Digital's published example (valid check digit 7)
AS_OF = dt.date(2026, 1, 1)
MB = 1 << 20


def config(tmp_path: Path, **extra) -> DatasetConfig:
    base = {
        "name": "prov",
        "source": {"path": str(tmp_path / "src"), "format": "csv"},
        "record_id": "rid",
        "columns": {
            "nhs_number": "nhs", "given_name": "forename", "family_name": "surname",
            "date_of_birth": "dob", "sex": "sex", "postcode": "postcode",
        },
        "date_formats": ["yyyy-MM-dd", "d/M/yyyy"],
        "event_columns": {"event_date": "admitted"},
    }
    base.update(extra)
    return DatasetConfig.model_validate(base)


def deliver(tmp_path: Path, data: bytes, name: str = "part.csv") -> None:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)


def csv(*rows: str, newline: str = "\n") -> bytes:
    return newline.join([HEADER, *rows, ""]).encode("utf-8")


def run(spark, cfg: DatasetConfig):
    result = onboard.onboard(spark, cfg, run_id="r1", as_of=AS_OF)
    clean = {r["record_id"]: r.asDict() for r in result.clean.collect()}
    quarantined = [r.asDict() for r in result.quarantine.collect()]
    result.unpersist()
    return result.counts, clean, quarantined


def reasons(counts) -> dict[str, int]:
    return {k: v for k, v in counts.quarantine_reasons.items() if v}


def flags(counts, column: str) -> dict[str, int]:
    return {k: v for k, v in counts.fields[column].items() if v}


# ---------------------------------------------------------------------------------------------
# RFC 4180 records


def test_quoted_newlines_make_one_record_each(spark, tmp_path):
    # Issue 19: 200 records, a quarter with a line break inside a quoted name and a fifth inside
    # a quoted event field, were counted as 200 + (lines) rows with the broken halves
    # quarantined as malformed_row. A record is one row.
    rows = []
    for i in range(200):
        given = '"Ann\nMarie"' if i % 4 == 0 else "Ann"
        event = '"2024-01-01\r\nnote, with a comma"' if i % 5 == 0 else "2024-01-01"
        rows.append(f"r{i:03d},{GOOD_NHS},{given},Smith,1980-02-01,F,LS1 4AP,{event}")
    deliver(tmp_path, csv(*rows))
    counts, clean, quarantined = run(spark, config(tmp_path))
    assert (counts.rows_in, counts.rows_out, counts.quarantined, counts.duplicates_collapsed) == (200, 200, 0, 0)
    assert reasons(counts) == {} and quarantined == []
    assert sum(1 for r in clean.values() if r["given_name_other"] == "MARIE") == 50  # i % 4 == 0
    assert clean["r000"]["given_name"] == "ANN" and clean["r001"]["given_name_other"] is None
    assert sum(1 for r in clean.values() if "\n" in r["event_date"]) == 40  # i % 5 == 0
    assert flags(counts, "given_name") == {"present": 200}


def test_quoted_delimiters_and_doubled_quotes(spark, tmp_path):
    deliver(tmp_path, csv(
        f'r1,{GOOD_NHS},"O""Neil","Smith, Jr",1980-02-01,F,"LS1 4AP","say ""hi"""',
        f'r2,{GOOD_NHS},"Ann, Marie",Jones,1980-02-01,F,LS1 4AP,"a,b,c"',
        f"r3,{GOOD_NHS},Bob,Brown,1980-02-01,M,LS1 4AP,x",
    ))
    counts, clean, _q = run(spark, config(tmp_path))
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (3, 3, 0)
    # "" is one quote: a double quote is punctuation in a name (a separator), text in an event field.
    r1 = clean["r1"]
    assert (r1["given_name"], r1["given_name_other"], r1["family_name"], r1["event_date"]) == ("O", "NEIL", "SMITH", 'say "hi"')
    assert (clean["r2"]["given_name"], clean["r2"]["given_name_other"], clean["r2"]["event_date"]) == ("ANN", "MARIE", "a,b,c")
    assert clean["r3"]["family_name"] == "BROWN"


def test_malformed_rows_are_still_quarantined(spark, tmp_path):
    # r2 has an extra field, r3 too few; r5 opens a quote it never closes, which swallows r6
    # and r7 into its last field: one record, quarantined as malformed (the two records it
    # swallowed cannot be counted: the file holds 5 records by RFC 4180).
    deliver(tmp_path, csv(
        f"r1,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x",
        f"r2,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x,EXTRA",
        "r3,9434765911,Ivy",
        f"r4,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x",
        f'r5,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,"x',
        f"r6,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x",
        f"r7,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x",
    ))
    counts, clean, quarantined = run(spark, config(tmp_path))
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (5, 2, 3)
    assert reasons(counts) == {"malformed_row": 3} and sorted(clean) == ["r1", "r4"]
    assert [q["record_id"] for q in quarantined] == [None, None, None]


def test_bom_crlf_and_duplicate_headers(spark, tmp_path):
    data = "\ufeff".encode() + csv(
        f'r1,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,"a\r\nb"',
        f"r2,{GOOD_NHS},Bob,Jones,1980-02-01,M,LS1 4AP,x",
        newline="\r\n",
    )
    deliver(tmp_path, data)
    counts, clean, _q = run(spark, config(tmp_path))
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (2, 2, 0)
    assert clean["r2"]["family_name"] == "JONES" and clean["r2"]["event_date"] == "x"  # no stray \r
    deliver(tmp_path, b"rid,nhs,forename,surname,dob,sex,postcode,admitted,forename\nr1,1,a,b,c,d,e,f,g\n")
    with pytest.raises(SchemaError, match="duplicate column names"):
        onboard.onboard(spark, config(tmp_path), run_id="r1")


# ---------------------------------------------------------------------------------------------
# Bounded work per value and plausibility


@pytest.fixture(scope="module")
def faults(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    base = {"nhs": GOOD_NHS, "forename": "Ann", "surname": "Smith", "dob": "1980-02-01", "sex": "F", "postcode": "LS1 4AP"}
    changes = {
        "f01": {},
        "f02": {"surname": "Smith" * (MB // 5)},  # 1 MB (default limit 255): too_long
        "f03": {"forename": "A" * 256},
        "f04": {"postcode": '"LS1 4AP, LEEDS, WEST YORKSHIRE"'},  # 29 characters, limit 16
        "f05": {"nhs": "401 023 2137 " * 3},  # 39 characters, limit 32
        "f06": {"dob": "31/12/1899"},
        "f07": {"dob": "1904-12-31"},  # 121 years old on 2026-01-01
        "f08": {"dob": "2026-06-01"},  # after the delivery date
        "f09": {"forename": "Ann\U0001F600"},  # emoji
        "f10": {"surname": "Smith\u00a0Jones"},  # no-break space: a space
        "f11": {"forename": "Ann\u0007"},  # control character (BEL)
        "f12": {"surname": "\u00a0\u2009"},  # whitespace only: blank
    }
    rows = []
    for rid, change in changes.items():
        v = {**base, **change}
        rows.append(f"{rid},{v['nhs']},{v['forename']},{v['surname']},{v['dob']},{v['sex']},{v['postcode']},x")
    deliver(tmp, csv(*rows))
    yield run(spark, config(tmp))


def test_over_long_values_are_nulled_as_too_long_with_exact_counts(faults):
    counts, clean, _q = faults
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (12, 12, 0)
    assert clean["f02"]["family_name"] is None and clean["f02"]["family_name_flag"] == "too_long"
    assert clean["f03"]["given_name_flag"] == "too_long" and clean["f04"]["postcode_flag"] == "too_long"
    assert clean["f05"]["nhs_number"] is None and clean["f05"]["nhs_number_flag"] == "too_long"
    assert clean["f04"]["region"] == "UNKNOWN"
    assert flags(counts, "nhs_number") == {"present": 11, "too_long": 1}
    assert flags(counts, "postcode") == {"present": 11, "too_long": 1}
    for column, parts in counts.fields.items():  # rows out = present + missing + every reason
        assert sum(parts.values()) == counts.rows_out, column


def test_implausible_dates_of_birth(faults):
    counts, clean, _q = faults
    assert clean["f06"]["date_of_birth"] is None and clean["f06"]["date_of_birth_flag"] == "implausible_date"
    assert clean["f07"]["date_of_birth_flag"] == "implausible_date"
    assert clean["f08"]["date_of_birth_flag"] == "out_of_range"
    assert flags(counts, "date_of_birth") == {"present": 9, "implausible_date": 2, "out_of_range": 1}


def test_characters_of_names(faults):
    counts, clean, _q = faults
    assert clean["f09"]["given_name"] is None and clean["f09"]["given_name_flag"] == "invalid_characters"
    assert clean["f11"]["given_name"] is None and clean["f11"]["given_name_flag"] == "invalid_characters"
    f10 = clean["f10"]
    assert (f10["family_name"], f10["family_name_first"], f10["family_name_last"], f10["family_name_flag"]) == (
        "SMITHJONES", "SMITH", "JONES", None,
    )
    assert clean["f12"]["family_name"] is None and clean["f12"]["family_name_flag"] is None
    assert flags(counts, "given_name") == {"present": 9, "too_long": 1, "invalid_characters": 2}
    assert flags(counts, "family_name") == {"present": 10, "missing": 1, "too_long": 1}


def test_a_1mb_name_is_cleaned_in_seconds_under_a_high_limit(spark, tmp_path):
    # Issue 19: a 64 KB surname took 57 s and 1 MB did not finish. Three 1 MB shapes: words with
    # hyphens (every rule runs), digits and spaces (quadratic before), plain words (the fast-path
    # test overflowed the stack before).
    hyphenated = "Smith-Jones " * (MB // 12)
    rows = [
        f"r1,{GOOD_NHS},Ann,{hyphenated},1980-02-01,F,LS1 4AP,x",
        f"r2,{GOOD_NHS},Ann,{'1 ' * (MB // 2)},1980-02-01,F,LS1 4AP,x",
        f"r3,{GOOD_NHS},{'SMITH ' * (MB // 6)},Brown,1980-02-01,F,LS1 4AP,x",
    ]
    deliver(tmp_path, csv(*rows))
    cfg = config(tmp_path, max_length={"given_name": 2 * MB, "family_name": 2 * MB})
    started = time.perf_counter()
    counts, clean, _q = run(spark, cfg)
    seconds = time.perf_counter() - started
    assert seconds < 120, seconds  # about 10 s on 2 shared cores
    assert (counts.rows_in, counts.rows_out) == (3, 3)
    r1 = clean["r1"]
    assert r1["family_name"] == "SMITHJONES" * (MB // 12) and r1["family_name_flag"] is None
    assert (r1["family_name_first"], r1["family_name_last"]) == ("SMITH", "JONES")
    assert clean["r2"]["family_name_flag"] == "invalid_characters"
    assert clean["r3"]["given_name"] == "SMITH" and clean["r3"]["given_name_other"] == " ".join(["SMITH"] * 64)


def test_the_as_of_date_comes_from_the_dataset_config(spark, tmp_path):
    # Issue 19: plausibility is reckoned at a date the dataset config can fix, so a rerun or a
    # test flags the same values on any day (without it: the day of the run).
    deliver(tmp_path, csv(
        f"a1,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x",
        f"a2,{GOOD_NHS},Ann,Smith,1905-01-02,F,LS1 4AP,x",  # 120 whole years old on 2026-01-01 (121 today)
        f"a3,{GOOD_NHS},Ann,Smith,1905-01-01,F,LS1 4AP,x",  # 121 on 2026-01-01: implausible
        f"a4,{GOOD_NHS},Ann,Smith,2026-01-02,F,LS1 4AP,x",  # after the as-of date
    ))
    result = onboard.onboard(spark, config(tmp_path, as_of="2026-01-01"), run_id="r1")  # no as_of argument
    flagged = {r["record_id"]: r["date_of_birth_flag"] for r in result.clean.collect()}
    result.unpersist()
    assert flagged == {"a1": None, "a2": None, "a3": "implausible_date", "a4": "out_of_range"}
    assert flags(result.counts, "date_of_birth") == {"present": 2, "implausible_date": 1, "out_of_range": 1}


# ---------------------------------------------------------------------------------------------
# Source files that cannot be read whole: a named error naming the dataset and the file, and
# what to do; never a Py4J traceback, never a value.

CANARY = "Canaryqxz"  # a name that must never appear in an error


def _named(spark, cfg, *, expect: str, file: str) -> str:
    with pytest.raises(CorruptInputFileError) as raised:
        onboard.onboard(spark, cfg, run_id="r1", as_of=AS_OF)
    text = str(raised.value)
    assert f"dataset {cfg.name!r}" in text and file in text and expect in text, text
    assert "ask the provider for a whole copy of the file" in text and CANARY not in text
    assert "Py4J" not in text and "Traceback" not in text
    return text


def _rows(n: int, extra=lambda i: "x") -> bytes:
    return csv(*[f"s{i:05d},{GOOD_NHS},{CANARY},Smith,1980-02-01,F,LS1 4AP,{extra(i)}" for i in range(n)])


@pytest.mark.parametrize("suffix,compress", [(".gz", gzip.compress), (".bz2", bz2.compress)])
def test_a_truncated_compressed_file_is_named_before_any_job(spark, tmp_path, suffix, compress):
    # Issue 19: a truncated .gz was reported as "the first line is empty; expected a header".
    whole = compress(_rows(200))
    deliver(tmp_path, whole[: len(whole) // 2], name=f"part.csv{suffix}")
    _named(spark, config(tmp_path), expect="truncated", file=f"part.csv{suffix}")


def test_a_file_named_gz_that_is_not_gzip_is_named(spark, tmp_path):
    deliver(tmp_path, _rows(3), name="part.csv.gz")
    _named(spark, config(tmp_path), expect="is not gzip data", file="part.csv.gz")


def test_a_gzip_file_truncated_past_its_header_is_named_by_the_job(spark, tmp_path):
    # Over 256 KiB compressed (random hex does not compress much): the header decompresses, and
    # the damage is met by the Spark job that reads the rows.
    rng = random.Random(19)
    whole = gzip.compress(_rows(6000, lambda i: f"{rng.getrandbits(320):080x}"))
    assert len(whole) > 300_000
    deliver(tmp_path, whole[:300_000], name="part.csv.gz")
    _named(spark, config(tmp_path), expect="unreadable or truncated", file="part.csv.gz")


def test_a_truncated_parquet_source_is_named(spark, tmp_path):
    stage = tmp_path / "stage"
    spark.createDataFrame(
        [(f"p{i}", GOOD_NHS, CANARY, "Smith", "1980-02-01", "F", "LS1 4AP", "x") for i in range(20)], HEADER.replace(",", " string,") + " string",
    ).coalesce(1).write.parquet(str(stage))
    whole = next(stage.glob("part-*.parquet")).read_bytes()
    deliver(tmp_path, whole[: len(whole) // 2], name="part.parquet")
    cfg = config(tmp_path, source={"path": str(tmp_path / "src"), "format": "parquet"})
    _named(spark, cfg, expect="unreadable or truncated", file="part.parquet")


def test_a_source_file_removed_during_the_run_is_named(spark, tmp_path, monkeypatch):
    # The files are listed and planned, then one goes away before the job reads its rows.
    deliver(tmp_path, _rows(5), name="a.csv")
    deliver(tmp_path, _rows(5), name="b.csv")
    listed = onboard.read_raw

    def read_then_remove(*args, **kwargs):
        raw = listed(*args, **kwargs)
        (tmp_path / "src" / "b.csv").unlink()
        return raw

    monkeypatch.setattr(onboard, "read_raw", read_then_remove)
    _named(spark, config(tmp_path), expect="missing (removed or moved while the job ran?)", file="b.csv")
