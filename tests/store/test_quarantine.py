"""natlink.store.quarantine: the one quarantine table (write, replace, read), its stage column and
its one reason vocabulary. Every expected row and count is written out by hand from the tiny
inline frames below; deltalake's own reader checks the table's partitioning independently."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import QuarantineReasonError
from natlink.store import quarantine as Q
from natlink.tokens import tokenise

ONBOARDING_SCHEMA = "dataset string, record_id string, reason string, source_file string"
TOKENISE_SCHEMA = "dataset string, record_id string, reason string"

# gp, run r1, onboarding: 3 rows (one malformed row whose id is not trusted).
GP_R1_ONBOARDING = [
    ("gp", None, "malformed_row", "/in/gp/part-1.csv"),
    ("gp", "g7", "duplicate_record_id", "/in/gp/part-1.csv"),
    ("gp", "g7", "duplicate_record_id", "/in/gp/part-2.csv"),
]
# gp, run r1, tokenise: 2 rows (no source file at this stage).
GP_R1_TOKENISE = [("gp", "g9", "no_usable_identifier"), ("gp", None, "missing_record_id")]
# hes, run r1, onboarding: 1 row.
HES_R1_ONBOARDING = [("hes", "h1", "too_few_identifiers", "/in/hes/a.csv")]


def rows(spark, data, schema=ONBOARDING_SCHEMA):
    return spark.createDataFrame(data, schema)


def table_rows(spark, path) -> list[tuple]:
    return sorted(
        (tuple(r) for r in Q.read(spark, path).select(*Q.COLUMNS).collect()),
        key=lambda r: tuple("" if v is None else v for v in r),
    )


def expected(data, *, stage, run_id) -> list[tuple]:
    """(dataset, record_id, reason, stage, run_id, source_file) of inline rows."""
    return [(r[0], r[1], r[2], stage, run_id, r[3] if len(r) > 3 else None) for r in data]


def by_key(found: list[tuple]) -> list[tuple]:
    return sorted(found, key=lambda r: tuple("" if v is None else v for v in r))


@pytest.fixture()
def table(spark, tmp_path):
    path = tmp_path / "quarantine"
    assert Q.write(rows(spark, GP_R1_ONBOARDING), path, dataset="gp", stage="onboarding", run_id="r1").rows == 3
    assert Q.write(rows(spark, GP_R1_TOKENISE, TOKENISE_SCHEMA), path, dataset="gp", stage="tokenise", run_id="r1").rows == 2
    assert Q.write(rows(spark, HES_R1_ONBOARDING), path, dataset="hes", stage="onboarding", run_id="r1").rows == 1
    return path


def test_one_vocabulary_and_one_schema():
    assert Q.REASONS == (
        "malformed_row", "invalid_encoding", "missing_record_id",
        "duplicate_record_id", "no_usable_identifier", "too_few_identifiers",
    )
    assert Q.STAGES == ("onboarding", "tokenise")
    assert Q.STAGE_REASONS == {
        "onboarding": Q.REASONS,
        "tokenise": ("missing_record_id", "duplicate_record_id", "no_usable_identifier"),
    }
    # Tokenise decides its reasons from the same vocabulary (no second spelling such as no_identifiers).
    assert tokenise.QUARANTINE_REASONS == Q.STAGE_REASONS["tokenise"]
    assert Q.COLUMNS == ("dataset", "record_id", "reason", "stage", "run_id", "source_file")
    assert Q.PARTITION_BY == ("run_id", "dataset", "stage")


def test_write_and_read_every_stage_in_one_table(spark, table):
    assert table_rows(spark, table) == by_key(
        expected(GP_R1_ONBOARDING, stage="onboarding", run_id="r1")
        + expected(GP_R1_TOKENISE, stage="tokenise", run_id="r1")
        + expected(HES_R1_ONBOARDING, stage="onboarding", run_id="r1")
    )
    assert list(Q.read(spark, table).columns) == list(Q.COLUMNS)
    assert dict(Q.read(spark, table).dtypes) == {c: "string" for c in Q.COLUMNS}
    assert DeltaTable(str(table)).metadata().partition_columns == ["run_id", "dataset", "stage"]
    # Counts by dataset, stage and reason for the (run, dataset) pairs asked; hand-counted above.
    counted = Q.counts(spark, table, [("r1", "gp"), ("r1", "hes"), ("r9", "gp")])
    assert sorted((r["dataset"], r["stage"], r["reason"], r["rows"]) for r in counted) == [
        ("gp", "onboarding", "duplicate_record_id", 2),
        ("gp", "onboarding", "malformed_row", 1),
        ("gp", "tokenise", "missing_record_id", 1),
        ("gp", "tokenise", "no_usable_identifier", 1),
        ("hes", "onboarding", "too_few_identifiers", 1),
    ]
    assert Q.counts(spark, table, [("r1", "hes")]) == [
        {"dataset": "hes", "stage": "onboarding", "reason": "too_few_identifiers", "rows": 1}
    ]


def test_rewrite_replaces_exactly_one_run_dataset_and_stage(spark, table):
    before = table_rows(spark, table)
    # Rerun of (r1, gp, onboarding) with the same rows: idempotent, nothing else moves.
    for _ in range(2):
        assert Q.write(rows(spark, GP_R1_ONBOARDING), table, dataset="gp", stage="onboarding", run_id="r1").rows == 3
        assert table_rows(spark, table) == before
    # A rerun that quarantines one row instead of three replaces those three; tokenise rows and hes stay.
    fewer = [("gp", "g8", "invalid_encoding", "/in/gp/part-3.csv")]
    assert Q.write(rows(spark, fewer), table, dataset="gp", stage="onboarding", run_id="r1").rows == 1
    after = table_rows(spark, table)
    assert after == by_key(
        expected(fewer, stage="onboarding", run_id="r1")
        + expected(GP_R1_TOKENISE, stage="tokenise", run_id="r1")
        + expected(HES_R1_ONBOARDING, stage="onboarding", run_id="r1")
    )
    # Another run of the same dataset and stage adds its own rows: r1's stay as they were.
    Q.write(rows(spark, GP_R1_ONBOARDING[:1]), table, dataset="gp", stage="onboarding", run_id="r2")
    assert table_rows(spark, table) == by_key(after + expected(GP_R1_ONBOARDING[:1], stage="onboarding", run_id="r2"))
    # An empty frame clears its own (run, dataset, stage) only.
    Q.write(rows(spark, []), table, dataset="gp", stage="tokenise", run_id="r1")
    df = Q.read(spark, table)
    assert df.where(F.col(C.STAGE) == "tokenise").count() == 0
    assert df.count() == 1 + 1 + 1  # r1 gp onboarding, r1 hes onboarding, r2 gp onboarding


def test_the_arguments_name_dataset_stage_and_run(spark, tmp_path):
    # The frame's own dataset / stage columns do not decide where rows go: the arguments do.
    path = tmp_path / "quarantine"
    frame = rows(spark, GP_R1_TOKENISE, TOKENISE_SCHEMA).withColumn("stage", F.lit("onboarding"))
    Q.write(frame, path, dataset="gp2", stage="tokenise", run_id="r3")
    assert table_rows(spark, path) == by_key(
        [("gp2", rid, reason, "tokenise", "r3", None) for _ds, rid, reason in GP_R1_TOKENISE]
    )


def test_stage_or_reason_outside_the_vocabulary_is_refused(spark, table):
    before = table_rows(spark, table)
    with pytest.raises(QuarantineReasonError, match="stage 'standardise' is not one of"):
        Q.write(rows(spark, GP_R1_ONBOARDING), table, dataset="gp", stage="standardise", run_id="r1")
    # The old tokenise spelling, an onboarding-only reason at tokenise, and a missing reason.
    for reason in ("no_identifiers", "malformed_row", None):
        bad = rows(spark, [("gp", "g1", "missing_record_id"), ("gp", "g2", reason)], TOKENISE_SCHEMA)
        with pytest.raises(QuarantineReasonError, match="outside"):
            Q.write(bad, table, dataset="gp", stage="tokenise", run_id="r1")
    assert table_rows(spark, table) == before  # nothing was written by the refused writes
    assert Q.check_counts({"malformed_row": 4, "missing_record_id": 0}, "onboarding") == {"malformed_row": 4, "missing_record_id": 0}
    with pytest.raises(QuarantineReasonError, match=r"\['bad_date'\]"):
        Q.check_counts({"bad_date": 4}, "onboarding")
    with pytest.raises(QuarantineReasonError, match="too_few_identifiers"):
        Q.check_counts({"too_few_identifiers": 1}, "tokenise")
