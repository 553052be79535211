"""The provider job's token table, quarantine rows and manifest (tables from conftest.token_tables)."""

from __future__ import annotations

import json

from pyspark.sql import functions as F

from natlink.store import delta
from natlink.tokens import encode


def test_manifest_records_counts_key_and_columns(spark, token_tables):
    out, gp, hes, key = token_tables.out, token_tables.gp, token_tables.hes, token_tables.key
    data = json.loads((out / "gp.manifest.json").read_text())
    assert data["kind"] == "natlink-token-table" and data["schema_version"] == encode.SCHEMA_VERSION
    assert data["dataset"] == "gp" and data["key_fingerprint"] == key.fingerprint and data["key_id"] == key.key_id
    # 6 rows in: ids 1 and 2 tokenised; both rows with id 3, the row without id and the empty row quarantined.
    assert (data["rows_in"], data["rows"]) == (6, 2)
    assert data["quarantined"]["tokenise"] == {"duplicate_record_id": 2, "missing_record_id": 1, "no_identifiers": 1}
    assert hes["quarantined"]["standardise"] == {"bad_date": 4}
    assert data["columns"]["tokens"]["tk_dob_swapped"] == "field:date_of_birth"
    assert set(data["columns"]["blooms"]) == {"bf_given_name", "bf_family_name"}
    assert data["natlink_version"] and data["table"] == "gp"
    assert gp.table_path == (out / "gp").resolve() and delta.row_count(gp.table_path) == 2
    quarantine = delta.read(spark, str(out / "quarantine")).where(F.col("dataset") == "gp")
    assert sorted((str(r["record_id"]), r["reason"]) for r in quarantine.collect()) == sorted(
        [("3", "duplicate_record_id"), ("3", "duplicate_record_id"), ("None", "missing_record_id"), ("6", "no_identifiers")]
    )
    assert not (set(quarantine.columns) & {"nhs_number", "given_name", "family_name", "postcode"})
