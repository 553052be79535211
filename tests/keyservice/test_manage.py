"""The custodian's verbs: credentials, public keys for pinning, rotation, retired versions."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import yaml

from natlink import commands
from natlink.config import load
from natlink.config.keyservice import KeyServiceClientConfig, KeyServiceConfig
from natlink.errors import ConfigError, KeyServiceRequestError
from natlink.keyservice.client import KeyServiceClient
from natlink.tokens import keys


def test_a_new_credential_authenticates(keyservice, tmp_path):
    made = commands.keyservice_credential(tmp_path / "new.credential")
    assert (tmp_path / "new.credential").stat().st_mode & 0o077 == 0
    assert keys.resolve_secret_text(made.reference) not in made.sha256
    raw = yaml.safe_load(keyservice.service_config.read_text())
    raw["providers"]["registry"] = {"credential_sha256": made.sha256}
    keyservice.service_config.write_text(yaml.safe_dump(raw))
    keyservice.stop()
    keyservice.start()
    cfg = keyservice.client_config("gp").model_copy(update={"provider": "registry", "credential": made.reference})
    assert len(KeyServiceClient(cfg).inner_tokens("salted:inner/field:sex", ["F"])[0]) == 64


def test_public_keys_are_the_pins_and_rotation_changes_them(keyservice, tmp_path):
    pins = commands.keyservice_public_keys(keyservice.service_config)
    client_pins = keyservice.client_config("gp").public_keys
    assert all(client_pins[p] == k for p, k in pins.items() if p in client_pins)
    assert "project:p1/salted:inner/field:sex" in commands.keyservice_public_keys(keyservice.service_config, project="p1")
    made = commands.keyservice_rotate(keyservice.service_config, tmp_path / "master-v2.key")
    cfg = load(keyservice.service_config, KeyServiceConfig)
    assert (made.version, cfg.active_version, [k.version for k in cfg.keys]) == (2, 2, [1, 2])
    v2 = commands.keyservice_public_keys(keyservice.service_config)
    assert v2 == commands.keyservice_public_keys(keyservice.service_config, version=2)
    assert set(v2.values()).isdisjoint(pins.values())
    # Version 1 keeps being served until it is retired; then it is refused by name (410).
    raw = yaml.safe_load(keyservice.service_config.read_text())
    raw["keys"][0]["retired"] = True
    keyservice.service_config.write_text(yaml.safe_dump(raw))
    keyservice.stop()
    keyservice.start()
    with pytest.raises(KeyServiceRequestError, match="RetiredKeyVersion"):
        KeyServiceClient(keyservice.client_config("gp")).inner_tokens("salted:inner/field:sex", ["F"])
    with pytest.raises(ConfigError, match="no live key version 1"):
        commands.keyservice_public_keys(keyservice.service_config, version=1)


def test_configs_refuse_unknown_keys_and_raw_credentials(tmp_path):
    path = tmp_path / "client.yaml"
    base = {"url": "http://127.0.0.1:1", "provider": "gp", "credential": "file:x", "service": "s", "key_version": 1,
            "public_keys": {"salted:inner/field:sex": "ristretto255:" + "00" * 32}}
    path.write_text(yaml.safe_dump({**base, "passphrase": "x"}))
    with pytest.raises(ConfigError, match="passphrase"):
        load(path, KeyServiceClientConfig)
    path.write_text(yaml.safe_dump({**base, "public_keys": {"salted:inner/field:sex": "00" * 32}}))
    with pytest.raises(ConfigError, match="ristretto255"):
        load(path, KeyServiceClientConfig)


def test_health_needs_no_credential_and_says_nothing_else(keyservice):
    with urllib.request.urlopen(keyservice.url + "/v1/health", timeout=5) as response:
        assert response.read() == b'{"status": "ok"}'
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(keyservice.url + "/v1/public-key?purpose=salted:inner/field:sex", timeout=5)
    assert info.value.code == 401
