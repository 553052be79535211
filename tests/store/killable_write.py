"""A writer for tests/store/test_delta_contract.py to kill with SIGKILL in the middle of a write.

    python killable_write.py TABLE

Appends job_rows() to the unpartitioned table TABLE with txn (APP_ID, 1). Task 0 writes its
row at once; the other tasks sleep two minutes first, so the table folder holds a data file of
this write long before Delta could commit it.
"""

from __future__ import annotations

import sys

from pyspark.sql import functions as F

APP_ID = "killable-job"
REGIONS = ("LONDON", "WALES", "NORTH_WEST", "SCOTLAND")


def job_rows() -> list[tuple]:
    return [(f"k{i}", 100 + i, REGIONS[i]) for i in range(len(REGIONS))]


def main(table: str) -> None:
    from natlink.spark.session import get_spark
    from natlink.store import delta

    spark = get_spark("killable-write", master="local[2]")
    ids = spark.range(0, len(REGIONS), 1, len(REGIONS))  # one row per task
    regions = F.element_at(F.array(*[F.lit(r) for r in REGIONS]), (F.col("id") + 1).cast("int"))
    sleep = F.expr("java_method('java.lang.Thread', 'sleep', if(id = 0, cast(0 as bigint), cast(120000 as bigint)))")
    rows = ids.select(
        F.concat(F.lit("k"), F.col("id").cast("string")).alias("record_id"),
        (F.col("id") + 100).alias("n"),
        regions.alias("region"),
        sleep.alias("slept"),
    ).drop("slept")
    delta.write(rows, table, txn=(APP_ID, 1))


if __name__ == "__main__":
    main(sys.argv[1])
