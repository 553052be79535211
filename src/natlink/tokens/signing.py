"""Authenticated manifests: the signer seals a manifest to its token table; the centre verifies.

Why a signature: the linkage centre decides from a manifest which key a table was made under (the
mixed-key check), what its columns are and how many rows it has. An unauthenticated manifest can be
forged or edited by anyone who can write beside the tables, and a forged one was accepted. The
centre must verify without being able to sign, so the provider signs with an Ed25519 private key
and the centre holds only public keys: ``conf/providers.yaml`` (:mod:`natlink.config.providers`).

Signing (:func:`seal`, called by :meth:`natlink.tokens.manifest.TokenManifest.save` when given a
signer): the manifest first gets ``table_content``, the digest of its token table's current Delta
snapshot (version, files, bytes, SHA-256 over every file's log entry and bytes:
:func:`natlink.store.snapshot.content_digest`), so the signature binds the table's content too.
Then the canonical JSON of everything but ``signature`` (sorted keys, no whitespace, ASCII),
prefixed by a fixed context label, is signed; ``signature`` records the algorithm, the public key
id and the signature (base64), and ``table_value``, the signer's own signature over the table's
location and digest, so that re-signing its own manifest for the same table at the same Delta
version reuses the digest instead of reading every byte again (verifiers ignore it). Who signs:

* ``natlink tokenise`` (a provider): the provider's signing key, a key reference like the token key
  (``--signing-key``, else the ``NATLINK_SIGNING_KEY`` environment variable). The final content is
  signed: :func:`natlink.tokens.tokenise.tokenise_configured` signs again after adding the
  onboarding counts.
* the demo: a signing key of its own under its output folder, and a registry trusting only it.

Verifying (:func:`verify`, called by :func:`natlink.tokens.manifest.as_manifest`, which every reader
of token tables goes through): unsigned, malformed, edited or forged manifests, keys no trusted
signer holds and signers not trusted for the manifest's dataset are refused with
:class:`~natlink.errors.ManifestSignatureError` naming the manifest file. The reader then
recomputes the table's digest and refuses a table whose files changed
(:class:`~natlink.errors.TokenTableChangedError`).

Which registry: an explicit ``trusted=`` argument; else the innermost :func:`trusting` block (the
demo's own registry); else the file named by ``NATLINK_TRUSTED_SIGNERS``; else the project's
``conf/providers.yaml`` (shipped empty: a deployment lists its providers there).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from natlink.config.base import load, project_root
from natlink.config.providers import PUBLIC_KEY_PREFIX, TrustedSigners, public_key_id
from natlink.errors import ConfigError, ManifestSignatureError
from natlink.tokens import keys

__all__ = [
    "ALGORITHM",
    "DEFAULT_REGISTRY",
    "SIGNATURE_FIELD",
    "SIGNING_KEY_ENV",
    "TABLE_CONTENT_FIELD",
    "TRUSTED_SIGNERS_ENV",
    "ManifestSigner",
    "SigningKeyFile",
    "canonical_json",
    "create_signing_key",
    "demo_signer",
    "load_signer",
    "seal",
    "trusted_signers",
    "trusting",
    "verify",
    "write_registry",
]

ALGORITHM = "ed25519"
SIGNATURE_FIELD = "signature"
TABLE_CONTENT_FIELD = "table_content"
SIGNING_KEY_ENV = "NATLINK_SIGNING_KEY"
TRUSTED_SIGNERS_ENV = "NATLINK_TRUSTED_SIGNERS"
DEFAULT_REGISTRY = Path("conf") / "providers.yaml"
_CONTEXT = b"natlink/manifest-signature/v1\n"  # what is signed is never mistaken for other data
_TABLE_CONTEXT = b"natlink/table-seal/v1\n"  # the signer's own note of a digest it computed (see seal)
_TRUSTED: contextvars.ContextVar[TrustedSigners | None] = contextvars.ContextVar("natlink_trusted_signers", default=None)
_REGISTRY_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("natlink_trusted_source", default=None)


class ManifestSigner:
    """An Ed25519 signing key resolved from a key reference. Never shows or pickles its secret."""

    __slots__ = ("_private", "_public", "_reference")

    def __init__(self, material: keys.KeyMaterial) -> None:
        private = material.signing_key()
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_private", private)
        object.__setattr__(self, "_public", PUBLIC_KEY_PREFIX + raw.hex())
        object.__setattr__(self, "_reference", material.key_id)

    def __setattr__(self, name, value):
        raise AttributeError("ManifestSigner is immutable")

    @property
    def public_key(self) -> str:
        """``ed25519:<hex>``: what a registry lists (public)."""
        return self._public

    @property
    def key_id(self) -> str:
        return public_key_id(self._public)

    @property
    def reference(self) -> str:
        return self._reference

    def sign(self, payload: bytes) -> str:
        """A manifest signature (base64) over ``payload`` after the manifest context label."""
        return base64.b64encode(self._private.sign(_CONTEXT + payload)).decode("ascii")

    def sign_raw(self, message: bytes) -> bytes:
        """A signature over ``message`` as given (it carries its own context label)."""
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"ManifestSigner(reference={self._reference!r}, key_id={self.key_id})"

    __str__ = __repr__

    def __reduce__(self):
        raise ManifestSignatureError(f"{self}: a signing key cannot be pickled")


def load_signer(signer: "ManifestSigner | str | None" = None) -> ManifestSigner:
    """A signer from itself, a key reference, or (None) the ``NATLINK_SIGNING_KEY`` reference.

    Called before any Spark work, so a missing signing key stops a job before it starts.
    """
    if isinstance(signer, ManifestSigner):
        return signer
    reference = signer or os.environ.get(SIGNING_KEY_ENV)
    if not reference:
        raise ManifestSignatureError(
            f"no manifest signing key: pass --signing-key (a key reference) or set {SIGNING_KEY_ENV}; "
            "create one with `natlink keys generate --kind signing` and give its public key to the linkage centre"
        )
    return ManifestSigner(keys.resolve(reference))


@dataclass(frozen=True)
class SigningKeyFile:
    """A new signing key: its reference (file, 0600), public key and the ``.pub`` file beside it."""

    reference: str
    public_key: str
    key_id: str
    public_path: Path


def create_signing_key(path: str | Path) -> SigningKeyFile:
    """Write a new random signing key to ``path`` (0600, never overwritten) and its public key to ``path.pub``."""
    reference = keys.create_key_file(path)
    signer = load_signer(reference)
    public_path = Path(f"{path}.pub")
    public_path.write_text(signer.public_key + "\n", encoding="ascii")
    return SigningKeyFile(reference, signer.public_key, signer.key_id, public_path)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, ASCII only, no NaN."""
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ManifestSignatureError(f"manifest content is not plain JSON ({type(exc).__name__}); cannot sign it") from None


def seal(data: Mapping[str, Any], signer: ManifestSigner, *, table: str | Path, spark=None) -> dict[str, Any]:
    """``data`` with ``table_content`` (the digest of ``table`` now) and a signature over both."""
    from natlink.store import snapshot

    content = {k: v for k, v in data.items() if k not in (SIGNATURE_FIELD, TABLE_CONTENT_FIELD)}
    previous = data.get(TABLE_CONTENT_FIELD)
    if _sealed_by(table, data, signer) and previous.get("algorithm") == snapshot.DIGEST_ALGORITHM and previous.get("version") == snapshot.current_version(table, spark):
        # Re-signing what this signer sealed (tokenise adds the onboarding counts): the table is at
        # the version whose bytes it hashed moments ago, so the digest is not read again.
        digest = dict(previous)
    else:
        digest = snapshot.content_digest(table, spark).as_dict()
    recorded = content.get("delta_version")
    if recorded is not None and int(recorded) != digest["version"]:
        raise ManifestSignatureError(
            f"manifest of {content.get('dataset', '?')!r}: its table {table} is at Delta version {digest['version']}, "
            f"the manifest records {recorded}: the table changed after it was written; not signed"
        )
    content[TABLE_CONTENT_FIELD] = digest
    value = signer.sign(canonical_json(content))
    table_value = base64.b64encode(signer.sign_raw(_table_seal(table, content))).decode("ascii")
    return {**content, SIGNATURE_FIELD: {"algorithm": ALGORITHM, "key_id": signer.key_id, "value": value, "table_value": table_value}}


def _table_seal(table: str | Path, data: Mapping[str, Any]) -> bytes:
    location = table if "://" in str(table) else str(Path(table).resolve())
    return _TABLE_CONTEXT + canonical_json({"location": str(location), TABLE_CONTENT_FIELD: data.get(TABLE_CONTENT_FIELD)})


def _sealed_by(table: str | Path, data: Mapping[str, Any], signer: ManifestSigner) -> bool:
    """True when ``signer`` itself computed ``data``'s digest for the table at ``table`` (``signature.table_value``)."""
    signature = data.get(SIGNATURE_FIELD)
    if not isinstance(signature, Mapping) or signature.get("key_id") != signer.key_id or not isinstance(data.get(TABLE_CONTENT_FIELD), Mapping):
        return False
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer.public_key[len(PUBLIC_KEY_PREFIX):]))
    try:
        public.verify(base64.b64decode(str(signature.get("table_value", "")), validate=True), _table_seal(table, data))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# --- the centre's side: which signers are trusted, and verification ------------------------------


def _load_registry(path: Path) -> TrustedSigners:
    return load(path, TrustedSigners)


@contextlib.contextmanager
def trusting(registry: TrustedSigners | str | Path) -> Iterator[TrustedSigners]:
    """Within the block, manifests are verified against ``registry`` (a registry or its YAML)."""
    loaded = registry if isinstance(registry, TrustedSigners) else _load_registry(Path(registry))
    source = "the registry given" if isinstance(registry, TrustedSigners) else str(registry)
    token, source_token = _TRUSTED.set(loaded), _REGISTRY_SOURCE.set(source)
    try:
        yield loaded
    finally:
        _TRUSTED.reset(token)
        _REGISTRY_SOURCE.reset(source_token)


def trusted_signers(trusted: TrustedSigners | str | Path | None = None) -> tuple[TrustedSigners, str]:
    """(registry, where it came from): ``trusted``, the :func:`trusting` block, ``$NATLINK_TRUSTED_SIGNERS``
    or ``conf/providers.yaml``. A missing registry is an error, never "trust everyone"."""
    if isinstance(trusted, TrustedSigners):
        return trusted, "the registry given"
    if trusted is not None:
        return _load_registry(Path(trusted)), str(trusted)
    inner = _TRUSTED.get()
    if inner is not None:
        return inner, _REGISTRY_SOURCE.get() or "the registry given"
    named = os.environ.get(TRUSTED_SIGNERS_ENV)
    path = Path(named) if named else project_root() / DEFAULT_REGISTRY
    if not path.is_file():
        raise ManifestSignatureError(
            f"no registry of trusted manifest signers at {path}: list the providers' public keys in "
            f"conf/providers.yaml or point {TRUSTED_SIGNERS_ENV} at such a file"
        )
    return _load_registry(path), str(path)


def verify(data: Mapping[str, Any], *, where: str, trusted: TrustedSigners | str | Path | None = None) -> str:
    """Check ``data``'s signature against the trusted signers; return the signer's name.

    ``where`` names the manifest (its file) in every error.
    """
    signature = data.get(SIGNATURE_FIELD)
    if signature is None:
        raise ManifestSignatureError(
            f"{where}: the manifest is not signed; the linkage centre accepts only manifests signed by a "
            "trusted provider (natlink tokenise signs them with its --signing-key)"
        )
    if not isinstance(signature, Mapping) or signature.get("algorithm") != ALGORITHM or not isinstance(signature.get("key_id"), str):
        raise ManifestSignatureError(f"{where}: the manifest's signature is malformed (expected an {ALGORITHM} signature and key id)")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        raise ManifestSignatureError(f"{where}: the manifest's signature is not base64") from None
    registry, source = trusted_signers(trusted)
    found = registry.by_key_id(signature["key_id"])
    if found is None:
        raise ManifestSignatureError(
            f"{where}: signed by key {signature['key_id']}, which no trusted signer in {source} holds; refused"
        )
    name, signer = found
    dataset = str(data.get("dataset", ""))
    if not signer.may_sign(dataset):
        raise ManifestSignatureError(f"{where}: signer {name!r} is not trusted for dataset {dataset!r} ({source}); refused")
    content = {k: v for k, v in data.items() if k != SIGNATURE_FIELD}
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer.public_key[len(PUBLIC_KEY_PREFIX):]))
    try:
        public.verify(value, _CONTEXT + canonical_json(content))
    except InvalidSignature:
        raise ManifestSignatureError(
            f"{where}: the signature of {name!r} does not match the manifest's content: it was edited after "
            "signing, or forged; refused"
        ) from None
    if not isinstance(content.get(TABLE_CONTENT_FIELD), Mapping):
        raise ManifestSignatureError(f"{where}: the signed manifest does not bind its table's content ({TABLE_CONTENT_FIELD})")
    return name


def write_registry(path: str | Path, signers: Mapping[str, tuple[str, list[str]]]) -> Path:
    """Write a registry YAML: ``{name: (public_key, datasets)}``. Public keys only."""
    path = Path(path)
    body = {"signers": {name: {"public_key": key, "datasets": list(datasets)} for name, (key, datasets) in signers.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# Trusted manifest signers (natlink.config.providers): public keys only.\n" + yaml.safe_dump(body, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    try:
        _load_registry(path)
    except ConfigError:
        path.unlink()
        raise
    return path


def demo_signer(folder: str | Path, reference: str | None = None) -> tuple[ManifestSigner, Path]:
    """A signer and a registry trusting only it, for a self-contained run (the demo, a notebook).

    ``reference`` (else ``NATLINK_SIGNING_KEY``) names the signing key; without either, one is
    made (0600) at ``folder/signing.key`` on first use. The registry is ``folder/providers.yaml``.
    """
    folder = Path(folder)
    chosen = reference or os.environ.get(SIGNING_KEY_ENV)
    if not chosen:
        key_file = folder / "signing.key"
        chosen = f"file:{key_file}" if key_file.exists() else create_signing_key(key_file).reference
    signer = load_signer(chosen)
    registry = write_registry(folder / "providers.yaml", {"demo": (signer.public_key, ["*"])})
    return signer, registry
