"""The key store: the only module that resolves key material.

Config holds key *references*, never keys. A reference is ``SCHEME:TARGET``:

* ``env:NAME``  - the key in environment variable NAME (hex, or base64 with a ``base64:`` prefix);
* ``file:PATH`` - the key in a file (same encodings) that only its owner may read or write
  (mode 0600 or stricter; a group- or world-accessible file is refused);
* any scheme registered with :func:`register_provider`, e.g. a cloud KMS or secret store.

Provider interface (for a KMS / secret store)
---------------------------------------------
A provider is any object with ``fetch(target: str) -> bytes`` returning the raw key bytes for
the part of the reference after the scheme. Register it once at start-up::

    class SecretsManagerProvider:
        def __init__(self, client):          # e.g. boto3.client("secretsmanager")
            self._client = client
        def fetch(self, target: str) -> bytes:
            value = self._client.get_secret_value(SecretId=target)["SecretString"]
            return keys.decode_key_text(value, where=f"secret {target}")

    keys.register_provider("aws-sm", SecretsManagerProvider(client))
    key = keys.resolve("aws-sm:natlink/master-key")

A provider must raise :class:`~natlink.errors.KeyMaterialError` (never echoing the secret) when
the key cannot be had; any other exception is wrapped into one that names only the reference.

What is derived from a key
--------------------------
* ``fingerprint``: public. HKDF-SHA256 of the key under the label ``natlink/fingerprint/v1``,
  16 bytes as hex. HKDF output under a label nothing else uses is a pseudo-random function of
  the key: it identifies the key without revealing anything about it, and knowing it does not
  help to compute any subkey (those use other labels).
* ``subkey(purpose)``: secret. HKDF-SHA256 under ``natlink/subkey/v1/<purpose>``, 32 bytes: one
  per field (``field:given_name``), per Bloom filter (``bloom:given_name``) and, prefixed, per
  project (``project:NAME/field:given_name``), so tokens of different fields or projects never join.

:class:`KeyMaterial` never shows its secret: ``repr``/``str`` give the key id and fingerprint, and
it refuses to be pickled (so it cannot ride along, by accident, in a Spark task closure).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from natlink.errors import KeyMaterialError

__all__ = [
    "KeyMaterial",
    "KeyProvider",
    "MIN_KEY_BYTES",
    "create_key_file",
    "decode_key_text",
    "register_provider",
    "resolve",
]

MIN_KEY_BYTES = 32
_FINGERPRINT_INFO = b"natlink/fingerprint/v1"
_SUBKEY_INFO = b"natlink/subkey/v1/"


class KeyMaterial:
    """A resolved master (or project) key. Never logged: repr/str show key id and fingerprint only."""

    __slots__ = ("_key_id", "_secret", "_fingerprint")

    def __init__(self, key_id: str, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise KeyMaterialError(f"key {key_id!r}: key material must be bytes")
        if len(secret) < MIN_KEY_BYTES:
            raise KeyMaterialError(f"key {key_id!r} is {len(secret)} bytes; at least {MIN_KEY_BYTES} are required")
        object.__setattr__(self, "_key_id", str(key_id))
        object.__setattr__(self, "_secret", bytes(secret))
        object.__setattr__(self, "_fingerprint", _hkdf(bytes(secret), _FINGERPRINT_INFO, 16).hex())

    def __setattr__(self, name, value):  # immutable
        raise AttributeError("KeyMaterial is immutable")

    @property
    def key_id(self) -> str:
        """The reference the key was resolved from (or the id it was given); not secret."""
        return self._key_id

    @property
    def fingerprint(self) -> str:
        """Public identifier of the key: HKDF output under a fixed label (one-way, 128 bits)."""
        return self._fingerprint

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (e.g. ``field:given_name``); only encode.py should call this."""
        if not purpose:
            raise KeyMaterialError("a subkey needs a non-empty purpose")
        return _hkdf(self._secret, _SUBKEY_INFO + purpose.encode("utf-8"), 32)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyMaterial) and secrets.compare_digest(self._fingerprint, other._fingerprint)

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __str__(self) -> str:
        return f"KeyMaterial(key_id={self._key_id!r}, fingerprint={self._fingerprint})"

    __repr__ = __str__

    def __reduce__(self):
        raise KeyMaterialError(f"{self}: key material cannot be pickled (it must not travel in tasks or files)")

    def __getstate__(self):
        self.__reduce__()


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def decode_key_text(text: str, *, where: str) -> bytes:
    """Key text as stored in env/file/secret stores: hex, or ``base64:``-prefixed base64."""
    text = text.strip()
    try:
        if text.startswith("base64:"):
            return base64.b64decode(text[len("base64:"):], validate=True)
        return bytes.fromhex(text)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{where}: key is neither hex nor 'base64:'-prefixed base64") from None


@runtime_checkable
class KeyProvider(Protocol):
    """Resolves the target part of a reference (``SCHEME:TARGET``) to raw key bytes."""

    def fetch(self, target: str) -> bytes: ...


class _EnvProvider:
    def fetch(self, target: str) -> bytes:
        value = os.environ.get(target)
        if not value:
            raise KeyMaterialError(f"key reference env:{target}: environment variable is not set or empty")
        return decode_key_text(value, where=f"env:{target}")


class _FileProvider:
    def fetch(self, target: str) -> bytes:
        path = Path(target)
        if not path.is_file():
            raise KeyMaterialError(f"key reference file:{path}: no such file")
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyMaterialError(
                f"key file {path} is accessible by group or others (mode {stat.filemode(mode)}); chmod 600 it"
            )
        try:
            text = path.read_text(encoding="ascii")
        except UnicodeDecodeError:
            raise KeyMaterialError(f"key file {path}: not ASCII text (expected hex or 'base64:' text)") from None
        return decode_key_text(text, where=str(path))


_PROVIDERS: dict[str, KeyProvider] = {"env": _EnvProvider(), "file": _FileProvider()}
_LOCK = threading.Lock()


def register_provider(scheme: str, provider: KeyProvider, *, replace: bool = False) -> None:
    """Make ``SCHEME:TARGET`` references resolvable through ``provider.fetch(TARGET)``."""
    if not scheme or not scheme.replace("-", "").replace("_", "").isalnum():
        raise KeyMaterialError(f"key provider scheme {scheme!r} must be letters, digits, '-' or '_'")
    if not isinstance(provider, KeyProvider):
        raise KeyMaterialError(f"key provider for {scheme!r} has no fetch(target) -> bytes method")
    with _LOCK:
        if scheme in _PROVIDERS and not replace:
            raise KeyMaterialError(f"a key provider for scheme {scheme!r} is already registered")
        _PROVIDERS[scheme] = provider


def resolve(reference: str) -> KeyMaterial:
    """Resolve a key reference (``env:NAME``, ``file:PATH`` or a registered scheme) to key material."""
    scheme, sep, target = (reference or "").partition(":")
    provider = _PROVIDERS.get(scheme)
    if not sep or not target or provider is None:
        known = ", ".join(f"'{s}:...'" for s in sorted(_PROVIDERS))
        raise KeyMaterialError(f"key reference must look like one of {known} (scheme {scheme!r} is not known)")
    try:
        secret = provider.fetch(target)
    except KeyMaterialError:
        raise
    except Exception as error:  # a provider's own error may quote what it fetched: name the type only
        raise KeyMaterialError(f"key reference {scheme}:{target}: provider failed ({type(error).__name__})") from None
    return KeyMaterial(reference, secret)


def create_key_file(path: str | Path) -> str:
    """Write a fresh random 256-bit key (hex) to ``path`` with mode 0600; return its reference."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyMaterialError(f"key file {path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32))
    return f"file:{path}"
