"""Helpers for the key service tests: fake labelled keys, two providers, the service on 127.0.0.1.

Every key and credential here is obviously fake text starting ``test-key-not-secret-``
(accepted only because tests/conftest.py sets NATLINK_ALLOW_TEST_KEYS=1).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from natlink import columns as C
from natlink.config import load
from natlink.config.keyservice import PUBLIC_KEY_PREFIX, KeyServiceClientConfig, KeyServiceConfig
from natlink.keyservice import oprf
from natlink.keyservice.service import credential_sha256, make_server
from natlink.tokens import keys

# Fake, labelled key material (never a real key).
MASTER_V1 = b"test-key-not-secret-keyservice-master-v1"
CREDENTIALS = {
    "gp": b"test-key-not-secret-credential-gp-00001",
    "hes": b"test-key-not-secret-credential-hes-0001",
}
ENCODING_KEY = b"test-key-not-secret-linkage-encoding-01"
FIELDS = ["nhs_number", "given_name", "given_initial", "family_name", "date_of_birth", "dob_year", "sex", "postcode", "postcode_district"]
PURPOSES = [f"salted:inner/field:{f}" for f in FIELDS]


def write_key(path: Path, secret: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secret.hex())
    return f"file:{path}"


@dataclass
class KeyServiceSetup:
    root: Path
    service_config: Path
    client_configs: dict[str, Path]
    encoding_key: str
    url: str = ""
    servers: list = field(default_factory=list)

    @property
    def audit_log(self) -> Path:
        return self.root / "custodian" / "audit.jsonl"

    def client_config(self, provider: str, **changes) -> KeyServiceClientConfig:
        cfg = load(self.client_configs[provider], KeyServiceClientConfig)
        return cfg.model_copy(update={"url": self.url, **changes})

    def audit_lines(self) -> list[dict]:
        import json

        return [json.loads(line) for line in self.audit_log.read_text().splitlines()] if self.audit_log.exists() else []

    def start(self, port: int = 0):
        cfg = load(self.service_config, KeyServiceConfig).model_copy(update={"port": port})
        server = make_server(cfg)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.servers.append(server)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return server

    def stop(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()
            server.RequestHandlerClass.service.audit.close()
        self.servers.clear()


def make_setup(root: Path, *, limits: dict[str, dict] | None = None, port: int = 0, batch_size: int = 500,
               rate_limit_state: bool = False) -> KeyServiceSetup:
    """Custodian files under root/custodian, each provider's under root/<provider>."""
    custodian = root / "custodian"
    master_ref = write_key(custodian / "master-v1.key", MASTER_V1)
    master = keys.resolve(master_ref)
    providers = {}
    for name, credential in CREDENTIALS.items():
        entry = {"credential_sha256": credential_sha256(credential.hex())}
        if limits and name in limits:
            entry["rate_limit"] = limits[name]
        providers[name] = entry
    service = {
        "host": "127.0.0.1", "port": port, "audit_log": str(custodian / "audit.jsonl"),
        "keys": [{"version": 1, "key": master_ref}], "providers": providers, "max_batch": 5000,
    }
    if rate_limit_state:
        service["rate_limit_state"] = str(custodian / "rate_limits.json")
    service_path = custodian / "keyservice.yaml"
    service_path.write_text(yaml.safe_dump(service, sort_keys=False))
    pins = {}
    for purpose in PURPOSES + [f"project:p1/{p}" for p in PURPOSES]:
        pins[purpose] = PUBLIC_KEY_PREFIX + oprf.PurposeKey(master, purpose).public_key.hex()
    clients = {}
    encoding_ref = ""
    for name, credential in CREDENTIALS.items():
        folder = root / name
        encoding_ref = write_key(folder / "encoding.key", ENCODING_KEY)
        cfg = {
            "url": "http://127.0.0.1:1", "provider": name, "credential": write_key(folder / "keyservice.credential", credential),
            "service": "natlink-ks-test", "key_version": 1, "public_keys": pins, "batch_size": batch_size,
            "retries": 3, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2, "timeout_seconds": 10,
        }
        clients[name] = folder / "keyservice_client.yaml"
        clients[name].write_text(yaml.safe_dump(cfg, sort_keys=False))
    return KeyServiceSetup(root, service_path, clients, encoding_ref)


def groups(rows, column):
    """The records grouped by their token in ``column`` (NULLs left out)."""
    by_token: dict = {}
    for r in rows:
        if r[column] is not None:
            by_token.setdefault(r[column], set()).add(r[C.RECORD_ID])
    return sorted(sorted(g) for g in by_token.values())
