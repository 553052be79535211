"""Authenticated manifests: the reader refuses unsigned, edited, forged and untrusted manifests,
and tables whose files changed after signing (issue 15: a forged manifest was accepted)."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink.errors import FingerprintMismatchError, ManifestSignatureError, TokenTableChangedError
from natlink.store import delta, snapshot
from natlink.tokens import signing
from natlink.tokens.encode import SCHEMA_VERSION
from natlink.tokens.manifest import MANIFEST_KIND, TokenManifest, as_manifest
from natlink.tokens.reader import read_token_tables

TOKEN = "ab" * 32  # a well-formed token value (64 hex digits)


def _table(spark, folder: Path, name: str, rows: int = 3):
    df = spark.range(rows).select(
        F.lit(name).alias("dataset"), F.col("id").cast("string").alias("record_id"), F.lit("LONDON").alias("region"),
        F.lit(TOKEN).alias("tk_nhs_number"),
    )
    written = delta.write(df, str(folder / name), mode="overwrite", partition_by=("region",))
    return {
        "kind": MANIFEST_KIND, "manifest_version": 1, "schema_version": SCHEMA_VERSION, "dataset": name,
        "key_fingerprint": "f" * 32, "project": None, "rows": written.rows, "table": name,
        "delta_version": written.version,
        "columns": {"keep": ["dataset", "record_id", "region"], "tokens": {"tk_nhs_number": "field:nhs_number"}, "blooms": {}},
    }


@pytest.fixture(scope="module")
def signed(spark, tmp_path_factory, manifest_signer):
    folder = tmp_path_factory.mktemp("signed")
    data = _table(spark, folder, "gp")
    manifest = TokenManifest(data).save(folder / "gp.manifest.json", signer=manifest_signer)
    return folder, manifest


def test_a_signed_manifest_binds_its_table_and_is_read(spark, signed, manifest_signer):
    folder, manifest = signed
    on_disk = json.loads((folder / "gp.manifest.json").read_text())
    assert on_disk["signature"]["algorithm"] == "ed25519" and on_disk["signature"]["key_id"] == manifest_signer.key_id
    digest = snapshot.content_digest(folder / "gp")
    assert on_disk["table_content"] == digest.as_dict() and digest.files >= 1 and digest.version == 0
    assert read_token_tables(spark, [folder / "gp.manifest.json"]).count() == 3


def test_unsigned_edited_and_forged_manifests_are_refused_naming_the_file(spark, signed, tmp_path):
    folder, manifest = signed
    data = json.loads((folder / "gp.manifest.json").read_text())
    unsigned = tmp_path / "unsigned.manifest.json"
    unsigned.write_text(json.dumps({k: v for k, v in data.items() if k != "signature"}))
    with pytest.raises(ManifestSignatureError, match=f"{unsigned}: the manifest is not signed"):
        as_manifest(unsigned)
    # Edited after signing: a different key fingerprint (to slip past the mixed-key check), or rows.
    for field, value in (("key_fingerprint", "0" * 32), ("rows", 2)):
        edited = tmp_path / f"edited-{field}.manifest.json"
        edited.write_text(json.dumps({**data, field: value, "table": str(folder / "gp")}))
        with pytest.raises(ManifestSignatureError, match=f"{edited}: the signature of 'tests' does not match"):
            read_token_tables(spark, [edited])
    # Signed by a key nobody trusts (the forger's own).
    forger = signing.load_signer(signing.create_signing_key(tmp_path / "forger.key").reference)
    forged = TokenManifest({**data, "key_fingerprint": "0" * 32, "table": str(folder / "gp")}).save(tmp_path / "forged.manifest.json", signer=forger)
    with pytest.raises(ManifestSignatureError, match=f"{forged.path}: signed by key {forger.key_id}, which no trusted signer"):
        read_token_tables(spark, [forged])
    # A malformed signature, and an in-memory mapping (named as such).
    with pytest.raises(ManifestSignatureError, match="malformed"):
        as_manifest({**data, "signature": {"algorithm": "rsa", "key_id": "x", "value": ""}})
    with pytest.raises(ManifestSignatureError, match="manifest of 'gp' \\(not from a file\\): the signature .* does not match"):
        as_manifest({**data, "rows": 4})


def test_forged_fingerprint_cannot_mix_keys_and_honest_mixes_are_still_refused(spark, signed, tmp_path, manifest_signer):
    folder, manifest = signed
    other = _table(spark, tmp_path, "hes")
    # The attack of issue 15: a hand-made manifest claiming gp's fingerprint for another key's table.
    claimed = tmp_path / "hes.manifest.json"
    claimed.write_text(json.dumps({**other, "key_fingerprint": manifest.key_fingerprint}))
    with pytest.raises(ManifestSignatureError, match="not signed"):
        read_token_tables(spark, [manifest, claimed])
    # A signed manifest of a table made under another key: the mixed-key check refuses it.
    honest = TokenManifest({**other, "key_fingerprint": "0" * 32}).save(claimed, signer=manifest_signer)
    with pytest.raises(FingerprintMismatchError, match="different keys"):
        read_token_tables(spark, [manifest, honest])


def test_signers_are_trusted_for_their_datasets_only(signed, tmp_path, manifest_signer):
    folder, _ = signed
    registry = signing.write_registry(tmp_path / "providers.yaml", {"hospital": (manifest_signer.public_key, ["hes"])})
    with pytest.raises(ManifestSignatureError, match="signer 'hospital' is not trusted for dataset 'gp'"):
        as_manifest(folder / "gp.manifest.json", trusted=registry)
    with signing.trusting(registry):
        with pytest.raises(ManifestSignatureError, match="not trusted for dataset 'gp'"):
            as_manifest(folder / "gp.manifest.json")
    assert as_manifest(folder / "gp.manifest.json").dataset == "gp"  # outside the block: the suite's registry
    empty = signing.write_registry(tmp_path / "empty.yaml", {})
    with pytest.raises(ManifestSignatureError, match="no trusted signer in .*empty.yaml"):
        as_manifest(folder / "gp.manifest.json", trusted=empty)


def test_a_table_changed_after_signing_is_refused(spark, tmp_path, manifest_signer):
    data = _table(spark, tmp_path, "gp")
    manifest = TokenManifest(data).save(tmp_path / "gp.manifest.json", signer=manifest_signer)
    assert read_token_tables(spark, [manifest]).count() == 3
    # One byte of one data file changed in place: same name, same size, same Delta log.
    part = sorted((tmp_path / "gp").rglob("*.parquet"))[0]
    blob = bytearray(part.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    original = part.read_bytes()
    part.write_bytes(bytes(blob))
    with pytest.raises(TokenTableChangedError, match=f"not those {tmp_path / 'gp.manifest.json'} was signed for"):
        read_token_tables(spark, [manifest])
    part.write_bytes(original)
    assert read_token_tables(spark, [manifest]).count() == 3
    # A commit after signing (rows appended) does not change what the manifest describes: the reader
    # reads the version it signed (time travel), so a link run id keeps meaning the same inputs.
    extra = spark.range(1).select(F.lit("gp").alias("dataset"), F.lit("9").alias("record_id"), F.lit("LONDON").alias("region"), F.lit(TOKEN).alias("tk_nhs_number"))
    delta.write(extra, str(tmp_path / "gp"), mode="append", partition_by=("region",))
    assert read_token_tables(spark, [manifest]).count() == 3
    # Signing refuses a manifest whose recorded version is not the table's.
    with pytest.raises(ManifestSignatureError, match="records 0: the table changed after it was written"):
        TokenManifest(data).save(tmp_path / "gp.manifest.json", signer=manifest_signer)


def test_signing_keys_are_private_files_and_never_shown(tmp_path):
    made = signing.create_signing_key(tmp_path / "provider.key")
    assert stat.S_IMODE((tmp_path / "provider.key").stat().st_mode) == 0o600
    assert made.public_path.read_text().strip() == made.public_key and made.public_key.startswith("ed25519:")
    secret = (tmp_path / "provider.key").read_text().strip()
    signer = signing.load_signer(made.reference)
    assert signer.key_id == made.key_id and secret not in repr(signer) and secret not in made.public_key
    with pytest.raises(ManifestSignatureError, match="cannot be pickled"):
        pickle.dumps(signer)
    with pytest.raises(Exception, match="refusing to overwrite"):
        signing.create_signing_key(tmp_path / "provider.key")
    saved = os.environ.pop(signing.SIGNING_KEY_ENV)
    try:
        with pytest.raises(ManifestSignatureError, match="no manifest signing key"):
            signing.load_signer(None)
    finally:
        os.environ[signing.SIGNING_KEY_ENV] = saved


def test_resigning_its_own_manifest_reuses_the_digest_only_for_the_same_table(spark, tmp_path, manifest_signer, monkeypatch):
    data = _table(spark, tmp_path, "gp")
    first = TokenManifest(data).save(tmp_path / "gp.manifest.json", signer=manifest_signer)
    calls = []
    real = snapshot.content_digest
    monkeypatch.setattr(snapshot, "content_digest", lambda *a, **k: calls.append(a) or real(*a, **k))
    # tokenise adds the onboarding counts and signs again: the table's bytes are not read twice.
    again = TokenManifest({**first.data, "onboarding": {"rows_in": 3}}).save(first.path, signer=manifest_signer)
    assert calls == [] and again.table_content == first.table_content
    assert as_manifest(first.path).data["onboarding"] == {"rows_in": 3}
    # The same manifest placed beside another table (same name, same version): digested afresh.
    other = tmp_path / "elsewhere"
    _table(spark, other, "gp", rows=4)
    moved = TokenManifest({**again.data, "rows": 4}).save(other / "gp.manifest.json", signer=manifest_signer)
    assert len(calls) == 1 and moved.table_content != first.table_content
    assert read_token_tables(spark, [moved]).count() == 4
