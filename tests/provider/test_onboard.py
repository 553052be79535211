"""The bad-input catalogue: every kind gets a named error or a quarantine / field reason, and the
counts reconcile exactly. Fixtures are written to tmp_path by the tests; identifiers are fake
and include canary values that must never appear in quarantine rows, counts or messages."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import delta
from natlink.provider import onboard
from natlink.store import quarantine
from natlink.config.datasets import DatasetConfig, load_dataset
from natlink.errors import (
    ColumnTypeError,
    EmptyInputError,
    HeaderMismatchError,
    MissingColumnsError,
    QuarantineLimitError,
    SourceNotFoundError,
    UnexpectedColumnsError,
    UnusableColumnError,
)
from natlink.errors import ConfigError, NatlinkError, SchemaError

HEADER = "rid,nhs,forename,surname,dob,sex,postcode,admitted"
GOOD_NHS = "4010232137"  # NHS Digital's published example (valid check digit 7)
CANARIES = ("CANARYQZX", "CANARYWVK", "9434765911", "ZZ99 3VZ", "CANARYBYTE")


def _nhs(nine: str) -> str:
    """The first valid NHS number at or after ``nine`` (reference modulus 11, weights 10..2)."""
    n = int(nine)
    while True:
        c = 11 - sum(int(d) * w for d, w in zip(f"{n:09d}", range(10, 1, -1))) % 11
        if c != 10:
            return f"{n:09d}{0 if c == 11 else c}"
        n += 1


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
        "date_of_birth": {"unknown_day_month": ["01-01"]},
    }
    base.update(extra)
    return DatasetConfig.model_validate(base)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def lines(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode("utf-8")


def assert_no_canary(text: str) -> None:
    for canary in CANARIES:
        assert canary.upper() not in text.upper(), canary


# ---------------------------------------------------------------------------------------------
# One messy delivery with many kinds of bad row at once


@pytest.fixture(scope="module")
def messy(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("messy")
    nfd = unicodedata.normalize("NFD", "Zoë")
    test_range = _nhs("999000001")
    rows = [
        f"r01,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,2024-01-01",  # clean
        f"r02,4010232138,Bob,Jones,1970-03-04,1,M1 1AE,2024-01-02",  # bad check digit
        f"r03,{test_range},Cat,Brown,1960-05-06,2,B1 1AA,2024-01-03",  # test range
        f"r04,{_nhs('401023140')},Dan,Green,1900-01-01,M,CF10 1AA,2024-01-04",  # placeholder dob
        f"r05,{_nhs('401023150')},Eve,White,31/02/1990,F,ZZ99 3VZ,2024-01-05",  # impossible dob + pseudo postcode
        f"r06,{_nhs('401023160')},Fay,Black,1955-07-08,9,EH1 1AA,2024-01-06",  # sex 9 (not specified)
        f"r07,{_nhs('401023170')},{nfd},Brontë,1991-09-10,F,BT1 1AA,2024-01-07",  # NFD name
        f"r08,{_nhs('401023180')},CanaryQZX,Stone,1988-01-02,M,SW1A 1AA,2024-01-08",  # duplicate id, version 1
        f"r08,{_nhs('401023180')},CanaryQZX,Stoner,1988-01-02,M,SW1A 1AA,2024-01-08",  # duplicate id, conflicting
        f"r09,{_nhs('401023190')},Gil,Hart,1977-11-12,1,NE1 1AA,2024-01-09",  # exact duplicate x3
        f"r09,{_nhs('401023190')},Gil,Hart,1977-11-12,1,NE1 1AA,2024-01-09",
        f"r09,{_nhs('401023190')},gil,HART,1977-11-12,M,ne11aa,2024-01-09",  # same after standardising
        f",{_nhs('401023300')},CanaryWVK,Nash,1966-06-06,F,OX1 1AA,2024-01-10",  # missing record id
        "r10,,,,,,,2024-01-11",  # no identifier at all
        "r11,,Unknown,,1900-01-01,9,ZZ99 3WZ,2024-01-12",  # only junk identifiers -> none usable
        f"r12,{_nhs('401023310')},Hal,Moss,1950-01-01,M,PL1 1AA,2024-01-13,EXTRA",  # malformed: extra field
        "r13,9434765911,Ivy",  # malformed: too few fields (canary NHS number)
        f"r14,{_nhs('401023320')},Jo,Shaw,01/01/1975,F,GL1 1AA,2024-01-14",  # 01/01/YYYY unknown
    ]
    data = lines(*rows)
    # Non-UTF-8 bytes (Latin-1 e-acute) in a mapped column of a well-formed row.
    data += f"r15,{_nhs('401023330')},Ren\xe9CanaryByte,Cole,1982-03-03,M,SO14 1AA,2024-01-15\n".encode("latin-1")
    write(tmp, "delivery.csv", data)
    cfg = config(tmp)
    result = onboard.onboard(spark, cfg, run_id="run-messy-1", as_of=__import__("datetime").date(2026, 1, 1))
    clean = {r["record_id"]: r.asDict() for r in result.clean.collect()}
    quar = [r.asDict() for r in result.quarantine.collect()]
    yield cfg, result, clean, quar, tmp
    result.unpersist()


def test_catalogue_row_level_reasons_and_exact_counts(messy):
    _cfg, result, clean, quar, _tmp = messy
    c = result.counts
    # 19 data rows: 7 quarantined (2 malformed, 1 encoding, 1 missing id, 2 conflicting
    # duplicates, 1 no identifier) ... worked out row by row above.
    reasons = {k: v for k, v in c.quarantine_reasons.items() if v}
    assert reasons == {
        "malformed_row": 2, "invalid_encoding": 1, "missing_record_id": 1,
        "duplicate_record_id": 2, "no_usable_identifier": 2,
    }
    assert (c.rows_in, c.quarantined, c.duplicates_collapsed, c.rows_out) == (19, 8, 2, 9)
    assert c.rows_in == c.rows_out + c.quarantined + c.duplicates_collapsed
    assert len(clean) == c.rows_out and len(quar) == c.quarantined
    assert sorted(clean) == ["r01", "r02", "r03", "r04", "r05", "r06", "r07", "r09", "r14"]
    by_reason = {}
    for q in quar:
        by_reason.setdefault(q["reason"], []).append(q["record_id"])
    assert sorted(by_reason["duplicate_record_id"]) == ["r08", "r08"]
    assert by_reason["malformed_row"] == [None, None]  # a shifted row's id is not trusted
    assert by_reason["missing_record_id"] == [None]
    assert sorted(by_reason["no_usable_identifier"]) == ["r10", "r11"]
    assert by_reason["invalid_encoding"] == ["r15"]
    assert all(q["run_id"] == "run-messy-1" and q["dataset"] == "prov" and q["stage"] == "onboarding" for q in quar)
    assert tuple(result.quarantine.columns) == quarantine.COLUMNS
    assert tuple(c.quarantine_reasons) == quarantine.STAGE_REASONS["onboarding"]  # one vocabulary, every reason counted
    assert all(q["source_file"].endswith("delivery.csv") for q in quar)


def test_catalogue_field_level_reasons(messy):
    _cfg, result, clean, _quar, _tmp = messy
    f = result.counts.fields
    assert clean["r02"]["nhs_number"] is None and clean["r02"]["nhs_number_flag"] == "bad_check_digit"
    assert clean["r03"]["nhs_number_flag"] == "test_range"
    assert clean["r04"]["date_of_birth_flag"] == "placeholder"
    assert clean["r05"]["date_of_birth_flag"] == "impossible" and clean["r05"]["postcode_flag"] == "pseudo"
    assert clean["r06"]["sex"] is None and clean["r06"]["sex_flag"] == "not_specified"
    assert clean["r07"]["given_name"] == "ZOË" and clean["r07"]["family_name"] == "BRONTË"
    assert clean["r14"]["date_of_birth_flag"] == "placeholder"
    assert clean["r09"]["postcode"] == "NE1 1AA" and clean["r09"]["region"] == "NORTH_EAST_AND_YORKSHIRE"
    assert f["nhs_number"] == {
        "present": 7, "missing": 0, "bad_format": 0, "placeholder": 0, "bad_check_digit": 1, "test_range": 1, "too_long": 0,
    }
    assert f["date_of_birth"]["placeholder"] == 2 and f["date_of_birth"]["impossible"] == 1
    assert f["sex"]["not_specified"] == 1 and f["postcode"]["pseudo"] == 1
    for parts in f.values():  # rows out = present + missing + every reason, per column
        assert sum(parts.values()) == result.counts.rows_out
    assert sum(result.counts.regions.values()) == result.counts.rows_out
    assert result.counts.regions["UNKNOWN"] == 1 and result.counts.regions["WALES"] == 1


def test_no_plaintext_in_quarantine_counts_or_table(spark, messy):
    _cfg, result, _clean, quar, tmp = messy
    assert_no_canary(json.dumps(result.counts.as_dict()))
    assert_no_canary(json.dumps(quar, default=str))
    table = tmp / "tables" / "quarantine"
    quarantine.write(result.quarantine, table, dataset="prov", stage="onboarding", run_id="run-messy-1")
    quarantine.write(result.quarantine, table, dataset="prov", stage="onboarding", run_id="run-messy-1")  # rerun: replaced
    rows = delta.read(spark, str(table)).collect()
    assert len(rows) == result.counts.quarantined
    assert set(delta.read(spark, str(table)).columns) == set(quarantine.COLUMNS)
    assert_no_canary(json.dumps([r.asDict() for r in rows], default=str))
    for file in table.rglob("*"):
        if file.is_file():
            assert_no_canary(file.read_bytes().decode("latin-1"))
    # Another run appends its own partition; this run's rows stay as they were.
    quarantine.write(result.quarantine.limit(1), table, dataset="prov", stage="onboarding", run_id="run-messy-2")
    df = delta.read(spark, str(table))
    assert df.where(F.col(C.RUN_ID) == "run-messy-1").count() == result.counts.quarantined
    assert df.where(F.col(C.RUN_ID) == "run-messy-2").count() == 1


# ---------------------------------------------------------------------------------------------
# Dataset-level problems: named errors, raised before anything is written


def _raises(spark, cfg, error, *fragments):
    with pytest.raises(error) as info:
        onboard.onboard(spark, cfg, run_id="r1")
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert_no_canary(message)
    return message


def test_empty_file(spark, tmp_path):
    write(tmp_path, "part.csv", b"")
    _raises(spark, config(tmp_path), EmptyInputError, "0 bytes", str(tmp_path / "src"))


def test_header_only_file(spark, tmp_path):
    write(tmp_path, "part.csv", (HEADER + "\n").encode())
    _raises(spark, config(tmp_path), EmptyInputError, "0 data rows")
    allowed = config(tmp_path, schema_checks={"allow_empty": True})
    result = onboard.onboard(spark, allowed, run_id="r1")
    assert (result.counts.rows_in, result.counts.rows_out) == (0, 0)
    result.unpersist()


def test_missing_source(spark, tmp_path):
    _raises(spark, config(tmp_path), SourceNotFoundError, "does not exist")


def test_schema_drift_missing_column(spark, tmp_path):
    write(tmp_path, "part.csv", b"rid,nhs,forename,lastname,dob,sex,postcode,admitted\nr1,CANARYQZX,a,b,c,d,e,f\n")
    msg = _raises(spark, config(tmp_path), MissingColumnsError, "['surname']", "lastname")
    assert "present" in msg


def test_schema_drift_unexpected_column_when_strict(spark, tmp_path):
    write(tmp_path, "part.csv", (HEADER + ",ethnicity\n" + f"r1,{GOOD_NHS},A,B,1980-01-02,M,LS1 4AP,2024-01-01,X\n").encode())
    strict = config(tmp_path, schema_checks={"unexpected_columns": "error"})
    _raises(spark, strict, UnexpectedColumnsError, "['ethnicity']")
    result = onboard.onboard(spark, config(tmp_path), run_id="r1")  # default: listed, not fatal
    assert result.counts.unexpected_columns == ["ethnicity"] and result.counts.rows_out == 1
    result.unpersist()


def test_schema_drift_between_files_of_one_delivery(spark, tmp_path):
    write(tmp_path, "part-1.csv", lines(f"r1,{GOOD_NHS},A,B,1980-01-02,M,LS1 4AP,2024-01-01"))
    reordered = "rid,forename,nhs,surname,dob,sex,postcode,admitted\nr2,CANARYQZX,1,B,1980-01-02,M,LS1 4AP,2024-01-01\n"
    write(tmp_path, "part-2.csv", reordered.encode())
    _raises(spark, config(tmp_path), HeaderMismatchError, "part-2.csv")


def test_wrong_column_type(spark, tmp_path):
    df = spark.createDataFrame(
        [("r1", GOOD_NHS, "A", "B", 19800102, "M", "LS1 4AP", "2024-01-01")],
        "rid string, nhs string, forename string, surname string, dob int, sex string, postcode string, admitted string",
    )
    df.write.parquet(str(tmp_path / "src"))
    cfg = config(tmp_path, source={"path": str(tmp_path / "src"), "format": "parquet"})
    _raises(spark, cfg, ColumnTypeError, "dob (int, mapped to date_of_birth")


def test_typed_parquet_source_with_integer_nhs_numbers(spark, tmp_path):
    import datetime as dt

    df = spark.createDataFrame(
        [("r1", int(GOOD_NHS), "A", "B", dt.date(1980, 1, 2), 1, "LS1 4AP", "x")],
        "rid string, nhs bigint, forename string, surname string, dob date, sex int, postcode string, admitted string",
    )
    df.write.parquet(str(tmp_path / "src"))
    cfg = config(tmp_path, source={"path": str(tmp_path / "src"), "format": "parquet"})
    result = onboard.onboard(spark, cfg, run_id="r1")
    row = result.clean.collect()[0]
    assert (row["nhs_number"], row["date_of_birth"], row["sex"]) == (GOOD_NHS, dt.date(1980, 1, 2), "M")
    result.unpersist()


def test_all_null_identifier_column(spark, tmp_path):
    write(tmp_path, "part.csv", lines(*[f"r{i},,CanaryQZX,Smith,1980-01-0{i},M,LS1 4AP,2024-01-01" for i in range(1, 4)]))
    _raises(spark, config(tmp_path), UnusableColumnError, "column nhs", "3 blank")
    allowed = config(tmp_path, schema_checks={"allow_unusable": ["nhs_number"]})
    result = onboard.onboard(spark, allowed, run_id="r1")
    assert result.counts.fields["nhs_number"]["missing"] == 3
    result.unpersist()


def test_quarantine_limit(spark, tmp_path):
    write(tmp_path, "part.csv", lines(f"r1,{GOOD_NHS},A,B,1980-01-02,M,LS1 4AP,x", "r2,,,,,,,x", "r3,,,,,,,x"))
    limited = config(tmp_path, quarantine={"max_fraction": 0.5})
    _raises(spark, limited, QuarantineLimitError, "2 of 3 rows")


def test_config_errors_name_file_and_key(tmp_path):
    raw = {
        "name": "prov", "source": {"path": "x"}, "record_id": "rid",
        "columns": {"nhs_number": "nhs", "surname": "s"}, "colour": "blue",
    }
    path = tmp_path / "prov.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_dataset(path)
    message = str(info.value)
    assert str(path) in message and "colour" in message and "surname" in message


def test_every_error_is_a_natlink_error():
    for error in (EmptyInputError, SourceNotFoundError, UnusableColumnError, QuarantineLimitError):
        assert issubclass(error, NatlinkError)
    for error in (MissingColumnsError, UnexpectedColumnsError, ColumnTypeError, HeaderMismatchError):
        assert issubclass(error, SchemaError)


def test_demo_dataset_configs_load():
    from natlink.config import project_root

    for name in ("gp", "hes"):
        cfg = load_dataset(project_root() / "conf" / "datasets" / f"{name}.yaml")
        assert cfg.name == name and cfg.dob_formats


def test_profile_cli_prints_tables_and_writes_json_without_plaintext(spark, messy):
    from typer.testing import CliRunner

    from natlink.cli import app

    cfg, result, _clean, _quar, tmp = messy
    path = tmp / "prov.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    out_json = tmp / "profile.json"
    run = CliRunner().invoke(app, ["profile", str(path), "--json", str(out_json)])
    assert run.exit_code == 0, run.output
    assert "duplicate_record_id" in run.output and "NORTH_EAST_AND_YORKSHIRE" in run.output
    assert_no_canary(run.output)
    report = json.loads(out_json.read_text())
    assert_no_canary(out_json.read_text())
    assert (report["rows_in"], report["rows_out"], report["quarantined"]) == (19, 9, 8)
    assert report["columns"]["nhs_number"]["invalid_by_reason"]["bad_check_digit"] == 1
    assert report["columns"]["nhs_number"]["present"] == result.counts.fields["nhs_number"]["present"]
    assert sum(report["regions"].values()) == report["rows_out"]


def test_header_in_the_wrong_encoding(spark, tmp_path):
    from natlink.errors import InvalidEncodingError

    write(tmp_path, "part.csv", HEADER.replace("surname", "surn\xe4me").encode("latin-1") + b"\nr1,x\n")
    _raises(spark, config(tmp_path), InvalidEncodingError, "not valid UTF-8", "part.csv")


def test_gzipped_csv_delivery(spark, tmp_path):
    import gzip

    data = lines(f"r1,{GOOD_NHS},Ann,Smith,1980-02-01,F,LS1 4AP,x", f'r2,{GOOD_NHS},"Bo\nb",Smith,1980-02-01,F,LS1 4AP,x')
    write(tmp_path, "part.csv.gz", gzip.compress(data))
    result = onboard.onboard(spark, config(tmp_path), run_id="r1")
    assert (result.counts.rows_in, result.counts.rows_out, result.counts.quarantined) == (2, 2, 0)
    clean = {r["record_id"]: r for r in result.clean.collect()}
    assert clean["r1"]["nhs_number"] == GOOD_NHS and clean["r2"]["given_name_other"] == "B"
    result.unpersist()
