"""`natlink run`: tokenise two datasets, train, link and report in one Spark application, judged
against the generator's truth; a rerun on the same deliveries changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from natlink.commands import run as natlink_run
from natlink.config import RunConfig
from natlink.errors import ConfigError
from natlink.store import delta

FAKE_KEY_HEX = b"test-key-not-secret-natlink-run0".hex()  # obviously fake, tests only


def _config(base: Path, **extra) -> RunConfig:
    return RunConfig(
        output_dir=str(base / "run"), data_dir=str(base / "synth"), key="env:NATLINK_TEST_RUN_KEY",
        datasets=["conf/datasets/gp.yaml", "conf/datasets/hes.yaml"], truth=str(base / "synth" / "truth"), **extra,
    )


def test_run_refuses_a_missing_truth_table_before_spark(tmp_path):
    os.environ["NATLINK_TEST_RUN_KEY"] = FAKE_KEY_HEX
    with pytest.raises(ConfigError, match="truth table not found"):
        natlink_run(_config(tmp_path))


def test_run_config_rejects_unknown_keys_and_needs_datasets(tmp_path):
    from natlink.config import load

    path = tmp_path / "run.yaml"
    path.write_text("key: env:X\ndatasets: []\nengine: spark\n")
    with pytest.raises(ConfigError) as err:
        load(path, RunConfig)
    assert "engine: unknown key" in str(err.value) and "datasets" in str(err.value)


@pytest.fixture(scope="module")
def two_runs(spark, tmp_path_factory):
    from natlink.synth import generate

    os.environ["NATLINK_TEST_RUN_KEY"] = FAKE_KEY_HEX
    base = tmp_path_factory.mktemp("natlink_run")
    generate.generate(spark, base / "synth", persons=2000, seed=23, datasets=["gp", "hes"])
    cfg = _config(base)
    first = natlink_run(cfg)
    clusters_version = delta.history(str(Path(cfg.output_dir) / "tables" / "clusters"), limit=1, spark=spark)[0]["version"]
    second = natlink_run(cfg)
    return spark, cfg, first, second, clusters_version


@pytest.mark.slow
def test_one_application_runs_every_step_and_links_accurately(two_runs):
    spark, cfg, first, _second, _v = two_runs
    assert list(first.timings) == ["tokenise:gp", "tokenise:hes", "train", "link", "evaluate", "report"]
    # Every step ran in one Spark application: the one this process holds (no JVM per step).
    assert set(first.applications.values()) == {spark.sparkContext.applicationId}
    assert set(first.applications) == set(first.timings)
    records = sum(int(m["rows"]) for m in first.manifests)
    assert records > 3500 and first.link.counts["records"] == records == first.link.counts["clustered"]
    assert first.trained and first.link.status == "completed" and first.link.run_id.startswith("run-")
    assert first.pairwise.f1 >= 0.98 and first.pairwise.records == records, first.pairwise
    assert first.cluster.precision >= 0.97 and first.cluster.recall >= 0.97, first.cluster
    out = Path(cfg.output_dir)
    assert delta.read(spark, str(out / "tables" / "clusters")).count() == records
    page = first.report.read_text(encoding="utf-8")
    assert first.report == out / "reports" / f"{first.link.run_id}.html" and first.link.run_id in page and "<html" in page


@pytest.mark.slow
def test_a_rerun_on_the_same_deliveries_changes_nothing(two_runs):
    spark, cfg, first, second, clusters_version = two_runs
    assert second.link.run_id == first.link.run_id and second.link.status == "already-completed"
    assert not second.trained
    assert [m["run_id"] for m in second.manifests] == [m["run_id"] for m in first.manifests]
    assert [m["delta_version"] for m in second.manifests] == [m["delta_version"] for m in first.manifests]
    out = Path(cfg.output_dir)
    assert delta.history(str(out / "tables" / "clusters"), limit=1, spark=spark)[0]["version"] == clusters_version
    assert second.pairwise == first.pairwise
    assert set(second.applications.values()) == {spark.sparkContext.applicationId}
