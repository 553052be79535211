"""Declared identifiers (identifier kinds) in federated mode: pins for their purposes, the pin
check at tokenise, and tokens that link exactly as local ones do (a small FEBRL-like dataset
with conf/datasets/febrl/febrl3.yaml: a person id without check digit, a free postcode, address
lines and a category; conf/model_febrl.yaml)."""

from __future__ import annotations

import csv
import os
import random

import pytest
import yaml

from natlink import columns as C
from natlink import commands
from natlink.config import LinkConfig, ModelConfig, load, project_root
from natlink.errors import ConfigError, EncodingSpecError, KeyServiceProofError, KeyServiceRequestError
from natlink.keyservice import oprf
from natlink.keyservice.client import KeyServiceClient
from natlink.linkage import run as linkrun
from natlink.linkage import train
from natlink.linkage.runs import completed_view
from natlink.store import delta
from natlink.tokens.salted import SaltedScheme

from ks_support import groups

ROOT = project_root()
DATASET = ROOT / "conf" / "datasets" / "febrl" / "febrl3.yaml"
MODEL = ROOT / "conf" / "model_febrl.yaml"
DECLARED = ["salted:inner/id:person_id:soc_sec_id", "salted:inner/id:address:address_1_soundex", "salted:inner/id:category:state"]


@pytest.mark.parametrize("purpose", [
    "salted:inner/id:person_id:soc_sec_id", "project:p1/salted:inner/id:address:address_1_nysiis",
    "salted:inner/id:date:visit_date", "salted:inner/id:postcode:zip_district", "salted:inner/id:category:state",
    "salted:inner/id:address:" + "a" * 64,
])
def test_declared_purposes_are_accepted(purpose):
    assert oprf.check_purpose(purpose) == purpose


@pytest.mark.parametrize("purpose", [
    "salted:inner/id:given_name:x",  # not a declared kind
    "salted:inner/id:person_id:Soc",  # upper case
    "salted:inner/id:person_id:a__b", "salted:inner/id:person_id:_a", "salted:inner/id:person_id:a_",
    "salted:inner/id:person_id:", "salted:inner/id:person_id:" + "a" * 65, "salted:inner/id:person_id:1a",
    "salted:inner/id:person_id:a:b", "salted:inner/id:person_id:a\n", "id:person_id:a", "salted:salt/id:person_id:a",
])
def test_junk_purposes_are_still_refused(purpose):
    with pytest.raises(KeyServiceRequestError):
        oprf.check_purpose(purpose)


def test_public_keys_pin_the_purposes_of_declared_identifiers(keyservice):
    builtin = commands.keyservice_public_keys(keyservice.service_config)
    assert not any("/id:" in p for p in builtin)
    pins = commands.keyservice_public_keys(keyservice.service_config, datasets=[DATASET])
    # The six built-in identifiers' 17 purposes, and febrl3's declared ones: soc_sec_id (1), four
    # address lines with Soundex and NYSIIS (12), state (1); postcode is the built-in one (free format).
    assert len(builtin) == 17 and len(pins) == 17 + 14 and set(builtin) <= set(pins)
    assert set(DECLARED) <= set(pins)
    # The service derives the same keys on first use: its answer for each is the pin.
    client = KeyServiceClient(keyservice.client_config("gp"))
    assert all(client.public_key(p) == bytes.fromhex(pins[p].split(":", 1)[1]) for p in DECLARED)
    # --model: only what the model's rules and fields use (FEBRL's model compares no address_2 Soundex).
    narrowed = commands.keyservice_public_keys(keyservice.service_config, datasets=[DATASET], model=MODEL, project="p1")
    assert "project:p1/salted:inner/id:address:address_2_nysiis" in narrowed
    assert "project:p1/salted:inner/id:address:address_2_soundex" not in narrowed and len(narrowed) == 21
    with pytest.raises(ConfigError, match=r"tk_soc_sec_id.*--dataset"):
        commands.keyservice_public_keys(keyservice.service_config, model=MODEL)
    with pytest.raises(ConfigError, match=r"tk_soc_sec_id.*'gp'"):
        commands.keyservice_public_keys(keyservice.service_config, model=MODEL, datasets=[ROOT / "conf" / "datasets" / "gp.yaml"])


def test_the_cli_prints_the_pins_as_the_provider_config_takes_them(keyservice):
    from typer.testing import CliRunner

    from natlink.cli import app

    result = CliRunner().invoke(app, ["keyservice", "public-keys", "--config", str(keyservice.service_config),
                                      "--dataset", str(DATASET), "--model", str(MODEL)])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)["public_keys"]
    assert printed == commands.keyservice_public_keys(keyservice.service_config, datasets=[DATASET], model=MODEL)
    assert len(printed) == 21 and set(DECLARED) <= set(printed)


# --- tokenise both ways -----------------------------------------------------------------------

GIVEN = [("catherine", "katherine"), ("jon", "john"), ("steven", "stephen"), ("sara", "sarah"), ("philip", "phillip"),
         ("mitchell", "mitchel"), ("harley", "harly"), ("lydia", "lidia"), ("toby", "tobi"), ("isabelle", "isabel")]
FAMILY = [("smith", "smyth"), ("green", "greene"), ("mason", "masson"), ("webb", "web"), ("stubbs", "stubs"),
          ("hathaway", "hathway"), ("mccarthy", "mcarthy"), ("zilm", "zilm"), ("reid", "read"), ("taylor", "tailor")]
STREETS = [("wallaby place", "walaby place"), ("kent street", "kent st"), ("hoseason street", "hosason street"),
           ("gundulu place", "gundulu plce"), ("yuranigh court", "yuranig court"), ("mckillop circuit", "mckilop circuit")]
SUBURBS = [("cleveland", "clevland"), ("marsden", "marsdon"), ("granville", "granvile"), ("banyo", "banyo"), ("corio", "korio")]
STATES = ["nsw", "vic", "qld", "sa", "wa", "tas"]
HEADER = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
          "date_of_birth", "soc_sec_id"]


def febrl_like(persons: int, seed: int) -> list[list[str]]:
    """Originals and up to three duplicates each with FEBRL's kinds of error: spelling variants,
    day and month swapped, a digit changed, values missing. Fake data, made here."""
    rnd = random.Random(seed)
    rows = []
    for p in range(persons):
        g, f, s, b = rnd.choice(GIVEN), rnd.choice(FAMILY), rnd.choice(STREETS), rnd.choice(SUBURBS)
        year, month, day = rnd.randint(1930, 2000), rnd.randint(1, 12), rnd.randint(1, 28)
        base = {"given_name": g[0], "surname": f[0], "street_number": str(rnd.randint(1, 60)), "address_1": s[0],
                "address_2": rnd.choice(["", "delmar", "milton", "brentwood vlge"]), "suburb": b[0],
                "postcode": str(rnd.choice([2119, 3165, 4881, 2193, 4220])), "state": rnd.choice(STATES),
                "date_of_birth": f"{year}{month:02d}{day:02d}", "soc_sec_id": str(1_000_000 + rnd.randrange(60_000))}
        rows.append([f"rec-{p}-org", *[base[h] for h in HEADER[1:]]])
        for k in range(rnd.choice([0, 1, 1, 2, 3])):
            dup = dict(base)
            for _ in range(rnd.randint(1, 3)):
                change = rnd.randrange(10)
                if change == 0:
                    dup["given_name"] = g[1]
                elif change == 1:
                    dup["surname"] = f[1]
                elif change == 2:
                    dup["address_1"], dup["suburb"] = s[1], b[1]
                elif change == 3 and day <= 12:
                    dup["date_of_birth"] = f"{year}{day:02d}{month:02d}"
                elif change == 4:
                    dup["soc_sec_id"] = dup["soc_sec_id"][:-1] + str((int(dup["soc_sec_id"][-1]) + 1) % 10)
                elif change == 5:
                    dup[rnd.choice(["address_2", "state", "street_number", "postcode"])] = ""
                elif change == 6:
                    dup["date_of_birth"] = f"{year + 1}{month:02d}{day:02d}"
                elif change == 7:
                    dup[rnd.choice(["state", "street_number", "postcode", "address_2"])] = rnd.choice(["nt", "9", "3000", "milton"])
                elif change == 8:
                    dup["date_of_birth"] = f"{year}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"
                else:
                    dup["given_name"], dup["surname"] = dup["surname"], dup["given_name"]
            rows.append([f"rec-{p}-dup-{k}", *[dup[h] for h in HEADER[1:]]])
    return rows



def partition(clusters):
    by_person: dict = {}
    for r in clusters.select(C.RECORD_ID, C.PERSON_ID).collect():
        by_person.setdefault(r[C.PERSON_ID], set()).add(r[C.RECORD_ID])
    return sorted(sorted(g) for g in by_person.values())


def febrl_model(folder):
    """conf/model_febrl.yaml, with address_2's NYSIIS level allowed unobserved (no two of this
    small population's second address lines differ with the same NYSIIS code)."""
    raw = yaml.safe_load(MODEL.read_text())
    raw["training"]["allow_unobserved"]["address_2"] = ["same NYSIIS"]
    path = folder / "model_febrl.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_federated_tokens_of_declared_identifiers_link_as_local_ones(spark, keyservice, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    persons = 220
    rows = febrl_like(persons, seed=3)
    with open(data / "febrl3.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    model_config = febrl_model(tmp_path)
    # The provider pins what the custodian prints: first only the built-in purposes (refused, naming
    # the declared ones the model needs), then with its dataset's declared identifiers.
    path = keyservice.client_configs["gp"]
    raw = yaml.safe_load(path.read_text())
    raw["url"] = keyservice.url
    raw["public_keys"] = commands.keyservice_public_keys(keyservice.service_config)
    path.write_text(yaml.safe_dump(raw))
    os.environ["NATLINK_TEST_ENCODING_KEY"] = (keyservice.root / "gp" / "encoding.key").read_text()  # fake, labelled
    key = "env:NATLINK_TEST_ENCODING_KEY"
    with pytest.raises(KeyServiceProofError, match=r"10 purpose\(s\).*'salted:inner/id:person_id:soc_sec_id'.*--dataset"):
        commands.tokenise(DATASET, key, tmp_path / "refused", data_dir=str(data), model_config=model_config, spark=spark, keyservice=path)
    assert not (tmp_path / "refused").exists() and keyservice.audit_lines() == []  # refused before any request
    raw["public_keys"] = commands.keyservice_public_keys(keyservice.service_config, datasets=[DATASET], model=model_config)
    path.write_text(yaml.safe_dump(raw))

    tables, clusters = {}, {}
    for mode, extra in (("local", {}), ("federated", {"keyservice": path})):
        out = tmp_path / mode
        manifest = commands.tokenise(DATASET, key, out / "tokens", data_dir=str(data), model_config=model_config, spark=spark,
                                     run_id=f"{mode}-1", **extra)
        assert manifest.rows == len(rows)  # nothing quarantined
        tables[mode] = (manifest, delta.read(spark, str(manifest.table_path)).collect())
        model = train.train_job(spark, manifests=[manifest.path], cfg=load(model_config, ModelConfig), out_path=out / "model.json")
        linkrun.run(spark, manifests=[manifest.path], model_path=model, link_cfg=LinkConfig(threshold_match_probability=0.9),
                    tables=out / "tables", run_id="r1")
        clusters[mode] = partition(completed_view(spark, out / "tables", "r1").table("clusters", this_run_only=True))
    (local, local_rows), (federated, federated_rows) = tables["local"], tables["federated"]
    federated_probe_finds_the_block_of_a_declared_identifier(rows, federated_rows, key, path, model_config, keyservice)
    assert local.key_fingerprint != federated.key_fingerprint  # two modes, never mixed
    columns = local.data["token_columns"]
    assert columns == federated.data["token_columns"]
    # 6 rules, each a block key and the 22 compared fields, 10 of them declared identifiers' tokens.
    assert len(columns) == 6 * 23 and sum(c.startswith("tk_soc_sec_id__") for c in columns) == 6
    for column in columns:
        assert groups(federated_rows, column) == groups(local_rows, column), column
        assert sum(r[column] is None for r in federated_rows) == sum(r[column] is None for r in local_rows), column
    # Values do repeat inside blocks, so the comparison above is not of singletons only.
    assert any(len(g) > 1 for g in groups(local_rows, "tk_soc_sec_id__r1"))
    assert any(len(g) > 1 for g in groups(local_rows, "tk_address_1_soundex__r0"))
    # The same u aggregates, so the same model and the same persons, record for record.
    assert federated.data["u"] == local.data["u"]
    assert clusters["federated"] == clusters["local"]
    # And the linkage is right: no cluster mixes two persons (rec-N-...), at most a few are split.
    assert all(len({r.split("-")[1] for r in group}) == 1 for group in clusters["local"])
    assert persons <= len(clusters["local"]) <= persons + 5
    # Every declared purpose was evaluated by the service, and only purposes it was given pins for.
    evaluated = {r["purpose"] for r in keyservice.audit_lines() if r["outcome"] == "ok"}
    assert set(DECLARED) <= evaluated <= set(raw["public_keys"])


def federated_probe_finds_the_block_of_a_declared_identifier(rows, table_rows, key, client_path, model_config, keyservice):
    """`natlink probe --keyservice --dataset` makes the block key the federated tokenise wrote for
    the declared soc_sec_id (rule 0 of conf/model_febrl.yaml is it alone); without the dataset's
    config it is refused, naming --dataset, before any request."""
    block = SaltedScheme.block_column(0)
    assert SaltedScheme.from_model(load(model_config, ModelConfig), specs=None).rules[0] == ("soc_sec_id",)
    written = {r[C.RECORD_ID]: r[block] for r in table_rows}
    some = [r for r in rows if r[HEADER.index("soc_sec_id")]][:4]
    before = len(keyservice.audit_lines())
    probes = [commands.probe("tk_soc_sec_id", r[HEADER.index("soc_sec_id")], key, model_config=model_config, keyservice=client_path,
                             dataset=DATASET) for r in some]
    assert probes == [written[r[0]] for r in some] and None not in probes
    assert len(set(probes)) == len({r[HEADER.index("soc_sec_id")] for r in some})
    # One audited evaluation of the declared purpose per probe; the refused probe makes none.
    assert [(r["purpose"], r["count"]) for r in keyservice.audit_lines()[before:]] == [(DECLARED[0], 1)] * len(some)
    with pytest.raises(EncodingSpecError, match="--dataset"):
        commands.probe("tk_soc_sec_id", some[0][HEADER.index("soc_sec_id")], key, model_config=model_config, keyservice=client_path)
    assert len(keyservice.audit_lines()) == before + len(some)
