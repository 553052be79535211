"""Trusted manifest signers (``conf/providers.yaml``): whose signed manifests the linkage centre accepts.

Each entry names a signer (a data provider), its Ed25519 public key as printed by
``natlink keys generate --kind signing``, and the datasets it may sign for (``"*"``: any)::

    signers:
      gp_practices:
        public_key: "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        datasets: [gp]
      acute_trusts:
        public_key: "ed25519:..."
        datasets: [hes]

Only public keys live here: the file may be world-readable, but whoever can edit it decides what
the centre trusts, so it belongs with the centre's configuration, not with the deliveries.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import Field, field_validator

from natlink.config.base import Frozen

__all__ = ["ANY_DATASET", "PUBLIC_KEY_PREFIX", "TrustedSigner", "TrustedSigners", "public_key_id"]

PUBLIC_KEY_PREFIX = "ed25519:"
ANY_DATASET = "*"
_PUBLIC_KEY = re.compile(r"ed25519:[0-9a-f]{64}")
_DATASET = re.compile(r"[a-z][a-z0-9_]{0,62}|\*")


def public_key_id(public_key: str) -> str:
    """The id a signature names its key by: SHA-256 of the raw public key, first 16 bytes as hex."""
    return hashlib.sha256(bytes.fromhex(public_key[len(PUBLIC_KEY_PREFIX):])).hexdigest()[:32]


class TrustedSigner(Frozen):
    public_key: str  # "ed25519:" + 64 lowercase hex digits
    datasets: list[str] = Field(min_length=1)  # dataset names it may sign; ["*"]: any
    description: str | None = None

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _PUBLIC_KEY.fullmatch(value):
            raise ValueError("must be 'ed25519:' and 64 lowercase hex digits (natlink keys generate --kind signing)")
        return value

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _DATASET.fullmatch(v)]
        if bad:
            raise ValueError(f"{len(bad)} entries are neither dataset names nor '*'")
        return value

    @property
    def key_id(self) -> str:
        return public_key_id(self.public_key)

    def may_sign(self, dataset: str) -> bool:
        return ANY_DATASET in self.datasets or dataset in self.datasets


class TrustedSigners(Frozen):
    """The registry: signer name -> public key and datasets."""

    signers: dict[str, TrustedSigner] = Field(default_factory=dict)

    def by_key_id(self, key_id: str) -> tuple[str, TrustedSigner] | None:
        for name, signer in sorted(self.signers.items()):
            if signer.key_id == key_id:
                return name, signer
        return None
