"""The OPRF primitives: RFC 9497's published vectors, then natlink's use of them.

Golden values: RFC 9497 (Oblivious Pseudorandom Functions using Prime-Order Groups), Appendix
A.1.2, ristretto255-SHA512, VOPRF mode, Test Vectors 1-3; copied from the RFC's source,
https://github.com/cfrg/draft-irtf-cfrg-voprf, draft-irtf-cfrg-voprf.md at commit
43da59f797c92248c0362e4c74cc10a8bd2b7b7d ("Test Vectors" > "ristretto255-SHA512" > "VOPRF Mode").
The RFC's own key (Seed a3..a3, KeyInfo "test key") is public test material.
"""

from __future__ import annotations

import pickle

import pytest
from voprf import ristretto

from natlink.errors import KeyServiceProofError, KeyServiceRequestError
from natlink.keyservice import oprf
from natlink.tokens.keys import KeyMaterial

RFC_SEED = bytes.fromhex("a3" * 32)
RFC_KEY_INFO = bytes.fromhex("74657374206b6579")  # "test key"
RFC_PK = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e"
RFC_VECTORS = [  # (Input, BlindedElement, EvaluationElement, Output)
    (
        "00",
        "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
        "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
        "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
    ),
    (
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "cc0b2a350101881d8a4cba4c80241d74fb7dcbfde4a61fde2f91443c2bf9ef0c",
        "60a59a57208d48aca71e9e850d22674b611f752bed48b36f7a91b372bd7ad468",
        "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
    ),
]
# Test Vector 3 (batch size 2): the second input blinded with the other scalar.
RFC_BATCH_BLINDED = [
    "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
    "90a0145ea9da29254c3a56be4fe185465ebb3bf2a1801f7124bbbadac751e654",
]
RFC_BATCH_EVALUATED = [
    "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
    "cc5ac221950a49ceaa73c8db41b82c20372a4c8d63e5dded2db920b7eee36a2a",
]

# Obviously fake key material for natlink's own derivations (labelled; never a real key).
TEST_MASTER = KeyMaterial("test-keyservice-master", b"test-key-not-secret-keyservice-master-01")
OTHER_MASTER = KeyMaterial("test-keyservice-other", b"test-key-not-secret-keyservice-master-02")


def rfc_evaluator():
    return ristretto.Evaluator.from_seed(RFC_SEED, RFC_KEY_INFO)


def test_rfc9497_public_key():
    assert rfc_evaluator().public_key.serialize().hex() == RFC_PK


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=["vector1", "vector2"])
def test_rfc9497_output_of_known_input(vector):
    inp, _, _, output = vector
    assert rfc_evaluator().evaluate_known_input(bytes.fromhex(inp)).hex() == output


@pytest.mark.parametrize("vector", RFC_VECTORS, ids=["vector1", "vector2"])
def test_rfc9497_blind_evaluate(vector):
    _, blinded, evaluated, _ = vector
    out = rfc_evaluator().evaluate_batch([ristretto.BlindedInput.deserialize(bytes.fromhex(blinded))]).serialize()
    # The library's batch output is proof (64 bytes) || evaluated elements; the proof is randomised.
    assert out[oprf.PROOF_BYTES:].hex() == evaluated


def test_rfc9497_batch_of_two():
    blinded = [ristretto.BlindedInput.deserialize(bytes.fromhex(b)) for b in RFC_BATCH_BLINDED]
    out = rfc_evaluator().evaluate_batch(blinded).serialize()
    assert len(out) == oprf.PROOF_BYTES + 2 * oprf.ELEMENT_BYTES
    assert [out[64:96].hex(), out[96:128].hex()] == RFC_BATCH_EVALUATED


def test_blind_evaluate_finalize_equals_the_known_input_output():
    key = oprf.PurposeKey(TEST_MASTER, "salted:inner/field:family_name")
    values = ["SMITH", "JONES", "O'NEILL", "ÉVA"]
    batch = oprf.blind(values)
    assert len(batch.blinded) == len(values) * oprf.ELEMENT_BYTES
    evaluated, proof = key.evaluate(batch.blinded)
    outputs = batch.finalize(evaluated, proof, key.public_key)
    assert outputs == [key.evaluate_known(v) for v in values]
    assert len({oprf.inner_token(o) for o in outputs}) == 4
    assert all(len(oprf.inner_token(o)) == 64 for o in outputs)


def test_blinding_is_fresh_per_value_and_call():
    a, b = oprf.blind(["SMITH", "SMITH"]), oprf.blind(["SMITH"])
    elements = {a.blinded[:32], a.blinded[32:], b.blinded}
    assert len(elements) == 3  # the same value blinds differently every time


def test_keys_differ_by_purpose_and_master():
    keys = {
        oprf.PurposeKey(TEST_MASTER, "salted:inner/field:family_name").public_key,
        oprf.PurposeKey(TEST_MASTER, "salted:inner/field:given_name").public_key,
        oprf.PurposeKey(TEST_MASTER, "project:p1/salted:inner/field:family_name").public_key,
        oprf.PurposeKey(OTHER_MASTER, "salted:inner/field:family_name").public_key,
    }
    assert len(keys) == 4


def test_a_proof_against_another_key_is_refused():
    key = oprf.PurposeKey(TEST_MASTER, "salted:inner/field:nhs_number")
    other = oprf.PurposeKey(OTHER_MASTER, "salted:inner/field:nhs_number")
    batch = oprf.blind(["9434765919"])
    evaluated, proof = other.evaluate(batch.blinded)
    with pytest.raises(KeyServiceProofError):
        batch.finalize(evaluated, proof, key.public_key)


def test_a_tampered_proof_is_refused():
    key = oprf.PurposeKey(TEST_MASTER, "salted:inner/field:nhs_number")
    batch = oprf.blind(["9434765919", "9434765870"])
    evaluated, proof = key.evaluate(batch.blinded)
    swapped = evaluated[32:] + evaluated[:32]
    with pytest.raises(KeyServiceProofError):
        batch.finalize(swapped, proof, key.public_key)


@pytest.mark.parametrize("purpose", ["", "field:family_name", "salted:block/x", "salted:inner/field:A", "salted:inner/field:x\n", 7])
def test_bad_purposes_are_refused(purpose):
    with pytest.raises(KeyServiceRequestError):
        oprf.check_purpose(purpose)


def test_bad_blinded_elements_are_refused_without_echo():
    key = oprf.PurposeKey(TEST_MASTER, "salted:inner/field:sex")
    for bad in (b"", b"\x01" * 31, b"\xff" * 32):
        with pytest.raises(KeyServiceRequestError) as info:
            key.evaluate(bad)
        assert "ff" not in str(info.value).lower().replace("of", "")


def test_keys_and_blinding_states_do_not_pickle():
    with pytest.raises(KeyServiceProofError):
        pickle.dumps(oprf.PurposeKey(TEST_MASTER, "salted:inner/field:sex"))
    with pytest.raises(KeyServiceProofError):
        pickle.dumps(oprf.blind(["M"]))
