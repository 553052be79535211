"""The central reader's union of token tables and its refusals (tables from conftest.token_tables)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from natlink.errors import FingerprintMismatchError, NotTokenTableError
from natlink.store import delta
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.reader import read_token_tables


def test_reader_unions_token_tables_by_manifest_path_or_table_dir(spark, token_tables):
    out, key = token_tables.out, token_tables.key
    df = read_token_tables(spark, [out / "gp.manifest.json", out / "hes"], expected_fingerprint=key.fingerprint)
    assert df.count() == 4 and {r[0] for r in df.select("dataset").distinct().collect()} == {"gp", "hes"}
    assert not set(df.columns) & {"nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode"}


def test_fingerprint_mismatch_is_refused(spark, token_tables):
    gp, alien, key, other = token_tables.gp, token_tables.alien, token_tables.key, token_tables.other
    with pytest.raises(FingerprintMismatchError, match=f"gp: {key.fingerprint}.*reg: {other.fingerprint}"):
        read_token_tables(spark, [gp, alien])
    with pytest.raises(FingerprintMismatchError, match="expected"):
        read_token_tables(spark, [gp], expected_fingerprint=other.fingerprint)


def test_what_is_not_a_token_table_is_refused(spark, token_tables, standardised, tmp_path):
    gp = token_tables.gp
    # A plaintext table dressed up with a copied manifest.
    plain = standardised().where(F.col("record_id").isin("1", "2")).drop("event_date")
    delta.write(plain, str(tmp_path / "gp"), mode="overwrite")
    data = dict(gp.data)
    forged = TokenManifest(data).save(tmp_path / "gp.manifest.json")
    with pytest.raises(NotTokenTableError, match="plaintext identifier columns"):
        read_token_tables(spark, [forged])
    # Plaintext values inside token-named columns.
    renamed = plain.select("dataset", "record_id", "region", F.lit(None).cast("string").alias("event_date"),
                           *[F.col("given_name").alias(c) for c in gp.token_purposes],
                           *[F.array(F.lit(1)).alias(c) for c in gp.blooms])
    delta.write(renamed, str(tmp_path / "gp"), mode="overwrite")
    with pytest.raises(NotTokenTableError, match="not 64-hex-digit tokens"):
        read_token_tables(spark, [forged])
    # A table without a manifest, a manifest of another kind, a row count that disagrees.
    delta.write(plain, str(tmp_path / "bare"), mode="overwrite")
    with pytest.raises(NotTokenTableError, match="without a manifest"):
        read_token_tables(spark, [tmp_path / "bare"])
    with pytest.raises(NotTokenTableError, match="kind"):
        read_token_tables(spark, [{**gp.data, "kind": "something-else"}])
    with pytest.raises(NotTokenTableError, match="manifest records 3"):
        read_token_tables(spark, [{**gp.data, "table": str(gp.table_path), "rows": 3}])
