"""The quarantine table: every row that could not be used, with its stage, reason and run id.

One table and one reason vocabulary for the whole provider side; this module is the table's only
writer and reader. One row per quarantined row::

    dataset, record_id, reason, stage, run_id, source_file

* ``stage``: ``onboarding`` (:func:`natlink.provider.onboard.onboard`: read, check, standardise)
  or ``tokenise`` (:func:`natlink.tokens.tokenise.tokenise_dataset`: standardised rows that cannot
  be tokenised usefully).
* ``reason``: one of :data:`REASONS`; each stage decides a subset (:data:`STAGE_REASONS`), and a
  row gets the first reason of its stage that applies, in the order listed.
* ``record_id``: NULL when it is not known (blank in the source) or not trustworthy (a malformed
  CSV row, whose fields may have shifted, or an id holding undecodable bytes).
* ``source_file``: the delivery file the row came from; NULL where unknown (the tokenise stage
  sees standardised rows, not files).

No identifier values are ever written here: reasons and stages are fixed names and the file is a
path. The table is partitioned by ``run_id``, ``dataset`` and ``stage``; writing one
(run_id, dataset, stage) replaces exactly that partition in one Delta commit, so a rerun with the
same run id is idempotent and other runs, datasets and stages are untouched.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import QuarantineReasonError
from natlink.store import delta

__all__ = [
    "REASONS",
    "STAGES",
    "STAGE_REASONS",
    "COLUMNS",
    "PARTITION_BY",
    "check_counts",
    "write",
    "read",
    "exists",
    "counts",
]

# Stages, in the order rows pass them.
ONBOARDING = "onboarding"
TOKENISE = "tokenise"
STAGES: tuple[str, ...] = (ONBOARDING, TOKENISE)

# Row-level reasons, in the order they are decided (a row gets the first that applies).
MALFORMED_ROW = "malformed_row"  # CSV row with too few / too many fields or broken quoting
INVALID_ENCODING = "invalid_encoding"  # bytes not valid in the source encoding in a mapped column
MISSING_RECORD_ID = "missing_record_id"
DUPLICATE_RECORD_ID = "duplicate_record_id"  # same record id, different content: every copy
NO_USABLE_IDENTIFIER = "no_usable_identifier"  # no identifier left after cleaning (sex aside at onboarding)
TOO_FEW_IDENTIFIERS = "too_few_identifiers"  # fewer than quarantine.min_identifiers

REASONS: tuple[str, ...] = (
    MALFORMED_ROW,
    INVALID_ENCODING,
    MISSING_RECORD_ID,
    DUPLICATE_RECORD_ID,
    NO_USABLE_IDENTIFIER,
    TOO_FEW_IDENTIFIERS,
)
STAGE_REASONS: dict[str, tuple[str, ...]] = {
    ONBOARDING: REASONS,
    TOKENISE: (MISSING_RECORD_ID, DUPLICATE_RECORD_ID, NO_USABLE_IDENTIFIER),
}

COLUMNS: tuple[str, ...] = (C.DATASET, C.RECORD_ID, C.REASON, C.STAGE, C.RUN_ID, C.SOURCE_FILE)
PARTITION_BY: tuple[str, ...] = (C.RUN_ID, C.DATASET, C.STAGE)

# Raised inside Spark when a row's reason is outside its stage's vocabulary (no value shown).
_UNKNOWN_REASON = "natlink quarantine: a reason outside the stage's vocabulary"


def _check_stage(stage: str) -> tuple[str, ...]:
    if stage not in STAGE_REASONS:
        raise QuarantineReasonError(f"quarantine stage {stage!r} is not one of {list(STAGES)}")
    return STAGE_REASONS[stage]


def check_counts(by_reason: Mapping[str, int], stage: str) -> dict[str, int]:
    """``by_reason`` as a dict, refused unless every reason is in ``stage``'s vocabulary."""
    allowed = _check_stage(stage)
    unknown = sorted(str(r) for r in by_reason if r not in allowed)
    if unknown:
        raise QuarantineReasonError(
            f"quarantine counts of stage {stage!r} name reasons {unknown} outside its vocabulary {list(allowed)}"
        )
    return {r: int(n) for r, n in by_reason.items()}


def _conform(df: DataFrame, *, dataset: str, stage: str, run_id: str) -> DataFrame:
    """The table's schema contract; a reason outside the stage's vocabulary fails the write."""
    allowed = _check_stage(stage)
    reason = F.col(C.REASON).cast("string")
    source_file = F.col(C.SOURCE_FILE) if C.SOURCE_FILE in df.columns else F.lit(None)
    return df.select(
        F.lit(dataset).alias(C.DATASET),
        F.col(C.RECORD_ID).cast("string").alias(C.RECORD_ID),
        F.when(reason.isin(*allowed), reason).otherwise(F.raise_error(F.lit(_UNKNOWN_REASON))).alias(C.REASON),
        F.lit(stage).alias(C.STAGE),
        F.lit(run_id).alias(C.RUN_ID),
        source_file.cast("string").alias(C.SOURCE_FILE),
    )


def write(df: DataFrame, path: str | os.PathLike, *, dataset: str, stage: str, run_id: str) -> delta.WriteResult:
    """Replace the (run_id, dataset, stage) partition of the quarantine table at ``path`` with ``df``.

    ``df`` needs ``record_id`` and ``reason``; ``source_file`` is NULL when it has none. Its own
    dataset, stage and run id columns, if any, are replaced by the arguments.
    """
    rows = _conform(df, dataset=dataset, stage=stage, run_id=run_id)
    try:
        return delta.write(
            rows,
            str(path),
            partition_by=PARTITION_BY,
            replace_partitions={C.RUN_ID: [run_id], C.DATASET: [dataset], C.STAGE: [stage]},
        )
    except Exception as exc:
        if _UNKNOWN_REASON not in str(exc):
            raise
        raise QuarantineReasonError(
            f"quarantine of dataset {dataset!r}, stage {stage!r}, run {run_id}: rows with a reason outside "
            f"{list(STAGE_REASONS[stage])} (or none); nothing written to {path}"
        ) from None


def read(spark, path: str | os.PathLike) -> DataFrame:
    return delta.read(spark, str(path))


def exists(path: str | os.PathLike) -> bool:
    return delta.exists(str(path))


def counts(spark, path: str | os.PathLike, runs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Quarantined rows by dataset, stage and reason for the given (run_id, dataset) pairs."""
    wanted = F.lit(False)
    for run_id, dataset in runs:
        wanted = wanted | ((F.col(C.RUN_ID) == F.lit(run_id)) & (F.col(C.DATASET) == F.lit(dataset)))
    counted = (
        read(spark, path)
        .where(wanted)
        .groupBy(C.DATASET, C.STAGE, C.REASON)
        .agg(F.count(F.lit(1)).alias("rows"))
        .collect()
    )
    return [{C.DATASET: r[C.DATASET], C.STAGE: r[C.STAGE], C.REASON: r[C.REASON], "rows": int(r["rows"])} for r in counted]
