"""The verifiable OPRF (RFC 9497, ristretto255-SHA512, VOPRF mode) that the key service evaluates.

The group arithmetic, hashing to the group, blinding, the batch DLEQ proof and its verification
are the ``voprf`` package's (Rust, curve25519-dalek; passes RFC 9497 Appendix A.1.2's vectors:
``tests/keyservice/test_oprf.py``). natlink writes no elliptic-curve code; this module only
fixes what natlink feeds in and takes out:

* the **per-purpose key**: the service's master key of one version (key material from a
  reference, :mod:`natlink.tokens.keys`) gives one OPRF key per purpose, ``DeriveKeyPair(seed,
  info)`` with ``seed = HKDF(master, "natlink/subkey/v1/keyservice:oprf/<purpose>")`` and
  ``info = "natlink/keyservice/v1/<purpose>"``; a purpose is ``salted:inner/<token purpose>``
  (``field:NAME`` of a built-in identifier, ``id:KIND:TOKEN`` of a declared one), prefixed
  ``project:NAME/`` for a project (:func:`check_purpose`);
* the **input**: ``SHA-256("natlink/oprf-input/v1" || 0x00 || UTF-8 value)``, so every input has
  the same length (the library refuses empty inputs and inputs over 65,535 bytes);
* the **inner token**: the first 32 bytes of the 64-byte OPRF output as 64 lowercase hex digits,
  the shape of the HMAC inner tokens of :mod:`natlink.tokens.salted`.

Wire format: blinded and evaluated elements are 32-byte ristretto255 encodings, concatenated; a
batch proof is 64 bytes (two scalars), and the library's batch output is ``proof || evaluated``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

from voprf import ristretto

from natlink.config.identifiers import CUSTOM_KINDS
from natlink.errors import KeyServiceProofError, KeyServiceRequestError
from natlink.tokens.keys import KeyMaterial

__all__ = [
    "ELEMENT_BYTES",
    "MAX_BATCH",
    "PROOF_BYTES",
    "BlindedBatch",
    "PurposeKey",
    "blind",
    "check_purpose",
    "finalize",
    "inner_token",
    "oprf_input",
]

ELEMENT_BYTES = 32
PROOF_BYTES = 64
MAX_BATCH = 65_535  # the library's limit per batch
_INPUT_LABEL = b"natlink/oprf-input/v1\x00"
_KEY_INFO = "natlink/keyservice/v1/"
_SEED_PURPOSE = "keyservice:oprf/"
# A token purpose (natlink.tokens.encode): ``field:NAME`` (the built-in identifiers' tokens) or
# ``id:KIND:TOKEN`` (a declared identifier's, natlink.config.identifiers: a name of lower-case words
# joined by single '_', plus its variant; 64 characters at most).
_TOKEN_PURPOSE = (
    r"(field:[a-z][a-z_]{0,39}"
    r"|id:(" + "|".join(CUSTOM_KINDS) + r"):(?=[a-z0-9_]{1,64}\Z)[a-z][a-z0-9]*(_[a-z0-9]+)*)"
)
_PURPOSE = re.compile(r"(project:[A-Za-z0-9_.-]{1,64}/)?salted:inner/" + _TOKEN_PURPOSE)


def check_purpose(purpose: object) -> str:
    """``purpose`` when it names an inner-token purpose (``[project:NAME/]salted:inner/field:F`` or
    ``[project:NAME/]salted:inner/id:KIND:TOKEN``); else
    :class:`~natlink.errors.KeyServiceRequestError` (the text is not echoed)."""
    if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
        raise KeyServiceRequestError("purpose must be '[project:NAME/]salted:inner/field:NAME' or '[project:NAME/]salted:inner/id:KIND:NAME'")
    return purpose


def oprf_input(value: str) -> bytes:
    """The OPRF input of one normalised value (fixed length, domain-separated)."""
    return hashlib.sha256(_INPUT_LABEL + value.encode("utf-8")).digest()


def inner_token(output: bytes) -> str:
    """The inner token of one OPRF output: its first 32 bytes as 64 lowercase hex digits."""
    return output[:32].hex()


class PurposeKey:
    """The OPRF key of one (master key version, purpose), held by the service only."""

    __slots__ = ("purpose", "_evaluator", "public_key")

    def __init__(self, master: KeyMaterial, purpose: str) -> None:
        self.purpose = check_purpose(purpose)
        seed = master.subkey(_SEED_PURPOSE + purpose)
        self._evaluator = ristretto.Evaluator.from_seed(seed, (_KEY_INFO + purpose).encode("utf-8"))
        self.public_key: bytes = self._evaluator.public_key.serialize()

    def evaluate(self, blinded: bytes) -> tuple[bytes, bytes]:
        """(evaluated elements, batch proof) for concatenated blinded elements."""
        if not blinded or len(blinded) % ELEMENT_BYTES:
            raise KeyServiceRequestError(f"blinded elements must be a non-empty multiple of {ELEMENT_BYTES} bytes")
        count = len(blinded) // ELEMENT_BYTES
        if count > MAX_BATCH:
            raise KeyServiceRequestError(f"at most {MAX_BATCH} elements per request, got {count}")
        try:
            inputs = [ristretto.BlindedInput.deserialize(blinded[i:i + ELEMENT_BYTES]) for i in range(0, len(blinded), ELEMENT_BYTES)]
        except ValueError:
            raise KeyServiceRequestError("a blinded element is not a valid ristretto255 encoding") from None
        out = self._evaluator.evaluate_batch(inputs).serialize()
        return out[PROOF_BYTES:], out[:PROOF_BYTES]

    def evaluate_known(self, value: str) -> bytes:
        """The unblinded OPRF output of ``value`` (RFC 9497 ``Evaluate``): for tests and the
        attack control only; the service never sees a value."""
        return self._evaluator.evaluate_known_input(oprf_input(value))

    def __repr__(self) -> str:
        return f"PurposeKey(purpose={self.purpose!r}, public_key={self.public_key.hex()})"

    def __reduce__(self):
        raise KeyServiceProofError("an OPRF key cannot be pickled (it must not travel in tasks or files)")


class BlindedBatch:
    """A provider's blinded inputs (fresh random scalars from the library, one per value) and the
    states that unblind them; held in memory for one request only."""

    __slots__ = ("_clients", "blinded")

    def __init__(self, clients: list, blinded: bytes) -> None:
        self._clients = clients
        self.blinded = blinded

    def __len__(self) -> int:
        return len(self._clients)

    def finalize(self, evaluated: bytes, proof: bytes, public_key: bytes) -> list[bytes]:
        return finalize(self._clients, evaluated, proof, public_key)

    def __reduce__(self):
        raise KeyServiceProofError("blinding states cannot be pickled")


def blind(values: Sequence[str]) -> BlindedBatch:
    """Blind each value's OPRF input with a fresh random scalar (``voprf``'s ``Client.blind``)."""
    clients, blinded = [], []
    for value in values:
        client, element = ristretto.Client.blind(oprf_input(value))
        clients.append(client)
        blinded.append(element.serialize())
    return BlindedBatch(clients, b"".join(blinded))


def finalize(clients: list, evaluated: bytes, proof: bytes, public_key: bytes) -> list[bytes]:
    """Unblind the service's evaluated elements, verifying its batch proof against ``public_key``
    (the provider's pinned key); :class:`~natlink.errors.KeyServiceProofError` when it fails."""
    if len(evaluated) != len(clients) * ELEMENT_BYTES or len(proof) != PROOF_BYTES:
        raise KeyServiceProofError(
            f"the key service answered {len(evaluated) // ELEMENT_BYTES} elements and a {len(proof)}-byte proof "
            f"for {len(clients)} blinded elements"
        )
    try:
        pk = ristretto.PublicKey.deserialize(public_key)
        output = ristretto.VerifiableBatchOutput.deserialize(proof + evaluated)
    except ValueError:
        raise KeyServiceProofError("the key service's answer or the pinned public key is not a valid encoding") from None
    try:
        return ristretto.Client.finalize_batch(clients, output, pk)
    except BaseException as error:  # the library panics (pyo3 PanicException, a BaseException) on a bad proof
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        raise KeyServiceProofError(
            "the key service's batch proof does not verify against the pinned public key: wrong key, "
            "unpinned key version, or a forged or corrupted answer"
        ) from None
