"""Key service configuration: the custodian's service (``conf/keyservice.yaml``) and a provider's
client (``conf/keyservice_client.yaml``). Key references and credential *hashes* only.

The service::

    host: 127.0.0.1          # behind a TLS-terminating proxy in deployment (docs/keyservice.md)
    port: 8765
    audit_log: output/keyservice/audit.jsonl
    keys:                    # one master key per version; a rotation adds one
      - {version: 1, key: "file:/etc/natlink/keyservice/master-v1.key"}
    current_version: 1       # default: the highest version not retired
    rate_limit: {evaluations: 50000000, window_seconds: 86400}
    rate_limit_state: output/keyservice/rate_limits.json   # optional: counters that survive a restart
    providers:
      gp_practices:
        credential_sha256: "..."   # `natlink keyservice credential` prints it
        rate_limit: {evaluations: 1000, window_seconds: 60}   # optional, per provider

A provider::

    url: https://keyservice.example.nhs.uk
    provider: gp_practices
    credential: "file:/etc/natlink/keyservice.credential"
    service: natlink-ks-prod     # with key_version, names the OPRF keys the tokens were made under
    key_version: 1
    public_keys:                 # pinned: `natlink keyservice public-keys` at the custodian
      "salted:inner/field:nhs_number": "ristretto255:..."
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from natlink.config.base import Frozen

__all__ = ["KeyServiceClientConfig", "KeyServiceConfig", "KeyVersion", "PUBLIC_KEY_PREFIX", "RateLimit", "ServiceProvider"]

PUBLIC_KEY_PREFIX = "ristretto255:"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RateLimit(Frozen):
    evaluations: int = Field(gt=0)  # blinded elements evaluated per window and provider
    window_seconds: float = Field(gt=0)


class KeyVersion(Frozen):
    version: int = Field(ge=1)
    key: str  # a key reference (env:, file:, a registered scheme): never the key
    retired: bool = False  # kept listed for the record; refused (HTTP 410)


class ServiceProvider(Frozen):
    credential_sha256: str  # SHA-256 of the provider's 32-byte credential, hex: never the credential
    rate_limit: RateLimit | None = None
    description: str | None = None

    @field_validator("credential_sha256")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _HEX64.fullmatch(value):
            raise ValueError("must be 64 lowercase hex digits (`natlink keyservice credential` prints it)")
        return value


class TlsServer(Frozen):
    certificate: str  # PEM chain
    private_key: str  # PEM
    client_ca: str | None = None  # PEM: when set, every client must present a certificate it signed


class KeyServiceConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    audit_log: str
    keys: list[KeyVersion] = Field(min_length=1)
    current_version: int | None = None
    rate_limit: RateLimit = RateLimit(evaluations=50_000_000, window_seconds=86_400)
    rate_limit_state: str | None = None  # a JSON file: the counters survive a restart (None: in memory)
    providers: dict[str, ServiceProvider] = Field(default_factory=dict)
    max_batch: int = Field(default=10_000, ge=1, le=65_535)
    tls: TlsServer | None = None

    @field_validator("providers")
    @classmethod
    def _names(cls, value: dict[str, ServiceProvider]) -> dict[str, ServiceProvider]:
        bad = [n for n in value if not _NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"{len(bad)} provider names are not letters, digits, '_', '.' or '-' (64 at most)")
        return value

    @model_validator(mode="after")
    def _versions(self) -> "KeyServiceConfig":
        versions = [k.version for k in self.keys]
        if len(set(versions)) != len(versions):
            raise ValueError("keys: each version may appear once")
        live = [k.version for k in self.keys if not k.retired]
        if not live:
            raise ValueError("keys: every version is retired")
        if self.current_version is not None and self.current_version not in live:
            raise ValueError("current_version must be a listed version that is not retired")
        return self

    @property
    def active_version(self) -> int:
        return self.current_version or max(k.version for k in self.keys if not k.retired)

    def limit_for(self, provider: str) -> RateLimit:
        own = self.providers[provider].rate_limit
        return own if own is not None else self.rate_limit


class KeyServiceClientConfig(Frozen):
    url: str  # http://127.0.0.1:PORT in tests; https:// in deployment
    provider: str
    credential: str  # key reference of the provider's credential
    service: str  # the service's name: with key_version, what the tokens were made under
    key_version: int = Field(ge=1)
    public_keys: dict[str, str] = Field(min_length=1)  # purpose -> "ristretto255:<64 hex>" (pinned)
    batch_size: int = Field(default=2_000, ge=1, le=65_535)
    concurrency: int = Field(default=4, ge=1, le=32)  # requests in flight per Spark task
    retries: int = Field(default=6, ge=0, le=50)
    backoff_seconds: float = Field(default=0.5, gt=0)
    max_backoff_seconds: float = Field(default=30.0, gt=0)
    rate_limit_wait_seconds: float = Field(default=0.0, ge=0)  # wait out a 429 up to this long; 0: fail at once
    timeout_seconds: float = Field(default=60.0, gt=0)
    tls_ca: str | None = None  # PEM bundle that signed the service's certificate (https)
    tls_client_certificate: str | None = None
    tls_client_key: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?", value):
            raise ValueError("must be http(s)://HOST[:PORT][/PATH]")
        return value.rstrip("/")

    @field_validator("service", "provider")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be letters, digits, '_', '.' or '-' (64 at most)")
        return value

    @field_validator("public_keys")
    @classmethod
    def _pins(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [p for p, k in value.items() if not (k.startswith(PUBLIC_KEY_PREFIX) and _HEX64.fullmatch(k[len(PUBLIC_KEY_PREFIX):]))]
        if bad:
            raise ValueError(f"{len(bad)} pinned keys are not '{PUBLIC_KEY_PREFIX}' and 64 lowercase hex digits")
        return value

    def pinned(self, purpose: str) -> bytes | None:
        key = self.public_keys.get(purpose)
        return bytes.fromhex(key[len(PUBLIC_KEY_PREFIX):]) if key else None
