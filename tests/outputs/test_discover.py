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


def test_a_probe_tokenised_from_one_row_finds_its_person(spark, small_linkage, tmp_path):
    """How `natlink discover --help` says a probe is made: the provider tokenises a one-row CSV of
    the person (same dataset config, same key) and the centre passes that table's manifest."""
    import csv

    from natlink import columns as C
    from natlink import commands
    from natlink.linkage.runs import completed_view

    gp = small_linkage["ds"]["gp"]
    part = sorted((small_linkage["base"] / "raw" / "gp").glob("*.csv"))[0]
    with open(part, newline="", encoding="utf-8") as fh:
        header, row = list(csv.reader(fh))[:2]  # the first synthetic record of the extract
    (tmp_path / "raw" / "gp").mkdir(parents=True)
    with open(tmp_path / "raw" / "gp" / "probe.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, row])
    made = commands.tokenise_delivery(spark, gp, small_linkage["key"], data_dir=str(tmp_path), out=tmp_path / "probe")
    assert discover.read_probe_file(made.path) == made.path and made.rows == 1

    found = commands.discover(small_linkage["tables"], [m.path for m in small_linkage["manifests"].values()], probe=made.path,
                              model_path=small_linkage["model"])
    record = f"gp:{row[header.index(gp.record_id)]}"
    clusters = completed_view(spark, small_linkage["tables"]).table("clusters")
    person = clusters.where(F.col(C.UNIQUE_ID) == record).select(C.PERSON_ID).first()[0]
    assert found[0].person_id == person and found[0].datasets.get("gp", 0) >= 1
