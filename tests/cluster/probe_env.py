"""Submitted with spark-submit by test_standalone_cluster.py: where do the driver and the executors
import natlink, pyarrow and pyspark from, and with which Python? Prints one ``PROBE {json}`` line.

    spark-submit ... tests/cluster/probe_env.py [JOB.py JOB-ARGS...]

Given a job file, it then runs that job as ``__main__`` in the same application (the job's
``get_spark()`` returns this session), which saves a second application start and a second
fetch and unpack of the environment archive on every executor.

Not a test module (no ``test_`` prefix): it runs inside the submitted application.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _where() -> dict:
    import natlink
    import pyarrow
    import pyspark

    from natlink.synth import tables as synth_tables

    return {
        "natlink": natlink.__file__,
        "pyarrow": pyarrow.__file__,
        "pyspark": pyspark.__file__,
        "python": sys.executable,
        "prefix": sys.prefix,
        "cwd": os.getcwd(),
        # A data file read through importlib.resources: proves non-.py files load from the zip.
        "postcode_rows": len(synth_tables.read_data_csv("postcode_areas.csv")),
    }


def _partition(_rows):
    time.sleep(1.0)  # long enough that both single-core executors take tasks
    yield json.dumps(_where())


def main() -> int:
    from natlink.spark.session import get_spark

    spark = get_spark("natlink-probe")
    sc = spark.sparkContext
    executors = [json.loads(r) for r in sc.parallelize(range(4), 4).mapPartitions(_partition).collect()]
    registered = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # minus the driver
    print("PROBE " + json.dumps({"driver": _where(), "executors": executors, "registered_executors": registered,
                                  "master": sc.master}))
    sys.stdout.flush()
    if len(sys.argv) > 1:
        import runpy

        sys.argv = sys.argv[1:]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as done:
            if done.code not in (None, 0):
                raise
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
