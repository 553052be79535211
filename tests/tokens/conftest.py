"""Frames of identity rows for the encoding tests."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

IDENTITY_SCHEMA = (
    "dataset string, record_id string, nhs_number string, given_name string, family_name string, "
    "date_of_birth string, sex string, postcode string"
)


@pytest.fixture(scope="session")
def identities(spark):
    """A frame of identity rows (IDENTITY_SCHEMA), the date of birth parsed as standardise does."""

    def build(rows):
        return spark.createDataFrame(rows, IDENTITY_SCHEMA).withColumn("date_of_birth", F.to_date("date_of_birth"))

    return build
