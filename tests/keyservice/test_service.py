"""The key service and its client over HTTP on 127.0.0.1: answers, named refusals, the audit log,
and a canary scan of everything the service writes."""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request

import pytest

from natlink.errors import (
    ConfigError,
    KeyServiceAuthError,
    KeyServiceProofError,
    KeyServiceRateLimitedError,
    KeyServiceUnavailableError,
)
from natlink.keyservice import oprf
from natlink.keyservice.client import KeyServiceClient
from natlink.keyservice.service import RateLimiter
from natlink.tokens import keys

from ks_support import CREDENTIALS, MASTER_V1, make_setup


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/evaluate", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def auth(provider: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {provider}:{CREDENTIALS[provider].hex()}", "Content-Type": "application/json"}


def test_client_gets_the_oprf_inner_tokens(keyservice):
    client = KeyServiceClient(keyservice.client_config("gp"))
    values = ["SMITH", "JONES", "SMITH", "ÖZIL", "JONES"]
    tokens = client.inner_tokens("salted:inner/field:family_name", values)
    # Expected: the OPRF of each value under the service's purpose key, computed here with the
    # (fake) master key directly; equal values give equal tokens, distinct ones differ.
    key = oprf.PurposeKey(keys.KeyMaterial("t", MASTER_V1), "salted:inner/field:family_name")
    assert tokens == [oprf.inner_token(key.evaluate_known(v)) for v in values]
    assert tokens[0] == tokens[2] and len(set(tokens)) == 3
    assert client.requests == 1  # 3 distinct values, one batch
    lines = keyservice.audit_lines()
    assert [(r["provider"], r["purpose"], r["count"], r["outcome"]) for r in lines] == [("gp", "salted:inner/field:family_name", 3, "ok")]


def test_batches_split_at_batch_size(keyservice):
    client = KeyServiceClient(keyservice.client_config("gp", batch_size=4))
    client.inner_tokens("salted:inner/field:given_name", [f"NAME{i}" for i in range(10)])
    assert [r["count"] for r in keyservice.audit_lines()] == [4, 4, 2]


def test_unauthenticated_clients_are_refused_by_name_and_audited(keyservice):
    status, body = post(keyservice.url, b'{"purpose": "salted:inner/field:sex"}', {})
    assert (status, body["error"]) == (401, "Unauthenticated")
    wrong = keyservice.client_config("gp", credential=keyservice.client_config("hes").credential)
    with pytest.raises(KeyServiceAuthError, match="Unauthenticated"):
        KeyServiceClient(wrong).inner_tokens("salted:inner/field:sex", ["M"])
    status, _ = post(keyservice.url, b"{}", {"Authorization": "Bearer nobody:00"})
    assert status == 401
    # A configured provider's name is recorded for a failed attempt (gp with hes's credential); nothing else.
    assert [(r["provider"], r["outcome"], r["count"]) for r in keyservice.audit_lines()] == [
        ("unknown", "Unauthenticated", 0), ("gp", "Unauthenticated", 0), ("unknown", "Unauthenticated", 0)]


def test_over_limit_clients_are_refused_whole_and_audited(keyservice):
    client = KeyServiceClient(keyservice.client_config("hes"))  # conftest: hes may make 300 evaluations per hour
    client.inner_tokens("salted:inner/field:nhs_number", [str(9000000000 + i) for i in range(250)])
    with pytest.raises(KeyServiceRateLimitedError, match="HTTP 429"):
        client.inner_tokens("salted:inner/field:nhs_number", [str(9100000000 + i) for i in range(100)])
    lines = keyservice.audit_lines()
    assert [(r["provider"], r["count"], r["outcome"]) for r in lines] == [("hes", 250, "ok"), ("hes", 100, "RateLimited")]
    # gp has its own (default) allowance
    KeyServiceClient(keyservice.client_config("gp")).inner_tokens("salted:inner/field:nhs_number", ["9434765919"])


def test_malformed_requests_are_refused_by_name_without_echo(keyservice):
    canary = "CANARYVALUE7731"
    cases = [
        (f'{{"purpose": "{canary}", "blinded": ""}}', 400, "MalformedRequest"),
        (f"not json {canary}", 400, "MalformedRequest"),
        (json.dumps({"purpose": "salted:inner/field:sex", "blinded": canary}), 400, "MalformedRequest"),
        (json.dumps({"purpose": "salted:inner/field:sex", "blinded": base64.b64encode(b"\xff" * 32).decode()}), 400, "MalformedRequest"),
        (json.dumps({"purpose": "salted:inner/field:sex", "key_version": 9, "blinded": base64.b64encode(oprf.blind(["M"]).blinded).decode()}), 404, "UnknownKeyVersion"),
    ]
    for body, status, name in cases:
        got, answer = post(keyservice.url, body.encode(), auth("gp"))
        assert (got, answer["error"]) == (status, name)
        assert canary not in json.dumps(answer)
    assert canary not in keyservice.audit_log.read_text()


def test_a_proof_that_does_not_verify_is_refused(keyservice):
    cfg = keyservice.client_config("gp")
    # Pin another purpose's key for this purpose: the service's (correct) answer cannot verify.
    pins = dict(cfg.public_keys)
    pins["salted:inner/field:sex"] = pins["salted:inner/field:postcode"]
    with pytest.raises(KeyServiceProofError):
        KeyServiceClient(cfg.model_copy(update={"public_keys": pins})).inner_tokens("salted:inner/field:sex", ["M"])
    unpinned = {k: v for k, v in cfg.public_keys.items() if k != "salted:inner/field:sex"}
    with pytest.raises(KeyServiceProofError, match="no public key is pinned"):
        KeyServiceClient(cfg.model_copy(update={"public_keys": unpinned})).inner_tokens("salted:inner/field:sex", ["M"])


def test_no_service_is_a_named_error_after_retries(keyservice):
    cfg = keyservice.client_config("gp", url="http://127.0.0.1:9", retries=2)
    pauses = []
    client = KeyServiceClient(cfg, sleep=pauses.append)
    with pytest.raises(KeyServiceUnavailableError, match="after 3 attempts"):
        client.inner_tokens("salted:inner/field:sex", ["M"])
    assert pauses == [0.05, 0.1]  # exponential backoff


def test_rate_limiter_windows():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.take("p", 8, 10, 60) == 0
    assert limiter.take("p", 3, 10, 60) == pytest.approx(60)
    assert limiter.take("p", 2, 10, 60) == 0
    now[0] = 61
    assert limiter.take("p", 10, 10, 60) == 0


def test_rate_limit_counters_survive_a_restart(tmp_path):
    """With ``rate_limit_state`` the evaluations counted before a restart still count after it: hes
    (300 per hour) uses 250, the service restarts, and 100 more are refused; the control without
    the state file forgets and allows them. The file holds counts only, mode 0600."""
    results = {}
    for persisted in (True, False):
        setup = make_setup(tmp_path / str(persisted), limits={"hes": {"evaluations": 300, "window_seconds": 3600}},
                           rate_limit_state=persisted)
        setup.start()
        try:
            KeyServiceClient(setup.client_config("hes")).inner_tokens("salted:inner/field:nhs_number", [f"{i:010d}" for i in range(250)])
            setup.stop()
            setup.start()  # a new process would read the same config: a new service, limiter and audit log handle
            try:
                KeyServiceClient(setup.client_config("hes")).inner_tokens("salted:inner/field:nhs_number", [f"{i:010d}" for i in range(300, 400)])
                results[persisted] = "allowed"
            except KeyServiceRateLimitedError:
                results[persisted] = "refused"
        finally:
            setup.stop()
        if persisted:
            state = tmp_path / "True" / "custodian" / "rate_limits.json"
            assert oct(state.stat().st_mode & 0o777) == "0o600"
            saved = json.loads(state.read_text())["providers"]
            assert list(saved) == ["hes"] and saved["hes"]["used"] == 250
            assert [r["outcome"] for r in setup.audit_lines()][-1] == "RateLimited"
    assert results == {True: "refused", False: "allowed"}


def test_rate_limiter_state_is_read_back_and_windows_still_end(tmp_path):
    now = [1_000.0]
    state = tmp_path / "limits.json"
    assert RateLimiter(clock=lambda: now[0], state=state).take("p", 8, 10, 60) == 0
    again = RateLimiter(clock=lambda: now[0] + 10, state=state)
    assert again.take("p", 3, 10, 60) == pytest.approx(50)  # 8 of 10 used, 50 s of the window left
    assert again.take("p", 2, 10, 60) == 0
    now[0] += 61
    assert RateLimiter(clock=lambda: now[0], state=state).take("p", 10, 10, 60) == 0  # a new window
    state.write_text("not json")
    with pytest.raises(ConfigError, match="limits.json"):
        RateLimiter(state=state)


def test_canary_scan_of_the_service_logs_and_files(keyservice, caplog, capfd):
    """Values, blinded elements, evaluated elements and outputs appear nowhere the service writes."""
    caplog.set_level(logging.DEBUG)
    canaries = ["CANARYSURNAMEQX", "9999999999", "ZZ1 9QX"]
    client = KeyServiceClient(keyservice.client_config("gp"))
    outputs = client.inner_tokens("salted:inner/field:family_name", canaries)
    batch = oprf.blind(canaries)
    body = json.dumps({"purpose": "salted:inner/field:family_name", "blinded": base64.b64encode(batch.blinded).decode()})
    status, answer = post(keyservice.url, body.encode(), auth("gp"))
    assert status == 200
    evaluated = base64.b64decode(answer["evaluated"])
    secrets = list(canaries) + outputs
    for blob in (batch.blinded, evaluated):
        for i in range(0, len(blob), 32):
            element = blob[i:i + 32]
            secrets += [element.hex(), base64.b64encode(element).decode()[:40]]
    secrets += [c.hex() for c in CREDENTIALS.values()] + [MASTER_V1.hex()]
    keyservice.stop()
    written = [p for p in (keyservice.root / "custodian").rglob("*") if p.is_file() and not p.name.endswith(".key")]
    texts = {str(p): p.read_text(errors="replace") for p in written}
    out, err = capfd.readouterr()
    texts["stdout"], texts["stderr"], texts["log"] = out, err, caplog.text
    found = [(where, s[:6]) for where, text in texts.items() for s in secrets if s in text]
    assert found == []
    assert len(keyservice.audit_lines()) == 2  # and the audit log did record both requests
