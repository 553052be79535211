"""Frames of identities for the encoding tests, and token tables shared by the tokenise, reader
and rekey tests (tokenised once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.tokenise import tokenise_dataset

# Obviously fake test keys: never use outside tests.
KEY = KeyMaterial("test:not-secret-a", b"test-key-not-secret-tokenise-aaa")
OTHER = KeyMaterial("test:not-secret-b", b"test-key-not-secret-tokenise-bbb")

IDENTITY_SCHEMA = (
    "dataset string, record_id string, nhs_number string, given_name string, family_name string, "
    "date_of_birth string, sex string, postcode string"
)
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


@dataclass(frozen=True)
class TokenTables:
    out: Path
    gp: TokenManifest
    hes: TokenManifest
    alien: TokenManifest  # made under OTHER
    key: KeyMaterial = KEY
    other: KeyMaterial = OTHER


@pytest.fixture(scope="session")
def identities(spark):
    """A frame of identity rows (IDENTITY_SCHEMA), the date of birth parsed as standardise does."""

    def build(rows):
        return spark.createDataFrame(rows, IDENTITY_SCHEMA).withColumn("date_of_birth", F.to_date("date_of_birth"))

    return build


@pytest.fixture(scope="session")
def standardised(spark):
    """A standardised frame of ROWS (6 rows) under the dataset name given."""

    def build(dataset: str = "gp"):
        df = spark.createDataFrame(ROWS, SCHEMA).withColumn("date_of_birth", F.to_date("date_of_birth"))
        return df.withColumn("dataset", F.lit(dataset))

    return build


@pytest.fixture(scope="session")
def token_tables(spark, standardised, tmp_path_factory) -> TokenTables:
    out = tmp_path_factory.mktemp("tokens")
    gp = tokenise_dataset(spark, standardised("gp"), KEY, dataset="gp", out_dir=out, event_columns=["event_date"])
    hes = tokenise_dataset(spark, standardised("hes"), KEY, dataset="hes", out_dir=out, event_columns=["event_date"],
                           upstream_quarantine={"bad_date": 4})
    alien = tokenise_dataset(spark, standardised("reg"), OTHER, dataset="reg", out_dir=out / "other")
    return TokenTables(out, gp, hes, alien)
