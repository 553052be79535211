"""A run id is bound to its inputs; readers see only completed runs (issue 19, items 1 and 7).

One small world (400 synthetic persons, gp + hes): run r1, then
* a re-tokenised hes under the same run id is refused, saying what differs; the original inputs
  (read at the version their manifest records) are the same run: already-completed;
* a run r2 killed after its clusters and edges writes is invisible to every reader (the report,
  discover, the case-study view, the next run), and cannot be resumed with other inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink import config as cfgmod
from natlink.commands import tokenise_delivery
from natlink.config import DatasetConfig, LinkConfig, ModelConfig, project_root
from natlink.errors import RunIdentityError
from natlink.linkage import run as linkrun
from natlink.linkage import train
from natlink.linkage.runs import completed_view
from natlink.outputs import discover
from natlink.outputs.report import collect
from natlink.store import delta
from natlink.synth import generate as synth
from natlink.tokens import keys
from natlink.tokens.manifest import TokenManifest

FAKE_KEY_HEX = b"test-key-not-secret-identity-000".hex()  # obviously fake, tests only
LINK = LinkConfig(threshold_match_probability=0.9, engine="spark")


def _source_file(small_linkage, name: str) -> Path:
    found = sorted((small_linkage["base"] / "raw" / name).rglob("*.csv"))
    assert found, f"no CSV source for {name}"
    return found[0]


def test_reused_run_id_with_a_replaced_token_table_is_refused(spark, small_linkage):
    m, tables = small_linkage["manifests"], small_linkage["tables"]
    assert small_linkage["r1"].status == "completed"
    same = linkrun.run(spark, manifests=list(m.values()), model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r1")
    assert same.status == "already-completed" and same.counts == small_linkage["r1"].counts
    # A new hes delivery (its last record removed) re-tokenised into the same folder.
    source = _source_file(small_linkage, "hes")
    original = source.read_bytes()
    lines = original.decode("utf-8").splitlines(keepends=True)
    crc = source.with_name(f".{source.name}.crc")  # Spark's checksum beside the file: a provider's edit has none
    crc_bytes = crc.read_bytes() if crc.exists() else None
    crc.unlink(missing_ok=True)
    try:
        source.write_text("".join(lines[:-1]), encoding="utf-8")
        new_hes = tokenise_delivery(spark, small_linkage["ds"]["hes"], small_linkage["key"], data_dir=str(small_linkage["base"]), out=small_linkage["base"])
        assert new_hes.rows == m["hes"].rows - 1
        with pytest.raises(RunIdentityError) as refused:
            linkrun.run(spark, manifests=[m["gp"], new_hes], model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r1")
        text = str(refused.value)
        assert "run id 'r1' already completed" in text
        assert f"dataset 'hes' rows: {m['hes'].rows} -> {m['hes'].rows - 1}" in text
        assert "dataset 'hes' delta_version" in text and "dataset 'hes' content_id" in text and "'gp'" not in text
        # A different threshold is a different linkage too.
        with pytest.raises(RunIdentityError, match="model threshold_match_probability: 0.9 -> 0.95"):
            linkrun.run(spark, manifests=list(m.values()), model_path=small_linkage["model"],
                        link_cfg=LINK.model_copy(update={"threshold_match_probability": 0.95}), tables=tables, run_id="r1")
        # The original manifest still names the version r1 read (time travel): the same run.
        again = linkrun.run(spark, manifests=list(m.values()), model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r1")
        assert again.status == "already-completed"
    finally:
        source.write_bytes(original)
        if crc_bytes is not None:
            crc.write_bytes(crc_bytes)
        tokenise_delivery(spark, small_linkage["ds"]["hes"], small_linkage["key"], data_dir=str(small_linkage["base"]), out=small_linkage["base"])


def _crash(small_linkage, run_id: str, crash_after: str) -> int:
    manifests = [str(m.path) for m in small_linkage["manifests"].values()]
    script = f"""
import sys
sys.path.insert(0, {str(project_root() / 'src')!r})
from natlink.spark.session import get_spark
from natlink.linkage import run as linkrun
from natlink.config import LinkConfig
spark = get_spark('crash', master='local[2]', conf={{'spark.driver.memory': '2g'}})
linkrun.run(spark, manifests={manifests!r}, model_path={str(small_linkage['model'])!r},
            link_cfg=LinkConfig(threshold_match_probability=0.9, engine='spark'), tables={str(small_linkage['tables'])!r},
            run_id={run_id!r}, crash_after={crash_after!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=900, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    return proc.returncode


def test_a_killed_run_is_invisible_to_readers_and_cannot_resume_with_other_inputs(spark, small_linkage):
    tables, r1 = small_linkage["tables"], small_linkage["r1"]
    assert _crash(small_linkage, "r2", "edges") == 137
    # The killed run did write: the latest clusters and edges are r2's.
    assert {r[0] for r in delta.read(spark, str(tables / "clusters")).select(C.RUN_ID).distinct().collect()} == {"r2"}
    assert {r[0] for r in delta.read(spark, str(tables / "edges")).select(C.RUN_ID).distinct().collect()} == {"r2"}
    # Every reader sees r1, consistently.
    view = completed_view(spark, tables)
    assert view.run_id == "r1"
    for name in ("clusters", "edges", "person_index"):
        seen = {r[0] for r in view.table(name).select(C.RUN_ID).distinct().collect()}
        assert seen == {"r1"}, name
    assert view.table("clusters").count() == r1.counts["records"]
    report = collect(spark, tables, "latest", min_cell_count=1)
    assert report["run"]["run_id"] == "r1"
    assert sum(d["persons"] for d in report["clusters"]["by_size"]) == r1.counts["persons"]
    population = discover.load_population(spark, list(small_linkage["manifests"].values()))
    token = population.where(F.col("tk_nhs_number").isNotNull()).select("tk_nhs_number").first()[0]
    found = discover.by_token(spark, tables=tables, population=population, column="tk_nhs_number", value=token)
    r1_ids = {r[0] for r in view.table("clusters").select(C.PERSON_ID).collect()}
    assert found and all(d.person_id in r1_ids for d in found)
    # r2 cannot be resumed with other inputs (here: gp only) ...
    with pytest.raises(RunIdentityError, match="run id 'r2' was started with different inputs and did not complete"):
        linkrun.run(spark, manifests=[small_linkage["manifests"]["gp"]], model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r2")
    # ... and resumes with its own: then it is what readers see.
    r2 = linkrun.run(spark, manifests=list(small_linkage["manifests"].values()), model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r2")
    assert r2.status == "completed" and r2.counts["clustered"] == r2.counts["records"] == r1.counts["records"]
    assert completed_view(spark, tables).run_id == "r2"
    assert r2.summary_line().startswith(f"run r2 completed ({r2.mode}): {r1.counts['records']} records in (gp ")


def test_differences_name_each_model_field_by_its_label():
    """No Spark: the lines RunIdentity.differences writes, per field of the model part, both ways
    between set and unset (a field set on one side only is compared key by key against nothing)."""
    import json

    from natlink.linkage.run_identity import MODEL_FIELDS, MODEL_LABELS, RunIdentity

    assert set(MODEL_LABELS) == set(MODEL_FIELDS)
    carried = {"run_id": "r1", "key_fingerprint": "fp-fake", "clusters_content_id": "c-fake"}
    base = {"settings_hash": "h1", "threshold_match_probability": 0.9, "cannot_link": {"enabled": True}, "block_splits": None,
            "carry_ids_from": None}
    row = {"inputs": "[]", "model": json.dumps({**base, "carry_ids_from": carried})}
    assert RunIdentity([], base).differences(row) == [
        "person ids carried from: carry_ids_from.clusters_content_id: c-fake -> None",
        "person ids carried from: carry_ids_from.key_fingerprint: fp-fake -> None",
        "person ids carried from: carry_ids_from.run_id: r1 -> None",
    ]
    now = {**base, "threshold_match_probability": 0.95, "cannot_link": {"enabled": False}, "carry_ids_from": {"run_id": "r0"}}
    assert RunIdentity([], now).differences({"inputs": "[]", "model": json.dumps(base)}) == [
        "model threshold_match_probability: 0.9 -> 0.95",
        "link setting cannot_link.enabled: True -> False",
        "person ids carried from: carry_ids_from.run_id: None -> r0",
    ]
    assert RunIdentity([], base).differences({"inputs": "[]", "model": json.dumps(base)}) == []


def test_a_rerun_in_a_new_process_relies_on_the_value_scan_of_an_earlier_run(spark, small_linkage, tmp_path, monkeypatch):
    """A monthly rerun reads unchanged tables: their value scan passed in r1 (same signed content,
    recorded in r1's runs row), so a new process does not scan them again, and says so."""
    import shutil

    from natlink.tokens import reader

    tables = tmp_path / "tables"
    shutil.copytree(small_linkage["tables"], tables)  # r1 completed there; the fixture's folder stays as it was
    scans = []
    real = reader.scan_token_table
    monkeypatch.setattr(reader, "scan_token_table", lambda df, **kw: scans.append(kw["where"]) or real(df, **kw))
    reader.forget_scans()  # as a new process
    manifests = list(small_linkage["manifests"].values())
    r2 = linkrun.run(spark, manifests=manifests, model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r2", mode="full")
    assert scans == [] and r2.counts["value_scan_passed_in"] == {"gp": "r1", "hes": "r1"}
    assert "value scan passed in earlier runs: gp (run r1), hes (run r1)" in r2.summary_line()
    # The same clusters as r1: nothing else changed.
    view = completed_view(spark, tables, "r2").table("clusters", this_run_only=True)
    assert view.count() == small_linkage["r1"].counts["clustered"]
    # Another scan version (a stricter check in a later natlink) scans again.
    monkeypatch.setattr(reader, "SCAN_VERSION", "natlink.value-scan/test-next")
    reader.forget_scans()
    r3 = linkrun.run(spark, manifests=manifests, model_path=small_linkage["model"], link_cfg=LINK, tables=tables, run_id="r3", mode="full")
    assert len(scans) == 2 and "value_scan_passed_in" not in r3.counts
