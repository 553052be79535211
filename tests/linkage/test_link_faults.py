"""The link side of the bad-input catalogue (issue 19, items 1, 4 and 7), each case with its exact outcome.

Fast by design: no case completes a link run. They reuse the session's ``small_linkage`` world
(400 synthetic persons, gp + hes, run r1) and stop where the fault shows: the run-identity check
before any read, a token-table check, the first Spark job after the tokens are loaded, or the
table writes (driven with tiny frames). What a case changes in that world it puts back.

| case | outcome |
|---|---|
| run id r1 reused with other cannot-link rules (``natlink link``) | RunIdentityError naming each setting, old -> new |
| run id r1 reused by ``natlink run`` with other cannot-link rules | the same RunIdentityError |
| run id r1 reused with its own inputs and settings | already-completed, r1's counts (test_run_identity) |
| a token-table Parquet file truncated before the run | CorruptInputFileError: file, dataset, version, re-tokenise |
| a token-table Parquet file with damaged bytes inside (ends intact) | TokenTableChangedError: table, dataset, changed after signing |
| a token-table file removed while the run reads it | CorruptInputFileError: file, dataset, missing, what to do |
| a run killed after writing clusters | readers (report, discover, extract, next run) see the last completed run only, exact counts |
| a killed run resumed after another killed run wrote | records its own versions, not the other run's |
| a killed run resumed after another run completed | rewrites its tables; its id events are not doubled |
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink import config as cfgmod
from natlink.commands import link as link_command
from natlink.config import LinkConfig, ModelConfig, project_root
from natlink.config.project import ProjectConfig
from natlink.errors import CorruptInputFileError, RunIdentityError, TokenTableChangedError
from natlink.linkage import ids, incremental, pipeline, writes
from natlink.linkage import run as linkrun
from natlink.linkage.runs import completed_runs, completed_view
from natlink.outputs import discover
from natlink.outputs.extract import write_extract
from natlink.outputs.report import collect
from natlink.spark.scratch import Scratch
from natlink.store import delta, files
from natlink.tokens.reader import signed_version, with_unique_id

LINK = LinkConfig(threshold_match_probability=0.9, engine="spark")  # small_linkage's r1 was linked with this
TOKEN_COLUMNS = ("tk_nhs_number", "tk_dob")  # their values must never reach a message


# --- item 1: a run id is bound to its inputs, model and settings ------------------------------------


def test_a_run_id_is_bound_to_its_cannot_link_rules(spark, small_linkage):
    """(With its own inputs and settings, r1 is already-completed with r1's counts: test_run_identity.)"""
    m, tables = small_linkage["manifests"], small_linkage["tables"]
    kw = dict(manifests=list(m.values()), model_path=small_linkage["model"], tables=tables, run_id="r1")
    rules = LINK.cannot_link.model_copy(update={"enabled": False, "one_row_per_person": ["hes"]})
    with pytest.raises(RunIdentityError) as refused:
        linkrun.run(spark, link_cfg=LINK.model_copy(update={"cannot_link": rules}), **kw)
    text = str(refused.value)
    assert "run id 'r1' already completed" in text and "use a new run id" in text
    assert "link setting cannot_link.enabled: True -> False" in text
    assert "link setting cannot_link.one_row_per_person: [] -> ['hes']" in text
    assert "nhs_number" not in text and "dataset" not in text  # only what differs
    assert [r[C.RUN_ID] for r in completed_runs(spark, tables)].count("r1") == 1


def test_natlink_run_refuses_a_reused_run_id_the_same_way(spark, small_linkage, monkeypatch):
    """``natlink run`` (the pipeline) passes its run id to the same check: tokenise and training are
    stubbed to give r1's token tables and model (they skip such inputs anyway: tests/tokens, tests/linkage/test_train)."""
    m = small_linkage["manifests"]
    monkeypatch.setattr(pipeline, "tokenise_configured", lambda spark, ds, *a, **k: m[ds.name])
    monkeypatch.setattr(pipeline.train, "trained_on", lambda *a: True)
    model_cfg = cfgmod.load(project_root() / "conf" / "model_deterministic.yaml", ModelConfig)
    steps: list[str] = []
    rules = LINK.cannot_link.model_copy(update={"nhs_number": False})
    with pytest.raises(RunIdentityError, match=r"run id 'r1' already completed .*link setting cannot_link.nhs_number: True -> False"):
        pipeline.tokenise_train_link(
            spark, list(small_linkage["ds"].values()), small_linkage["key"], small_linkage["base"], model_cfg,
            LINK.model_copy(update={"cannot_link": rules}), signer=None, encoding=None, step=lambda s, _m: steps.append(s),
            data_dir=str(small_linkage["base"]), model_path=small_linkage["model"], run_id="r1",
        )
    assert steps == ["tokenise:gp", "tokenise:hes", "train", "link"]


# --- item 4: a damaged or vanishing token-table file is a named error ---------------------------------


def _hes_file(spark, small_linkage) -> Path:
    m = small_linkage["manifests"]["hes"]
    uri = files.data_files(spark, m.table_path, signed_version(m))[0]
    return Path(uri.split(":", 1)[1] if uri.startswith("file:") else uri)


def _link(small_linkage, run_id: str):
    """``natlink link`` of hes alone (the damaged table; no time spent reading gp) under a new run id."""
    return link_command([small_linkage["manifests"]["hes"].path], small_linkage["model"], small_linkage["tables"],
                        run_id, link_config=project_root() / "conf" / "link.yaml")


@pytest.fixture(scope="module")
def hes_tokens(spark, small_linkage) -> list[str]:
    """A few token values of hes (read before any case damages it): no message may carry one."""
    hes = small_linkage["manifests"]["hes"]
    rows = delta.read(spark, str(hes.table_path), version=signed_version(hes)).select(*TOKEN_COLUMNS).limit(3).collect()
    return [v for r in rows for v in r if v]


def _assert_private(text: str, values: list[str]) -> None:
    assert "Py4J" not in text and "Traceback" not in text and "at org.apache" not in text
    assert values and not any(v in text for v in values)


@pytest.mark.parametrize("damage", ["truncated", "damaged_inside"])
def test_a_damaged_token_table_file_is_named_before_linking(spark, small_linkage, hes_tokens, damage):
    victim, values = _hes_file(spark, small_linkage), hes_tokens
    original = victim.read_bytes()
    runs_before = len(completed_runs(spark, small_linkage["tables"]))
    try:
        if damage == "truncated":
            victim.write_bytes(original[: len(original) // 2])
        else:  # 'PAR1' at both ends, bytes flipped in the middle: only the content digest can tell
            middle = len(original) // 2
            victim.write_bytes(original[:middle] + bytes(b ^ 0xFF for b in original[middle:middle + 64]) + original[middle + 64:])
        expected = CorruptInputFileError if damage == "truncated" else TokenTableChangedError
        with pytest.raises(expected) as raised:
            _link(small_linkage, f"r-{damage}")
    finally:
        victim.write_bytes(original)
    text = str(raised.value)
    hes = small_linkage["manifests"]["hes"]
    if damage == "truncated":
        assert f"token table {hes.table_path} (dataset 'hes', version {signed_version(hes)})" in text
        assert victim.name in text and f"({len(original) // 2} bytes) is not a whole Parquet file" in text
        assert "re-tokenise the dataset at its provider" in text
    else:
        assert f"token table {hes.table_path} (dataset 'hes')" in text and "changed after signing; refused" in text
    _assert_private(text, values)
    assert len(completed_runs(spark, small_linkage["tables"])) == runs_before


def test_a_token_table_file_removed_while_the_run_reads_it_is_named(spark, small_linkage, hes_tokens, monkeypatch):
    victim, values = _hes_file(spark, small_linkage), hes_tokens
    original = victim.read_bytes()
    loaded = linkrun.load_tokens

    def load_then_lose(*args, **kwargs):  # every check has passed: the file goes while the run works
        out = loaded(*args, **kwargs)
        victim.unlink()
        return out

    monkeypatch.setattr(linkrun, "load_tokens", load_then_lose)
    runs_before = len(completed_runs(spark, small_linkage["tables"]))
    try:
        with pytest.raises(CorruptInputFileError) as raised:
            _link(small_linkage, "r-lost")
    finally:
        victim.write_bytes(original)
    text = str(raised.value)
    hes = small_linkage["manifests"]["hes"]
    assert victim.name in text and f"(token table of dataset 'hes', version {signed_version(hes)})" in text
    assert "is missing (removed or moved while the job ran?)" in text
    assert "rerun with run id 'r-lost'" in text and "nothing of this run is visible" in text
    _assert_private(text, values)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert len(completed_runs(spark, small_linkage["tables"])) == runs_before


# --- item 7: a consistent view across the output tables ------------------------------------------------


class Killed(Exception):
    """Stands for the process dying after a table's write."""


def _kill_after(stage: str, seen: dict[str, int | None] | None = None):
    def hook(name: str, version: int | None) -> None:
        if seen is not None:
            seen[name] = version
        if name == stage:
            raise Killed(name)
    return hook


def test_a_run_killed_after_clusters_is_invisible_to_every_reader(spark, small_linkage, tmp_path):
    """Killed after its ``clusters`` write: the issue's case, new clusters beside the previous run's
    edges, person index and runs. The world's tables are copied first: nothing to put back."""
    tables = tmp_path / "tables"
    shutil.copytree(small_linkage["tables"], tables)
    hes = small_linkage["manifests"]["hes"]
    last = completed_runs(spark, tables)[-1]  # r1, or a later run another test of the session completed
    done, counts = last[C.RUN_ID], json.loads(last["counts"])
    view = completed_view(spark, tables, done)
    clusters = view.table("clusters", this_run_only=True)
    # The killed run "r-killed" links gp only, under other person ids: a reader that sees it shows it.
    killed = clusters.where(F.col(C.DATASET) == "gp").withColumn(C.PERSON_ID, F.concat(F.lit("k-"), F.col(C.PERSON_ID)))
    no_events = spark.createDataFrame([], ids.EVENT_SCHEMA)
    with Scratch(spark) as scratch, pytest.raises(Killed):
        writes.write_outputs(killed.drop(C.RUN_ID), view.table("edges").drop(C.RUN_ID), no_events, tables, run_id="r-killed",
                             epoch=99, inputs_id="not-r1", scratch=scratch, after_write=_kill_after("clusters"))
    assert delta.history(str(tables / "clusters"), limit=1)[0]["commit_info"]["run_id"] == "r-killed"  # it did write
    # The report: the last completed run's records and persons, exactly.
    report = collect(spark, tables, "latest", min_cell_count=1)
    assert report["run"]["run_id"] == done
    assert (report["clusters"]["persons"], report["clusters"]["records"]) == (counts["persons"], counts["records"])
    # The next run's previous state: that run's clusters and edges, at the versions it recorded.
    prev_clusters, prev_edges = incremental.previous_state(spark, tables, completed_runs(spark, tables)[-1])
    assert {r[0]: r[1] for r in prev_clusters.groupBy(C.RUN_ID).count().collect()} == {done: counts["records"]}
    assert prev_edges.count() == counts["edges"]
    # Discover: the person holding an NHS-number token of hes is not one of the killed run's.
    population = with_unique_id(delta.read(spark, str(hes.table_path), version=signed_version(hes)))
    token = population.where(F.col("tk_nhs_number").isNotNull()).select("tk_nhs_number").first()[0]
    found = discover.by_token(spark, tables=tables, population=population, column="tk_nhs_number", value=token)
    assert len(found) == 1 and not found[0].person_id.startswith("k-") and found[0].datasets.get("hes", 0) >= 1
    # A research extract of hes: every hes record (the killed run's clusters hold none), from that run.
    project = ProjectConfig.model_validate({"name": "killedview", "datasets": {"hes": ["region"]}, "min_cell_count": 0})
    extract = write_extract(spark, project=project, tables=tables, manifests=[hes], out=tmp_path / "extracts")
    assert extract.run_id == done and extract.rows == {"hes": hes.rows} == {"hes": counts["records_by_dataset"]["hes"]}


def _tiny(spark, run: str, n: int):
    """A run's clusters (n records, one person each), one edge and n id events: just enough rows."""
    clusters = spark.createDataFrame(
        [("gp", str(i), f"gp:{i}", "R1", f"{run}-p{i}", i) for i in range(n)],
        f"{C.DATASET} string, {C.RECORD_ID} string, {C.UNIQUE_ID} string, {C.REGION} string, {C.PERSON_ID} string, {C.RECORD_HASH} long",
    )
    edges = spark.createDataFrame([("gp:0", "gp:1", 5.0, 0.97, 0)], "unique_id_l string, unique_id_r string, match_weight double, match_probability double, match_key int")
    events = spark.createDataFrame([(run, "new", [], f"{run}-p{i}", 1, "test") for i in range(n)], ids.EVENT_SCHEMA)
    return clusters, edges, events


def test_a_resumed_run_records_its_own_versions_and_never_doubles_its_events(spark, tmp_path):
    tables = tmp_path / "tables"
    with Scratch(spark) as scratch:
        def write(run, epoch, n, hook=None):
            return writes.write_outputs(*_tiny(spark, run, n), tables, run_id=run, epoch=epoch, inputs_id=f"in-{run}", scratch=scratch, after_write=hook)

        # r2 (epoch 2) is killed after its id events, before its runs row; then r3 (epoch 2) after its clusters.
        r2_wrote: dict[str, int | None] = {}
        with pytest.raises(Killed):
            write("r2", 2, 4, _kill_after("id_events", r2_wrote))
        with pytest.raises(Killed):
            write("r3", 2, 5, _kill_after("clusters"))
        # r2 reruns in its epoch: every write is skipped, and it records the versions it wrote, not r3's latest clusters.
        again = write("r2", 2, 4)
        assert again.versions == r2_wrote and (again.persons, again.clustered) == (4, 4)
        assert delta.history(str(tables / "clusters"), limit=1)[0]["commit_info"]["run_id"] == "r3"
        # Another run completed meanwhile (epoch 3): r2 writes every table again, and its 4 stale id events go.
        later = write("r2", 3, 6)
        assert all(later.versions[t] > r2_wrote[t] for t in r2_wrote) and (later.persons, later.clustered) == (6, 6)
        events = delta.read(spark, str(tables / "id_events"), version=later.versions["id_events"])
        assert {r[0]: r[1] for r in events.groupBy(C.RUN_ID).count().collect()} == {"r2": 6}
        clusters = delta.read(spark, str(tables / "clusters"), version=later.versions["clusters"])
        assert {r[0]: r[1] for r in clusters.groupBy(C.RUN_ID).count().collect()} == {"r2": 6}
