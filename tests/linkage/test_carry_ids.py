"""Person ids across a key rotation: the re-tokenised tables are linked as a new linkage whose
first run carries the old linkage's person ids over by (dataset, record id)
(natlink.linkage.carry, `natlink link --carry-ids-from`)."""

from __future__ import annotations

import csv
import json
import os

import pytest

from natlink import columns as C
from natlink.commands import tokenise_delivery
from natlink.config import DatasetConfig, LinkConfig, ModelConfig, load, project_root
from natlink.errors import CarryIdsError, RunIdentityError
from natlink.linkage import run as linkrun
from natlink.linkage import train
from natlink.linkage.runs import completed_runs, completed_view
from natlink.store import delta
from natlink.synth import generate as synth
from natlink.tokens import keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = project_root()
MODEL = load(ROOT / "conf" / "model.yaml", ModelConfig)  # block-salted, no term frequencies
LINK = LinkConfig(threshold_match_probability=0.9)
# Obviously fake, labelled key material (tests only): key versions 1 and 2 of a local key.
KEYS = {"v1": b"test-key-not-secret-carry-ids-v1-000", "v2": b"test-key-not-secret-carry-ids-v2-000"}


def person_sets(spark, tables, run_id):
    """person id -> frozenset of (dataset, record id) of one completed run."""
    out: dict = {}
    for r in completed_view(spark, tables, run_id).table("clusters").select(C.DATASET, C.RECORD_ID, C.PERSON_ID).collect():
        out.setdefault(r[C.PERSON_ID], set()).add((r[C.DATASET], r[C.RECORD_ID]))
    return {p: frozenset(s) for p, s in out.items()}


def copy_without(source_dir, target_dir, id_column, dropped):
    """The raw CSV files of a delivery without the rows whose record id is in ``dropped``."""
    target_dir.mkdir(parents=True)
    for path in sorted(source_dir.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as src, open(target_dir / path.name, "w", newline="", encoding="utf-8") as dst:
            reader = csv.DictReader(src)
            writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
            writer.writeheader()
            for row in reader:
                if row[id_column] not in dropped:
                    writer.writerow(row)


def test_person_ids_survive_a_key_rotation(spark, tmp_path):
    base = tmp_path
    synth.generate(spark, base / "data", persons=400, seed=23, datasets=["gp", "hes"])
    ds = {n: load(ROOT / "conf" / "datasets" / f"{n}.yaml", DatasetConfig) for n in ("gp", "hes")}
    material = {}
    for version, secret in KEYS.items():
        os.environ[f"NATLINK_TEST_CARRY_{version.upper()}"] = secret.hex()
        material[version] = keys.resolve(f"env:NATLINK_TEST_CARRY_{version.upper()}")
    assert material["v1"].fingerprint != material["v2"].fingerprint

    # Key version 1: tokenise, train, link (the old linkage).
    v1 = base / "v1"
    made1 = {n: tokenise_delivery(spark, ds[n], material["v1"], data_dir=str(base / "data"), out=v1, model=MODEL) for n in ds}
    model1 = train.train_job(spark, manifests=[m.path for m in made1.values()], cfg=MODEL, out_path=v1 / "model.json")
    old_tables = v1 / "tables"
    linkrun.run(spark, manifests=[m.path for m in made1.values()], model_path=model1, link_cfg=LINK, tables=old_tables, run_id="r1")
    before = person_sets(spark, old_tables, "r1")

    # Key version 2: every provider re-tokenises; a new model and a new linkage. hes's new delivery
    # lacks the records of three persons that were hes records only: their ids must retire.
    hes_only = sorted(p for p, s in before.items() if {d for d, _ in s} == {"hes"})[:3]
    dropped = {r for p in hes_only for _, r in before[p]}
    v2 = base / "v2"
    made2 = {n: tokenise_delivery(spark, ds[n], material["v2"], data_dir=str(base / "data"), out=v2, model=MODEL) for n in ds}
    model2 = train.train_job(spark, manifests=[m.path for m in made2.values()], cfg=MODEL, out_path=v2 / "model.json")
    copy_without(base / "data" / "raw" / "hes", base / "later" / "raw" / "hes", "EPIKEY", dropped)
    hes_later = tokenise_delivery(spark, ds["hes"], material["v2"], data_dir=str(base / "later"), out=base / "later", model=MODEL)
    assert hes_later.rows == made2["hes"].rows - len(dropped) and len(dropped) >= 3
    # The tokens differ under the new key (so nothing could be joined on them).
    old_tokens = {r[C.RECORD_ID]: r["tk_block__r0"] for r in delta.read(spark, str(made1["gp"].table_path)).collect()}
    new_tokens = {r[C.RECORD_ID]: r["tk_block__r0"] for r in delta.read(spark, str(made2["gp"].table_path)).collect()}
    assert old_tokens.keys() == new_tokens.keys()
    assert not {v for v in old_tokens.values() if v} & {v for v in new_tokens.values() if v}

    inputs = [made2["gp"].path, hes_later.path]
    new_tables = v2 / "linkage"
    # Refused before any scoring: a folder without a completed run, and the old linkage's own key.
    with pytest.raises(CarryIdsError, match="no completed link run"):
        linkrun.run(spark, manifests=inputs, model_path=model2, link_cfg=LINK, tables=new_tables, run_id="k2-r1",
                    carry_ids_from=base / "nowhere")
    with pytest.raises(CarryIdsError, match="not a key rotation"):
        linkrun.run(spark, manifests=[m.path for m in made1.values()], model_path=model1, link_cfg=LINK, tables=base / "v1-again",
                    run_id="r1", carry_ids_from=old_tables)
    assert completed_runs(spark, new_tables) == [] and completed_runs(spark, base / "v1-again") == []

    summary = linkrun.run(spark, manifests=inputs, model_path=model2, link_cfg=LINK, tables=new_tables, run_id="k2-r1",
                          carry_ids_from=old_tables)
    after = person_sets(spark, new_tables, "k2-r1")
    # Every person of key version 1 whose records are linked again keeps its id for the same record
    # set; the three whose records are gone are retired; no id is new, merged or split.
    expected = {p: s for p, s in before.items() if p not in hes_only}
    assert after == expected
    assert len(after) == len(before) - 3 == summary.counts["persons"]
    events = completed_view(spark, new_tables, "k2-r1").table("id_events", this_run_only=True).collect()
    assert sorted((e["event"], tuple(e["old_ids"]), e["new_id"]) for e in events) == [("retire", (p,), None) for p in hes_only]
    assert summary.counts["id_events"] == {"retire": 3}
    carried = summary.counts["carried_ids"]
    n_old = sum(len(s) for s in before.values())
    assert carried == {"from": str(old_tables), "run_id": "r1", "key_fingerprint": made1["gp"].key_fingerprint,
                       "records": n_old, "records_matched": n_old - len(dropped)}
    row = completed_runs(spark, new_tables)[-1]
    assert json.loads(row["counts"])["carried_ids"]["run_id"] == "r1" and row["key_fingerprint"] == made2["gp"].key_fingerprint
    assert "person ids carried from run r1" in summary.summary_line()
    # The run id is bound to where its person ids came from: without carrying it is another linkage.
    with pytest.raises(RunIdentityError, match=r"person ids carried from: carry_ids_from\.run_id: r1 -> None"):
        linkrun.run(spark, manifests=inputs, model_path=model2, link_cfg=LINK, tables=new_tables, run_id="k2-r1")
    again = linkrun.run(spark, manifests=inputs, model_path=model2, link_cfg=LINK, tables=new_tables, run_id="k2-r1",
                        carry_ids_from=old_tables)
    assert again.status == "already-completed" and again.counts == summary.counts

    # Carrying is for the first run only: the new linkage's next run maps to its own previous run.
    with pytest.raises(CarryIdsError, match="already has a completed run"):
        linkrun.run(spark, manifests=inputs, model_path=model2, link_cfg=LINK, tables=new_tables, run_id="k2-r2",
                    carry_ids_from=old_tables)
