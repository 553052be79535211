"""The provider job's token table + manifest, and the central reader's refusals."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from natlink.store import delta
from natlink.tokens import encode, reader
from natlink.errors import FingerprintMismatchError, NotTokenTableError, QuarantineReasonError, TokenTableChangedError
from natlink.store import quarantine as Q
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.reader import read_token_tables
from natlink.tokens.tokenise import tokenise_dataset

# Obviously fake test keys: never use outside tests.
KEY = KeyMaterial("test:not-secret-a", b"test-key-not-secret-tokenise-aaa")
OTHER = KeyMaterial("test:not-secret-b", b"test-key-not-secret-tokenise-bbb")

SCHEMA = (
    "dataset string, record_id string, region string, nhs_number string, given_name string, "
    "family_name string, date_of_birth string, sex string, postcode string, event_date string"
)
ROWS = [
    ("gp", "1", "LONDON", "9990000018", "ANN", "LEE", "1980-03-07", "F", "SW1A 1AA", "2020-01-01"),
    ("gp", "2", "LONDON", "9990000026", "BOB", "KAY", "1971-11-30", "M", "SW1A 2AA", None),
    ("gp", "3", "NORTH_WEST", None, "CAT", "ROY", "1990-01-02", "F", "M1 1AA", None),
    ("gp", "3", "NORTH_WEST", None, "DAN", "ROY", "1990-01-02", "M", "M1 1AA", None),  # duplicate id
    ("gp", None, "LONDON", "9990000034", "EVE", "ASH", "1985-05-05", "F", "E1 6AN", None),  # no id
    ("gp", "6", "UNKNOWN", None, None, None, None, None, None, None),  # nothing to link on
]


def clean(spark, dataset="gp"):
    df = spark.createDataFrame(ROWS, SCHEMA).withColumn("date_of_birth", F.to_date("date_of_birth"))
    return df.withColumn("dataset", F.lit(dataset))


@pytest.fixture(scope="module")
def outputs(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens")
    gp = tokenise_dataset(spark, clean(spark, "gp"), KEY, dataset="gp", out_dir=out, event_columns=["event_date"])
    hes = tokenise_dataset(spark, clean(spark, "hes"), KEY, dataset="hes", out_dir=out, event_columns=["event_date"],
                           upstream_quarantine={"malformed_row": 4}, run_id="run-hes-1")
    alien = tokenise_dataset(spark, clean(spark, "reg"), OTHER, dataset="reg", out_dir=out / "other")
    return out, gp, hes, alien


def test_manifest_records_counts_key_and_columns(spark, outputs):
    out, gp, hes, _ = outputs
    data = json.loads((out / "gp.manifest.json").read_text())
    assert data["kind"] == "natlink-token-table" and data["schema_version"] == encode.SCHEMA_VERSION
    assert data["dataset"] == "gp" and data["key_fingerprint"] == KEY.fingerprint and data["key_id"] == KEY.key_id
    # 6 rows in: ids 1 and 2 tokenised; both rows with id 3, the row without id and the empty row quarantined.
    assert (data["rows_in"], data["rows"]) == (6, 2)
    # Counts per stage and reason, from the one vocabulary of natlink.store.quarantine.
    assert data["quarantined"] == {
        "onboarding": {},
        "tokenise": {"duplicate_record_id": 2, "missing_record_id": 1, "no_usable_identifier": 1},
    }
    assert hes["quarantined"]["onboarding"] == {"malformed_row": 4}
    assert hes["run_id"] == "run-hes-1" and data["run_id"].startswith("run-")
    assert data["quarantine_table"] == "quarantine"
    assert data["columns"]["tokens"]["tk_dob_swapped"] == "field:date_of_birth"
    assert set(data["columns"]["blooms"]) == {"bf_given_name", "bf_family_name"}
    assert data["natlink_version"] and data["table"] == "gp"
    assert gp.table_path == (out / "gp").resolve() and delta.row_count(gp.table_path) == 2
    quarantine = Q.read(spark, out / "quarantine").where(F.col("dataset") == "gp")
    run = data["run_id"]
    assert sorted((str(r["record_id"]), r["reason"], r["stage"], r["run_id"], r["source_file"]) for r in quarantine.collect()) == sorted(
        [("3", "duplicate_record_id", "tokenise", run, None), ("3", "duplicate_record_id", "tokenise", run, None),
         ("None", "missing_record_id", "tokenise", run, None), ("6", "no_usable_identifier", "tokenise", run, None)]
    )
    assert tuple(quarantine.columns) == Q.COLUMNS
    assert not (set(quarantine.columns) & {"nhs_number", "given_name", "family_name", "postcode"})
    # rows in = rows out + quarantined, and the table holds exactly the manifest's quarantined rows.
    assert data["rows_in"] == data["rows"] + sum(data["quarantined"]["tokenise"].values()) == 2 + 4


def test_rerun_with_the_same_run_id_replaces_its_quarantine_rows(spark, outputs, tmp_path):
    out = tmp_path / "tokens"
    table = tmp_path / "tables" / "quarantine"
    for _ in range(2):
        m = tokenise_dataset(spark, clean(spark, "gp"), KEY, dataset="gp", out_dir=out, run_id="r1", quarantine_table=table)
    tokenise_dataset(spark, clean(spark, "gp"), KEY, dataset="gp", out_dir=out, run_id="r2", quarantine_table=table)
    df = Q.read(spark, table)
    # 4 rows quarantined per run (hand-counted in the test above): two runs, not three writes.
    assert {r["run_id"]: r["n"] for r in df.groupBy("run_id").agg(F.count(F.lit(1)).alias("n")).collect()} == {"r1": 4, "r2": 4}
    assert m["quarantine_table"] == str(table.resolve()) and not (out / "quarantine").exists()


def test_reasons_outside_the_vocabulary_are_refused_before_writing(spark, tmp_path):
    with pytest.raises(QuarantineReasonError, match="bad_date"):
        tokenise_dataset(spark, clean(spark, "gp"), KEY, dataset="gp", out_dir=tmp_path, upstream_quarantine={"bad_date": 4})
    assert list(tmp_path.iterdir()) == []


def test_reader_unions_token_tables_by_manifest_path_or_table_dir(spark, outputs):
    out, gp, hes, _ = outputs
    df = read_token_tables(spark, [out / "gp.manifest.json", out / "hes"], expected_fingerprint=KEY.fingerprint)
    assert df.count() == 4 and {r[0] for r in df.select("dataset").distinct().collect()} == {"gp", "hes"}
    assert not set(df.columns) & {"nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode"}


def test_fingerprint_mismatch_is_refused(spark, outputs):
    out, gp, _, alien = outputs
    with pytest.raises(FingerprintMismatchError, match=f"gp: {KEY.fingerprint}.*reg: {OTHER.fingerprint}"):
        read_token_tables(spark, [gp, alien])
    with pytest.raises(FingerprintMismatchError, match="expected"):
        read_token_tables(spark, [gp], expected_fingerprint=OTHER.fingerprint)


def test_what_is_not_a_token_table_is_refused(spark, outputs, tmp_path, manifest_signer):
    out, gp, _, _ = outputs
    # A plaintext table put where a signed manifest's table was: its files are not the signed ones.
    plain = clean(spark).where(F.col("record_id").isin("1", "2")).drop("event_date")
    delta.write(plain, str(tmp_path / "gp"), mode="overwrite")
    copied = TokenManifest(dict(gp.data)).save(tmp_path / "gp.manifest.json")
    with pytest.raises(TokenTableChangedError, match="not those .*gp.manifest.json was signed for"):
        read_token_tables(spark, [copied])
    # Even signed by a trusted signer (a provider's mistake), the reader still refuses plaintext.
    forged = TokenManifest(dict(gp.data)).save(tmp_path / "gp.manifest.json", signer=manifest_signer)
    with pytest.raises(NotTokenTableError, match="plaintext identifier columns"):
        read_token_tables(spark, [forged])
    # Plaintext values inside token-named columns.
    renamed = plain.select("dataset", "record_id", "region", F.lit(None).cast("string").alias("event_date"),
                           *[F.col("given_name").alias(c) for c in gp.token_purposes],
                           *[F.array(F.lit(1)).alias(c) for c in gp.blooms])
    delta.write(renamed, str(tmp_path / "gp"), mode="overwrite")
    forged = TokenManifest({**gp.data, "delta_version": 1}).save(tmp_path / "gp.manifest.json", signer=manifest_signer)
    with pytest.raises(NotTokenTableError, match="not hex tokens"):
        read_token_tables(spark, [forged])
    # A table without a manifest, a manifest of another kind, a row count that disagrees.
    delta.write(plain, str(tmp_path / "bare"), mode="overwrite")
    with pytest.raises(NotTokenTableError, match="without a manifest"):
        read_token_tables(spark, [tmp_path / "bare"])
    with pytest.raises(NotTokenTableError, match="kind"):
        read_token_tables(spark, [{**gp.data, "kind": "something-else"}])
    miscounted = TokenManifest({**gp.data, "table": str(gp.table_path), "rows": 3}).save(tmp_path / "n.manifest.json", signer=manifest_signer)
    with pytest.raises(NotTokenTableError, match="manifest records 3"):
        read_token_tables(spark, [miscounted])


def test_a_token_table_is_scanned_once_per_signed_content(spark, outputs, monkeypatch):
    # Training, linking and evaluating read the same tables: the value scan runs once per process
    # for the bytes a manifest is signed for (check_table_content verifies them at every read).
    _, gp, _, _ = outputs
    scans = []
    real = reader.scan_token_table
    monkeypatch.setattr(reader, "scan_token_table", lambda df, **kw: scans.append(kw["where"]) or real(df, **kw))
    reader.forget_scans()
    read_token_tables(spark, [gp])
    read_token_tables(spark, [gp])
    assert len(scans) == 1 and "dataset 'gp'" in scans[0]
    reader.forget_scans()
    read_token_tables(spark, [gp])
    assert len(scans) == 2
    # A scan an earlier process recorded for these bytes (a link run's runs table: scanned_before)
    # is not repeated; one recorded under another scan version is.
    reader.forget_scans()
    read_token_tables(spark, [gp], scanned={reader.scan_key(gp)})
    assert len(scans) == 2
    remembered = reader.scan_key(gp)
    monkeypatch.setattr(reader, "SCAN_VERSION", "natlink.value-scan/test-next")
    assert reader.scan_key(gp) != remembered
    read_token_tables(spark, [gp], scanned={remembered})
    assert len(scans) == 3


def test_token_tables_of_two_projects_share_no_token_and_are_not_read_together(spark, outputs, tmp_path):
    # Tokenising for a project derives every subkey for it: the same records under the same key
    # share no token with the project-less table or another project's, and the reader refuses to
    # mix them (what the rekey test checked before `natlink rekey` was removed).
    _, gp, _, _ = outputs
    made = {p: tokenise_dataset(spark, clean(spark, "gp"), KEY, dataset="gp", out_dir=tmp_path / p, project=p) for p in ("alpha", "beta")}
    tokens = lambda m: {v for r in read_token_tables(spark, [m]).select(*m.token_purposes).collect() for v in r if v}  # noqa: E731
    alpha, beta, source = tokens(made["alpha"]), tokens(made["beta"]), tokens(gp)
    assert len(alpha) > 10 and not (alpha & beta) and not (alpha & source)
    assert made["alpha"].project == "alpha" and made["alpha"].key_fingerprint == KEY.fingerprint
    with pytest.raises(FingerprintMismatchError, match="project alpha"):
        read_token_tables(spark, [made["alpha"], made["beta"]])
    with pytest.raises(FingerprintMismatchError, match="project beta"):
        read_token_tables(spark, [gp, made["beta"]])
