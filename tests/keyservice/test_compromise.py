"""Issue 17's provider-compromise test: everything one provider holds at rest does not reverse
another provider's tokens offline, while the master key does (the control); a dictionary through
the live service is stopped by the rate limit and shows in the audit log.

The attacked tables are hes's, tokenised through the key service: 100 persons with NHS numbers
from the NHS test range (999 000 0000 - 999 999 9999, valid check digits), family and given names
from the shipped name tables (src/natlink/data/*_names.csv), whom gp does not hold (a provider's
own table links its own patients to others' tokens by design: docs/threat_model.md).

The attacker holds everything under gp's folder (its encoding key, key service credential, client
config with the pinned public keys, its own token table) and no live session. It tries every key
it holds at every keyed step (inner token, block key, salted token), plus unkeyed hashes, against:
* the NHS-number block keys (rule 0) over the dictionary of NHS test numbers;
* the salted family- and given-name tokens inside every observed rule-0 block, over the name tables.
The control runs the same attack with the master key added (the inner token is the OPRF).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import random
from pathlib import Path

import pytest

from natlink import columns as C
from natlink.config import ModelConfig, load, project_root
from natlink.errors import KeyServiceRateLimitedError
from natlink.keyservice import oprf
from natlink.keyservice.client import KeyServiceClient
from natlink.keyservice.spark import ServiceInnerTokens, service_encoding_key
from natlink.synth.nhs import nhs_check_digit_ok
from natlink.tokens import keys
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.salted import SaltedScheme, encode

from ks_support import MASTER_V1, make_setup

ROOT = project_root()
MODEL_PATH = ROOT / "conf" / "model.yaml"  # the block-salted default
SCHEME = SaltedScheme.from_model(load(MODEL_PATH, ModelConfig))
SCHEMA = ("dataset string, record_id string, region string, nhs_number string, given_name string, family_name string, "
          "date_of_birth date, sex string, postcode string")
DATA = ROOT / "src" / "natlink" / "data"
FAST_RANGE = (9_990_000_000, 9_990_050_000)  # the fast test's part of the NHS test range: 4,5xx valid numbers
FULL_RANGE = (9_990_000_000, 10_000_000_000)


def names(file: str) -> list[str]:
    with (DATA / file).open(encoding="utf-8") as fh:
        return sorted({row["name"] for row in csv.DictReader(fh)})


def test_numbers(lo: int, hi: int) -> list[str]:
    return [str(n) for n in range(lo, hi) if nhs_check_digit_ok(str(n))]


test_numbers.__test__ = False  # a helper, not a test


def hes_rows(count: int = 100, seed: int = 17):
    rng = random.Random(seed)
    nhs = rng.sample(test_numbers(*FAST_RANGE), count)
    family, given = names("family_names.csv"), names("given_names.csv")
    return [
        ("hes", f"h{i}", "R1", nhs[i], rng.choice(given), rng.choice(family),
         dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30_000)), rng.choice("MF"), None)
        for i in range(count)
    ]


def hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def at_rest(folder: Path) -> list[KeyMaterial]:
    """Every key the provider's files give: each key reference in its configs, resolved, and the
    encoding key bound to its service config (what its own tokenise uses)."""
    import yaml

    from natlink.config.keyservice import KeyServiceClientConfig

    found = [keys.resolve(f"file:{p}") for p in sorted(folder.rglob("*")) if p.suffix in (".key", ".credential")]
    client = KeyServiceClientConfig.model_validate(yaml.safe_load((folder / "keyservice_client.yaml").read_text()))
    found += [service_encoding_key(k, client) for k in list(found)]
    return found


def inner_guesses(held: list[KeyMaterial], purpose: str, values: list[str], master: KeyMaterial | None) -> list[str]:
    """Every inner token the attacker can make for each value: HMAC under each key it holds,
    unkeyed hashes, and (control only) the OPRF under the master key."""
    subkeys = [k.subkey(f"salted:inner/{purpose}") for k in held]
    oprf_key = oprf.PurposeKey(master, f"salted:inner/{purpose}") if master is not None else None
    out = []
    for value in values:
        out += [hmac_hex(s, value) for s in subkeys]
        out += [hashlib.sha256(value.encode()).hexdigest(), oprf.oprf_input(value).hex()]
        if oprf_key is not None:
            out.append(oprf.inner_token(oprf_key.evaluate_known(value)))
    return out


def attack(table: list, held: list[KeyMaterial], dictionary: list[str], master: KeyMaterial | None) -> dict[str, int]:
    """Records of ``table`` whose NHS number, family name or given name the attacker recovers."""
    block0, nhs0 = SCHEME.block_column(0), SCHEME.salted_column("nhs_number", 0)
    by_block = {r[block0]: r for r in table}
    recovered = {"nhs_number": set(), "family_name": set(), "given_name": set()}
    inners = inner_guesses(held, "field:nhs_number", dictionary, master)
    for k in held:
        block_key, salt = k.subkey("salted:block/nhs_number"), k.subkey("salted:salt/field:nhs_number")
        for inner in inners:
            row = by_block.get(hmac_hex(block_key, inner)[:32])
            if row is not None and row[nhs0] == hmac_hex(salt, row[block0] + inner)[:16]:
                recovered["nhs_number"].add(row[C.RECORD_ID])
    for field, file in (("family_name", "family_names.csv"), ("given_name", "given_names.csv")):
        column = SCHEME.salted_column(field, 0)
        inners = [i.encode() for i in inner_guesses(held, f"field:{field}", names(file), master)]
        for k in held:
            salt = k.subkey(f"salted:salt/field:{field}")
            for row in table:
                # HMAC(salt, block || inner): the block's part of the hash state computed once per row.
                state = hmac.new(salt, row[block0].encode(), hashlib.sha256)
                for inner in inners:
                    h = state.copy()
                    h.update(inner)
                    if h.hexdigest()[:16] == row[column]:
                        recovered[field].add(row[C.RECORD_ID])
                        break
    return {f: len(ids) for f, ids in recovered.items()}


@pytest.fixture(scope="module")
def tokenised(spark, tmp_path_factory):
    """hes's salted tokens through the key service; gp's own table; gp's folder."""
    setup = make_setup(tmp_path_factory.mktemp("compromise"))
    setup.start()
    try:
        tables = {}
        gp_rows = [("gp", f"g{i}", "R1", "9434765919" if i == 0 else None, "ALICE", "ZED", dt.date(1990, 1, 2), "F", None) for i in range(3)]
        for provider, data in (("hes", hes_rows()), ("gp", gp_rows)):
            cfg = setup.client_config(provider)
            encoding = service_encoding_key(keys.resolve(setup.encoding_key), cfg)
            frame = encode(spark.createDataFrame(data, SCHEMA), encoding, SCHEME, keep=[C.DATASET, C.RECORD_ID, C.REGION],
                           inner_source=ServiceInnerTokens(cfg))
            tables[provider] = frame.collect()
        # gp's own token table at rest, beside its keys and configs
        (setup.root / "gp" / "tokens.jsonl").write_text("".join(json.dumps(r.asDict()) + "\n" for r in tables["gp"]))
    finally:
        setup.stop()
    return setup, tables


def test_provider_files_do_not_reverse_another_providers_tokens(tokenised):
    setup, tables = tokenised
    held = at_rest(setup.root / "gp")
    assert len(held) == 4  # encoding key, credential, and each bound to the service config
    dictionary = test_numbers(*FAST_RANGE)
    assert attack(tables["hes"], held, dictionary, master=None) == {"nhs_number": 0, "family_name": 0, "given_name": 0}
    # The control: the same attack with the master key recovers every hes record's three fields.
    master = KeyMaterial("attack-control", MASTER_V1)
    assert attack(tables["hes"], held, dictionary, master=master) == {"nhs_number": 100, "family_name": 100, "given_name": 100}


@pytest.mark.slow
def test_provider_files_do_not_reverse_the_whole_nhs_test_range(tokenised):
    setup, tables = tokenised
    held = at_rest(setup.root / "gp")
    dictionary = test_numbers(*FULL_RANGE)
    assert len(dictionary) > 900_000
    # The dictionary holds every hes number (drawn from FAST_RANGE), so a miss is the keys' doing: the
    # control with the master key (recovers all 100) is the fast test above, on the same attack code.
    assert {row[3] for row in hes_rows()} <= set(dictionary)
    assert attack(tables["hes"], held, dictionary, master=None)["nhs_number"] == 0


def test_a_dictionary_through_the_live_service_is_stopped_and_audited(tmp_path):
    setup = make_setup(tmp_path, limits={"gp": {"evaluations": 1000, "window_seconds": 3600}})
    setup.start()
    try:
        client = KeyServiceClient(setup.client_config("gp", batch_size=250))
        with pytest.raises(KeyServiceRateLimitedError):
            client.inner_tokens("salted:inner/field:nhs_number", test_numbers(*FAST_RANGE))
    finally:
        setup.stop()
    lines = setup.audit_lines()
    ok = [r for r in lines if r["outcome"] == "ok"]
    assert {r["provider"] for r in lines} == {"gp"}
    assert sum(r["count"] for r in ok) == 1000  # four batches of 250, then refused (the range has 4,5xx numbers)
    assert lines[-1]["outcome"] == "RateLimited" and lines[-1]["count"] == 250
