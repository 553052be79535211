"""A tokenise run id is bound to its delivery; one summary that reconciles (issue 19, items 3 and 5)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from typer.testing import CliRunner

from natlink.cli import app
from natlink.config import DatasetConfig
from natlink.errors import RunIdentityError
from natlink.store import delta
from natlink.store import quarantine as Q
from natlink.tokens import keys
from natlink.tokens.tokenise import tokenise_configured

FAKE_KEY_HEX = b"test-key-not-secret-delivery-000".hex()  # obviously fake, tests only
HEADER = "rid,nhs,forename,surname,dob,sex,postcode"
ROWS = [
    "d01,4010232137,Ann,Smith,1980-02-01,F,LS1 4AP",
    "d02,,Bob,Jones,1970-03-04,M,M1 1AE",
    "d03,,Cat,Brown,1960-05-06,F,B1 1AA",  # exact duplicate: collapsed
    "d03,,Cat,Brown,1960-05-06,F,B1 1AA",
    "d04,,Dan,Green,1950-01-01,M,CF10 1AA",  # conflicting duplicates: both quarantined
    "d04,,Dan,Greene,1950-01-01,M,CF10 1AA",
    "d05,,,,,,",  # no identifier
    "d06,,Eve,White,1990-01-01,F,OX1 1AA,EXTRA",  # malformed (extra field)
]


def _config(tmp_path: Path) -> DatasetConfig:
    return DatasetConfig.model_validate({
        "name": "deliv",
        "source": {"path": str(tmp_path / "src"), "format": "csv"},
        "record_id": "rid",
        "columns": {"nhs_number": "nhs", "given_name": "forename", "family_name": "surname",
                    "date_of_birth": "dob", "sex": "sex", "postcode": "postcode"},
        "date_formats": ["yyyy-MM-dd"],
    })


def _deliver(tmp_path: Path, rows) -> None:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "delivery.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")


@pytest.fixture()
def key(monkeypatch):
    monkeypatch.setenv("NATLINK_TEST_DELIVERY_KEY", FAKE_KEY_HEX)
    return keys.resolve("env:NATLINK_TEST_DELIVERY_KEY")


def _quarantined(spark, out: Path) -> dict[str, int]:
    rows = Q.read(spark, out / "quarantine").groupBy(F.col("run_id")).count().collect()
    return {r["run_id"]: int(r["count"]) for r in rows}


def test_a_rerun_reuses_its_run_id_and_replaces_its_own_quarantine_rows(spark, tmp_path, key):
    _deliver(tmp_path, ROWS)
    cfg, out = _config(tmp_path), tmp_path / "out"
    first = tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out)
    run_id = first["run_id"]
    assert run_id.startswith("tok-") and len(run_id) == 20
    # 8 records in = 3 tokenised + 4 quarantined (1 malformed, 2 conflicting, 1 no identifier) + 1 collapsed
    assert first.summary_line() == (
        "deliv: 8 records in = 3 tokenised + 4 quarantined (onboarding: duplicate_record_id 2, malformed_row 1, "
        "no_usable_identifier 1; tokenise: none) + 1 duplicates collapsed"
    )
    assert first["summary"] == {
        "records_in": 8, "tokenised": 3, "quarantined": 4, "duplicates_collapsed": 1, "reconciles": True,
        "quarantined_by_stage": {"onboarding": {"duplicate_record_id": 2, "malformed_row": 1, "no_usable_identifier": 1}, "tokenise": {}},
    }
    assert _quarantined(spark, out) == {run_id: 4}
    version = delta.history(str(out / "deliv"), limit=1)[0]["version"]
    again = tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out)
    assert again["run_id"] == run_id and again.data == first.data
    assert _quarantined(spark, out) == {run_id: 4}  # not 8: the rerun did not append again
    assert delta.history(str(out / "deliv"), limit=1)[0]["version"] == version  # nothing rewritten
    # A new delivery gets its own run id; the manifest names it, so readers count only its rows.
    _deliver(tmp_path, ROWS + ["d07,,Fay,Black,1955-07-08,F,EH1 1AA"])
    third = tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out)
    assert third["run_id"] != run_id and third["summary"]["records_in"] == 9 and third.rows == 4
    assert _quarantined(spark, out) == {run_id: 4, third["run_id"]: 4}


def test_a_run_id_reused_for_another_delivery_is_refused(spark, tmp_path, key):
    _deliver(tmp_path, ROWS)
    cfg, out = _config(tmp_path), tmp_path / "out"
    tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out, run_id="t1")
    assert tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out, run_id="t1")["run_id"] == "t1"  # same delivery: fine
    _deliver(tmp_path, ROWS[:-1])
    with pytest.raises(RunIdentityError, match=r"run id 't1' already tokenised a different delivery: file delivery.csv changed \(size"):
        tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out, run_id="t1")
    (tmp_path / "src" / "second.csv").write_text(HEADER + "\n", encoding="utf-8")
    with pytest.raises(RunIdentityError, match="file second.csv is new"):
        tokenise_configured(spark, cfg, key, data_dir=None, out_dir=out, run_id="t1")
    os.remove(tmp_path / "src" / "second.csv")
    other = keys.KeyMaterial("test-other", b"test-key-not-secret-delivery-two")  # obviously fake
    _deliver(tmp_path, ROWS)
    os.utime(tmp_path / "src" / "delivery.csv")
    with pytest.raises(RunIdentityError, match="key_fingerprint"):
        tokenise_configured(spark, cfg, other, data_dir=None, out_dir=out, run_id="t1")


def test_a_1mb_field_is_tokenised_in_seconds_and_the_command_prints_the_reconciled_summary(spark, tmp_path, key):
    # Issue 19, item 2: one 64 KB surname took 57 s and 1 MB never finished. Through the whole of
    # `natlink tokenise` (in process, on the session's Spark): a 1 MB family name under a raised
    # limit is cleaned, tokenised and Bloom-encoded; a 1 MB given name over the default limit (255)
    # is nulled as too_long before any cleaning; a row whose only identifier is such a name is
    # quarantined (no usable identifier). Item 3: the command prints where every record went.
    mb = 1 << 20
    _deliver(tmp_path, [
        "m1,4010232137,Ann,Smith,1980-02-01,F,LS1 4AP",
        f"m2,,Bob,{'Smith-Jones ' * (mb // 12)},1970-03-04,M,M1 1AE",
        f"m3,,{'A' * mb},Brown,1960-05-06,F,B1 1AA",
        f"m4,,{'B' * mb},,,,",
    ])
    config = {**json.loads(_config(tmp_path).model_dump_json(exclude_defaults=True)), "max_length": {"family_name": 2 * mb}}
    (tmp_path / "deliv.yaml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    started = time.perf_counter()
    run = CliRunner().invoke(app, [
        "tokenise", "--dataset", str(tmp_path / "deliv.yaml"), "--key", "env:NATLINK_TEST_DELIVERY_KEY",
        "--out", str(tmp_path / "out"), "--model", "conf/model_deterministic.yaml",
    ])
    seconds = time.perf_counter() - started
    assert run.exit_code == 0, run.output
    # 31 s in the suite at load 11; 104 s when it is the session's first Spark job (cold JIT) at load 15.
    # Before the linear cleaning a 1 MB name did not finish in 7 minutes.
    assert seconds < 120, seconds
    assert "deliv: 4 records in = 3 tokenised + 1 quarantined (onboarding: no_usable_identifier 1; tokenise: none) " \
        "+ 0 duplicates collapsed\n" in run.output
    manifest = json.loads((tmp_path / "out" / "deliv.manifest.json").read_text())
    assert manifest["summary"] == {
        "records_in": 4, "tokenised": 3, "quarantined": 1, "duplicates_collapsed": 0, "reconciles": True,
        "quarantined_by_stage": {"onboarding": {"no_usable_identifier": 1}, "tokenise": {}},
    }
    given = {k: v for k, v in manifest["onboarding"]["fields"]["given_name"].items() if v}
    family = {k: v for k, v in manifest["onboarding"]["fields"]["family_name"].items() if v}
    assert given == {"present": 2, "too_long": 1} and family == {"present": 3}
    tokens = {r["record_id"]: r.asDict() for r in delta.read(spark, str(tmp_path / "out" / "deliv")).collect()}
    assert sorted(tokens) == ["m1", "m2", "m3"]
    assert tokens["m2"]["tk_family_name"] is not None and tokens["m3"]["tk_given_name"] is None
