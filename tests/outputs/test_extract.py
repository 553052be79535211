"""Research extracts: allow-listed columns only, random per-project ids, shuffled rows, small counts withheld."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from natlink import columns as C
from natlink.config import DatasetConfig
from natlink.config.project import ProjectConfig
from natlink.errors import ConfigError
from natlink.linkage.runs import RUNS_SCHEMA
from natlink.outputs.extract import ID_PURPOSE, PROJECT_PERSON_ID, write_extract
from natlink.store import delta
from natlink.tokens import keys
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.tokenise import tokenise_configured

FAKE_KEY_HEX = b"test-key-not-secret-extract-0000".hex()  # obviously fake, tests only
N = 60  # records in the provider's delivery; persons own 2 records each (30 persons)


@pytest.fixture(scope="module")
def linked(spark, tmp_path_factory):
    """A token table (tokenised for real) and a completed run whose clusters pair its records."""
    import os

    os.environ["NATLINK_TEST_EXTRACT_KEY"] = FAKE_KEY_HEX
    key = keys.resolve("env:NATLINK_TEST_EXTRACT_KEY")
    base = tmp_path_factory.mktemp("extract")
    (base / "src").mkdir()
    rows = ["rid,forename,surname,dob,postcode,code"]
    letters = "ABCDEFGHIJK"  # names are letters only (a digit in a name is invalid_characters)
    rows += [f"e{i:03d},NAME{letters[i % 7]},FAMILY{letters[i % 11]},19{50 + i % 40}-01-0{1 + i % 9},LS{1 + i % 9} 4AP,I{i % 5}0"
             for i in range(N)]
    (base / "src" / "d.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = DatasetConfig.model_validate({
        "name": "gp", "source": {"path": str(base / "src"), "format": "csv"}, "record_id": "rid",
        "columns": {"given_name": "forename", "family_name": "surname", "date_of_birth": "dob", "postcode": "postcode"},
        "event_columns": {"ltc_codes": "code"}, "date_formats": ["yyyy-MM-dd"],
    })
    manifest = tokenise_configured(spark, cfg, key, data_dir=None, out_dir=base / "tokens")
    tables = base / "tables"
    tokens = delta.read(spark, str(manifest.table_path))
    clusters = tokens.selectExpr("dataset", "record_id", "concat(dataset, ':', record_id) as unique_id", "region",
                                 "concat('P', cast(cast(substr(record_id, 2) as int) div 2 as string)) as person_id",
                                 "cast(null as bigint) as record_hash", "'r1' as run_id")
    version = delta.write(clusters, str(tables / "clusters"), mode="overwrite").version
    now = datetime.now(timezone.utc)
    run = {"run_id": "r1", "mode": "full", "previous_run_id": None, "started_at": now, "finished_at": now, "inputs": "[]",
           "model": "{}", "key_fingerprint": key.fingerprint, "counts": "{}", "timings": "{}",
           "versions": json.dumps({"clusters": version, "edges": None, "person_index": None, "id_events": None})}
    delta.write(spark.createDataFrame([run], RUNS_SCHEMA), str(tables / "runs"), mode="append")
    return {"base": base, "manifest": manifest, "tables": tables}


def _project(name: str, **extra) -> ProjectConfig:
    return ProjectConfig.model_validate({"name": name, "datasets": {"gp": ["ltc_codes", "region"]}, **extra})


def test_extract_holds_only_allowed_columns_and_random_project_ids(spark, linked):
    out = linked["base"] / "extracts"
    a = write_extract(spark, project=_project("alpha"), tables=linked["tables"], manifests=[linked["manifest"]], out=out)
    b = write_extract(spark, project=_project("beta"), tables=linked["tables"], manifests=[linked["manifest"]], out=out)
    ea, eb = delta.read(spark, str(out / "alpha" / "gp")), delta.read(spark, str(out / "beta" / "gp"))
    assert ea.columns == [PROJECT_PERSON_ID, "ltc_codes", "region"]
    assert (a.rows, a.persons, a.new_persons) == ({"gp": N}, {"gp": N // 2}, N // 2)
    ids_a = [r[0] for r in ea.select(PROJECT_PERSON_ID).collect()]
    assert all(uuid.UUID(i).version == 4 for i in ids_a)  # random UUIDs, not derived from anything
    # No id in common between two projects: their extracts cannot be joined by id.
    assert ea.select(PROJECT_PERSON_ID).intersect(eb.select(PROJECT_PERSON_ID)).count() == 0
    # Nothing of the token table: no token value, no record id, no centre person id.
    tokens = delta.read(spark, str(linked["manifest"].table_path))
    secret_values = {v for r in tokens.drop("ltc_codes", "region", "dataset", "age_band").collect() for v in r if isinstance(v, str)}
    extract_values = {v for r in ea.collect() for v in r if isinstance(v, str)}
    assert not secret_values & extract_values
    assert not any(v.startswith("P") and v[1:].isdigit() for v in extract_values)
    # Row order is shuffled: the records of one person are not in token-table order.
    positions = {}
    hidden = spark.read.format("delta").load(str(linked["tables"] / "projects" / "alpha" / "person_ids"))
    order = {r[PROJECT_PERSON_ID]: r[C.PERSON_ID] for r in hidden.collect()}
    for i, pid in enumerate(ids_a):
        positions.setdefault(order[pid], []).append(i)
    adjacent = sum(1 for p in positions.values() if abs(p[0] - p[1]) == 1)
    assert adjacent < N // 4, adjacent  # in table order all 30 persons' records would sit side by side
    # A refresh keeps the project's ids; no person is new.
    again = write_extract(spark, project=_project("alpha"), tables=linked["tables"], manifests=[linked["manifest"]], out=out)
    assert again.new_persons == 0
    assert sorted(r[0] for r in delta.read(spark, str(out / "alpha" / "gp")).select(PROJECT_PERSON_ID).collect()) == sorted(ids_a)
    described = json.loads((out / "alpha" / "extract.json").read_text())
    assert described["datasets"]["gp"] == {"columns": ["ltc_codes", "region"], "rows": N, "persons": N // 2}
    assert b.summary_line().startswith("extract beta from run r1: gp 60 rows / 30 persons")


def test_new_ids_come_from_a_fresh_csprng_key_that_is_never_stored(spark, linked, monkeypatch):
    # Not Spark's uuid() (Mersenne Twister seeded from java.util.Random): each extract call draws
    # 32 bytes from the OS CSPRNG; a new person's id is HMAC(that key, centre person id) as a UUID4.
    drawn = []
    real = secrets.token_bytes
    monkeypatch.setattr(secrets, "token_bytes", lambda n: drawn.append(real(n)) or drawn[-1])
    out = linked["base"] / "extracts_keyed"
    for name in ("zeta", "eta"):
        write_extract(spark, project=_project(name), tables=linked["tables"], manifests=[linked["manifest"]], out=out)
    assert [len(k) for k in drawn] == [32, 32] and drawn[0] != drawn[1]
    subkey = KeyMaterial("test:one-off-key-as-drawn", drawn[0]).subkey(ID_PURPOSE)

    def expected(person_id: str) -> str:
        return str(uuid.UUID(hmac.new(subkey, person_id.encode(), hashlib.sha256).hexdigest()[:32], version=4))

    hidden = delta.read(spark, str(linked["tables"] / "projects" / "zeta" / "person_ids")).collect()
    assert len(hidden) == N // 2 and all(r[PROJECT_PERSON_ID] == expected(r[C.PERSON_ID]) for r in hidden)
    # The key is in no file the call wrote (tables, extracts), as bytes or as hex.
    for folder in (out, linked["tables"]):
        for path in (f for f in folder.rglob("*") if f.is_file()):
            data = path.read_bytes()
            assert not any(k in data or k.hex().encode() in data for k in drawn), path


def test_small_counts_are_withheld_from_the_description(spark, linked):
    out = linked["base"] / "extracts_big_cells"
    result = write_extract(spark, project=_project("gamma", min_cell_count=100), tables=linked["tables"], manifests=[linked["manifest"]], out=out)
    described = json.loads((out / "gamma" / "extract.json").read_text())
    assert described["datasets"]["gp"]["rows"] == "<100" and described["datasets"]["gp"]["persons"] == "<100"
    assert "<100 rows" in result.summary_line()


@pytest.mark.parametrize("column", ["tk_given_name", "bf_family_name", "record_id", "person_id", "nhs_number", "unique_id"])
def test_a_project_can_never_ask_for_identifying_columns(column):
    with pytest.raises(ValidationError, match="can never be in a research extract"):
        ProjectConfig.model_validate({"name": "p", "datasets": {"gp": ["region", column]}})


def test_a_column_the_dataset_does_not_keep_is_refused(spark, linked):
    project = ProjectConfig.model_validate({"name": "delta", "datasets": {"gp": ["region", "diag_01"]}})
    with pytest.raises(ConfigError, match=r"dataset 'gp' keeps no columns \['diag_01'\]"):
        write_extract(spark, project=project, tables=linked["tables"], manifests=[linked["manifest"]], out=Path(linked["base"]) / "x")
