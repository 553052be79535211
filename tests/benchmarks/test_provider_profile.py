"""benchmarks/bench_provider.py (issue 18): where a provider's CPU goes, read from Spark's event log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def provider():
    sys.path.insert(0, str(BENCH))
    import bench_provider

    return bench_provider


def _task(stage: int, cpu_ms: int, run_ms: int, shuffle: int, rows: int, finish: int) -> dict:
    return {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Task Info": {"Finish Time": finish},
            "Task Metrics": {"Executor CPU Time": cpu_ms * 1_000_000, "Executor Deserialize CPU Time": 0, "Executor Run Time": run_ms,
                             "Shuffle Write Metrics": {"Shuffle Bytes Written": shuffle}, "Input Metrics": {"Records Read": rows}}}


def test_stage_costs_sum_each_stage_s_tasks_and_name_it_by_call_site(provider, tmp_path):
    # Two tasks of stage 3 (a Delta save) and one of stage 4 (onboarding's counts), in a rolling
    # event-log folder as Spark 4 writes it; other events are ignored.
    events = [
        _task(3, 1500, 4000, 2_000_000, 0, 10_000),
        _task(3, 500, 1000, 1_000_000, 0, 12_000),
        _task(4, 250, 300, 0, 7, 11_000),
        {"Event": "SparkListenerStageCompleted", "Stage Info": {"Stage ID": 3, "Stage Name": "save at NativeMethodAccessorImpl.java:0"}},
        {"Event": "SparkListenerStageCompleted",
         "Stage Info": {"Stage ID": 4, "Stage Name": "collect at /x/y/src/natlink/provider/onboard.py:183"}},
        {"Event": "SparkListenerJobStart", "Job ID": 1},
    ]
    folder = tmp_path / "eventlog_v2_local-1"
    folder.mkdir()
    (folder / "events_1_local-1").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    stages = provider.stage_costs(tmp_path)
    assert set(stages) == {3, 4}
    assert stages[3]["cpu"] == pytest.approx(2.0) and stages[3]["run"] == pytest.approx(5.0)
    assert stages[3]["shuffle_mb"] == pytest.approx(3.0) and stages[3]["end"] == pytest.approx(12.0)
    assert stages[4]["rows"] == 7 and stages[4]["cpu"] == pytest.approx(0.25)
    assert provider.call_site(stages[4]["name"]) == "collect at provider/onboard.py:183"
    assert provider.call_site(stages[3]["name"]) == "save at NativeMethodAccessorImpl.java:0"
