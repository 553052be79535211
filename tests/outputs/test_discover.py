"""Discovery is a person lookup, never a group listing, and every lookup is audited (issue 15)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from natlink.errors import DiscoveryRefusedError
from natlink.outputs import discover


def test_only_allowed_person_level_tokens_are_looked_up_and_every_lookup_is_audited(spark, small_linkage):
    tables = small_linkage["tables"]
    population = discover.load_population(spark, list(small_linkage["manifests"].values()))
    before = len(discover.audit_rows(spark, tables))
    nhs = population.where(F.col("tk_nhs_number").isNotNull()).select("tk_nhs_number").first()[0]
    found = discover.by_token(spark, tables=tables, population=population, column="tk_nhs_number", value=nhs, who="analyst-a")
    assert len(found) == 1 and sum(found[0].datasets.values()) >= 1
    # A column that is not allow-listed (the sex token: half the population) is refused outright.
    sex = population.where(F.col("tk_sex").isNotNull()).select("tk_sex").first()[0]
    with pytest.raises(DiscoveryRefusedError, match="'tk_sex' is not an allowed lookup column"):
        discover.by_token(spark, tables=tables, population=population, column="tk_sex", value=sex, who="analyst-b")
    # Even allow-listed, a token shared by a group is refused with a count, never the persons.
    with pytest.raises(DiscoveryRefusedError, match=r"the token matches \d+ persons, more than the 1"):
        discover.by_token(spark, tables=tables, population=population, column="tk_sex", value=sex,
                          allowed_columns=("tk_sex",), who="analyst-b")
    audit = discover.audit_rows(spark, tables)[before:]
    assert [(a["who"], a["token_column"], a["outcome"]) for a in audit] == [
        ("analyst-a", "tk_nhs_number", "answered"),
        ("analyst-b", "tk_sex", "refused: column not allowed"),
        ("analyst-b", "tk_sex", "refused: token shared by a group"),
    ]
    assert audit[0]["persons"] == 1 and audit[2]["persons"] > 100
    # The audit keeps a hash of the probe, never the token.
    stored = {str(v) for a in audit for v in a.values()}
    assert nhs not in stored and sex not in stored and all(len(a["probe_sha256"]) == 16 for a in audit)
