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

Only references, never keys
---------------------------
Wherever a reference is expected (``--key``, ``--signing-key``, config), anything that is not one
(a raw hex or base64 key, a passphrase) is refused with :class:`~natlink.errors.KeyReferenceError`,
whose message gives at most the length and kind of what was given, never any part of it.

Key strength
------------
Key material resolved from a reference must look random (:func:`check_key_strength`): text (every
byte printable ASCII: a passphrase, a word, hex or base64 *text* given as the key bytes), repeated
or patterned bytes (a period, a counter), and few distinct bytes are refused with
:class:`~natlink.errors.WeakKeyError` naming the reference and the reason, never the key. A text
key of 32 characters was found from its public fingerprint in under two seconds by dictionary.
``natlink keys generate`` (:func:`create_key_file`) writes a strong one.

Test keys: the suite's keys are obviously fake text, labelled by a fixed prefix
(:data:`TEST_KEY_LABELS`, e.g. ``b"test-key-not-secret-..."``). Such a key is accepted only when
the environment variable ``NATLINK_ALLOW_TEST_KEYS`` is ``1``, which ``tests/conftest.py`` sets and
nothing in ``conf/``, ``jobs/`` or ``deploy/`` does; an unlabelled weak key is refused even then.
Key material built directly as ``KeyMaterial(id, bytes)`` (tests, benchmarks) is not checked: only
the references that configuration, the command line and the jobs use are.

What is derived from a key
--------------------------
* ``fingerprint``: public. HKDF-SHA256 of the key under the label ``natlink/fingerprint/v1``,
  16 bytes as hex. HKDF output under a label nothing else uses is a pseudo-random function of
  the key: it identifies the key without revealing anything about it, and knowing it does not
  help to compute any subkey (those use other labels).
* ``signing_key()``: secret. An Ed25519 private key whose seed is HKDF-SHA256 of the key under
  ``natlink/signing/v1/ed25519``: a *signing* key reference (``natlink keys generate --kind
  signing``) resolves to key material like any other, and this is how it signs manifests
  (:mod:`natlink.tokens.signing`). Its public key identifies the signer.
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
import re
import secrets
import stat
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from natlink.errors import KeyMaterialError, KeyReferenceError, WeakKeyError

__all__ = [
    "ALLOW_TEST_KEYS_ENV",
    "KeyMaterial",
    "KeyProvider",
    "MIN_KEY_BYTES",
    "TEST_KEY_LABELS",
    "check_key_strength",
    "create_key_file",
    "decode_key_text",
    "is_reference",
    "register_provider",
    "resolve",
    "resolve_secret_text",
]

MIN_KEY_BYTES = 32
_FINGERPRINT_INFO = b"natlink/fingerprint/v1"
_SUBKEY_INFO = b"natlink/subkey/v1/"
_SIGNING_INFO = b"natlink/signing/v1/ed25519"
# Obviously fake keys of the test suite and the benchmarks start with one of these labels.
TEST_KEY_LABELS = (b"test-key-not-secret-", b"bench-key-not-secret-")
ALLOW_TEST_KEYS_ENV = "NATLINK_ALLOW_TEST_KEYS"


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

    def signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 key derived from this key material; only :mod:`natlink.tokens.signing` should call this."""
        return Ed25519PrivateKey.from_private_bytes(_hkdf(self._secret, _SIGNING_INFO, 32))

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


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def _kind(text: str) -> str:
    """What a refused value looks like, for a message that must not show it."""
    body = text[len("base64:"):] if text.startswith("base64:") else text
    if _HEX.fullmatch(body) and len(body) >= 32:
        return "hex key material"
    if _BASE64.fullmatch(body) and len(body) >= 40:
        return "base64 key material"
    if len(text) >= 16:
        return "text (a passphrase or a raw key)"
    return "text"


def _looks_like_key(text: str) -> bool:
    return _kind(text).endswith("key material")


def _refuse(text: str, why: str) -> KeyReferenceError:
    known = ", ".join(f"'{s}:...'" for s in sorted(_PROVIDERS))
    return KeyReferenceError(
        f"{why}: expected a key reference such as {known} (the value given, {len(text)} characters of "
        f"{_kind(text)}, is not shown). Keys are never given directly: put the key in a file (mode 0600; "
        "`natlink keys generate`) or an environment variable and pass its reference"
    )


def is_reference(text: str | None) -> bool:
    """True when ``text`` has the shape of a key reference with a known scheme (nothing is resolved)."""
    scheme, sep, target = (text or "").partition(":")
    return bool(sep and target and _SCHEME.fullmatch(scheme) and scheme in _PROVIDERS and not _looks_like_key(target))


def _fetch(reference: str) -> tuple[str, bytes]:
    """(the reference, its checked key bytes): the one path from a reference to key material."""
    text = reference if isinstance(reference, str) else ""
    scheme, sep, target = text.partition(":")
    if not sep or not target or not _SCHEME.fullmatch(scheme) or _looks_like_key(target):
        raise _refuse(text, "not a key reference")
    provider = _PROVIDERS.get(scheme)
    if provider is None:
        raise _refuse(text, f"key reference scheme {scheme!r} is not known")
    if scheme == "env" and not _ENV_NAME.fullmatch(target):
        raise _refuse(text, "env: needs an environment variable name")
    try:
        secret = provider.fetch(target)
    except KeyMaterialError:
        raise
    except Exception as error:  # a provider's own error may quote what it fetched: name the type only
        raise KeyMaterialError(f"key reference {scheme}:{target}: provider failed ({type(error).__name__})") from None
    if not isinstance(secret, (bytes, bytearray)):
        raise KeyMaterialError(f"key reference {scheme}:{target}: provider returned {type(secret).__name__}, not bytes")
    check_key_strength(bytes(secret), text)
    return text, bytes(secret)


def resolve(reference: str) -> KeyMaterial:
    """Resolve a key reference (``env:NAME``, ``file:PATH`` or a registered scheme) to key material.

    Anything that is not a reference (a raw key, a passphrase) is refused without being echoed
    (:class:`~natlink.errors.KeyReferenceError`), and the key material must pass
    :func:`check_key_strength` (:class:`~natlink.errors.WeakKeyError`).
    """
    return KeyMaterial(*_fetch(reference))


def resolve_secret_text(reference: str) -> str:
    """The referenced key's bytes as lowercase hex, for a secret another system takes as text
    (``spark.authenticate.secret``). Resolved and checked like :func:`resolve`. Never log it."""
    _text, secret = _fetch(reference)
    if len(secret) < MIN_KEY_BYTES:
        raise KeyMaterialError(f"key {reference} is {len(secret)} bytes; at least {MIN_KEY_BYTES} are required")
    return secret.hex()


def _is_test_key(secret: bytes) -> bool:
    return any(secret.startswith(label) for label in TEST_KEY_LABELS)


def _weakness(secret: bytes) -> str | None:
    """Why ``secret`` is not random enough (None when it looks random). Random 32-byte keys trip
    none of these except with negligible probability (all printable: (95/256)^32 < 1e-13)."""
    n = len(secret)
    if all(32 <= b < 127 or b in (9, 10, 13) for b in secret):
        return "it is text (printable ASCII): a passphrase, a word, or hex/base64 text used as the key bytes"
    if len(set(secret)) < min(16, n // 2):
        return f"it has only {len(set(secret))} distinct byte values in {n}"
    for period in range(1, n // 2 + 1):
        if secret[period:] == secret[:-period]:
            return f"it repeats with a period of {period} bytes"
    steps = {(secret[i + 1] - secret[i]) % 256 for i in range(n - 1)}
    if len(steps) < min(8, n // 4):
        return "its bytes follow a pattern (a counter or an arithmetic sequence)"
    return None


def check_key_strength(secret: bytes, key_id: str) -> None:
    """Refuse key material that is not random enough (:class:`~natlink.errors.WeakKeyError`).

    A labelled test key (:data:`TEST_KEY_LABELS`) passes only with ``NATLINK_ALLOW_TEST_KEYS=1``.
    The message names ``key_id`` (a reference) and the reason, never the key.
    """
    if _is_test_key(bytes(secret)):
        if os.environ.get(ALLOW_TEST_KEYS_ENV) == "1":
            return
        raise WeakKeyError(
            f"key {key_id}: a labelled test key is accepted only in tests ({ALLOW_TEST_KEYS_ENV}=1); "
            "generate a real key with `natlink keys generate`"
        )
    why = _weakness(bytes(secret))
    if why is not None:
        raise WeakKeyError(
            f"key {key_id} is refused as too weak: {why}. Keys must be {MIN_KEY_BYTES} random bytes: "
            "generate one with `natlink keys generate`"
        )


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
