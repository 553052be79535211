"""The quarantine table: rows of a delivery that could not be used, with the reason and run id.

One row per quarantined source row: ``dataset, record_id, reason, run_id, source_file``.
``record_id`` is NULL when it is not known (blank in the source) or not trustworthy (a malformed
CSV row, whose fields may have shifted, or an id holding undecodable bytes). No identifier
values are ever written here: reasons are fixed names and the file is a path.

The table is partitioned by ``run_id`` and ``dataset``; writing a dataset's quarantine for a run
replaces exactly that (run, dataset) partition in one Delta commit, so a rerun with the same run
id is idempotent and other runs and datasets are untouched.
"""

from __future__ import annotations

import os

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import delta

__all__ = ["REASONS", "COLUMNS", "write", "read"]

# Row-level reasons, in the order they are decided (a row gets the first that applies).
MALFORMED_ROW = "malformed_row"  # CSV row with too few / too many fields or broken quoting
INVALID_ENCODING = "invalid_encoding"  # bytes not valid in the source encoding in a mapped column
MISSING_RECORD_ID = "missing_record_id"
DUPLICATE_RECORD_ID = "duplicate_record_id"  # same record id, different content: every copy
NO_USABLE_IDENTIFIER = "no_usable_identifier"  # no identifier left after cleaning (sex aside)
TOO_FEW_IDENTIFIERS = "too_few_identifiers"  # fewer than quarantine.min_identifiers

REASONS: tuple[str, ...] = (
    MALFORMED_ROW,
    INVALID_ENCODING,
    MISSING_RECORD_ID,
    DUPLICATE_RECORD_ID,
    NO_USABLE_IDENTIFIER,
    TOO_FEW_IDENTIFIERS,
)

COLUMNS: tuple[str, ...] = (C.DATASET, C.RECORD_ID, C.REASON, C.RUN_ID, C.SOURCE_FILE)


def write(df: DataFrame, path: str | os.PathLike, *, dataset: str, run_id: str) -> delta.WriteResult:
    """Replace the (run_id, dataset) partition of the quarantine table at ``path`` with ``df``."""
    rows = df.select(
        F.lit(dataset).alias(C.DATASET),
        F.col(C.RECORD_ID).cast("string"),
        F.col(C.REASON).cast("string"),
        F.lit(run_id).alias(C.RUN_ID),
        F.col(C.SOURCE_FILE).cast("string"),
    )
    return delta.write(
        rows,
        str(path),
        partition_by=(C.RUN_ID, C.DATASET),
        replace_partitions={C.RUN_ID: [run_id], C.DATASET: [dataset]},
    )


def read(spark, path: str | os.PathLike) -> DataFrame:
    return delta.read(spark, str(path))
