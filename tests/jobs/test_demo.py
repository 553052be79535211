"""End to end: the demo pipeline on a small synthetic population, judged against truth."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink.store import delta
from natlink.config import DemoConfig, project_root
from natlink.commands import demo as run_demo

pytestmark = pytest.mark.slow  # the whole pipeline twice (about 190 s); CI runs it with `make test-slow`

# Obviously fake key for tests only (hex of "test-key-not-secret-...").
FAKE_KEY_HEX = b"test-key-not-secret-demo-e2e-000".hex()


@pytest.fixture(scope="module")
def demo_run(spark, tmp_path_factory):
    import os

    os.environ["NATLINK_TEST_KEY"] = FAKE_KEY_HEX
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(persons=1500, seed=11, output_dir=str(out), key="env:NATLINK_TEST_KEY", model_dir=str(out / "models"))
    first = run_demo(cfg, root=project_root(), spark=spark)
    second = run_demo(cfg, root=project_root(), spark=spark)
    return cfg, first, second


def test_accuracy_against_truth(demo_run):
    _cfg, first, second = demo_run
    assert first.records > 2500
    assert first.metrics.f1 >= 0.95, first.metrics
    assert first.metrics.records == first.records
    # Same seed, same key: the rerun gives the same accuracy.
    assert second.metrics == first.metrics
    assert first.summary_line().startswith(f"precision={first.metrics.precision:.3f} ")


def test_clusters_is_a_real_partitioned_delta_table_replaced_on_rerun(spark, demo_run):
    _cfg, first, second = demo_run
    path = Path(second.clusters_path)
    assert (path / "_delta_log").is_dir()
    regions = sorted(p.name for p in path.iterdir() if p.name.startswith("region="))
    assert "region=LONDON" in regions and len(regions) >= 8
    independent = DeltaTable(str(path)).to_pyarrow_table()
    assert independent.num_rows == second.records  # replaced, not duplicated, by the rerun
    assert delta.read(spark, str(path)).count() == second.records
    assert set(independent.column("run_id").to_pylist()) == {second.run_id}


def test_no_plaintext_identifier_in_any_output_table(spark, demo_run):
    cfg, first, _second = demo_run
    out = Path(cfg.output_dir)
    raw = {
        "gp": ("forename", "surname", "nhs_no", "postcode"),
        "hes": ("GIVEN_NAME", "FAMILY_NAME", "NHS_NUMBER", "POSTCODE"),
    }
    plaintext: set[str] = set()
    for name, cols in raw.items():
        df = spark.read.option("header", True).csv(str(out / "raw" / name))
        for col in cols:
            plaintext |= {r[0].upper() for r in df.select(col).where(F.col(col).isNotNull()).distinct().collect()}
    assert len(plaintext) > 1000
    tables = [p.parent for p in out.rglob("_delta_log")]
    assert {p.name for p in tables} >= {"gp", "hes", "clusters", "edges"}
    for table in tables:
        df = delta.read(spark, str(table))
        for field in df.schema.fields:
            if isinstance(field.dataType, T.StringType):
                values = {r[0].upper() for r in df.select(field.name).distinct().collect() if r[0] is not None}
                assert not (values & plaintext), f"{table.name}.{field.name} holds plaintext"
    long_names = {v for v in plaintext if len(v) >= 7 and v.isalpha()}
    for file in out.rglob("*"):
        if file.is_file() and "raw" not in file.parts and "truth" not in file.parts:
            blob = file.read_bytes().upper()
            assert not any(n.encode() in blob for n in long_names), f"plaintext name in {file}"


def test_manifests_carry_reconciled_onboarding_counts(spark, demo_run):
    import json

    cfg, _first, second = demo_run
    out = Path(cfg.output_dir)
    total = 0
    for name in ("gp", "hes"):
        manifest = json.loads((out / "tokens" / f"{name}.manifest.json").read_text())
        counts = manifest["onboarding"]
        assert counts["rows_in"] == counts["rows_out"] + counts["quarantined"] + counts["duplicates_collapsed"]
        assert manifest["rows"] == counts["rows_out"] and manifest["run_id"] == second.run_id
        assert sum(counts["regions"].values()) == counts["rows_out"]
        total += counts["rows_out"]
    assert total == second.records
    quarantine = delta.read(spark, str(out / "tables" / "quarantine"))
    assert set(quarantine.columns) == {"dataset", "record_id", "reason", "stage", "run_id", "source_file"}
