"""Key references, providers, fingerprints, subkeys and the no-leak behaviour of KeyMaterial."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from natlink.tokens import keys
from natlink.errors import KeyMaterialError
from natlink.tokens.keys import KeyMaterial

# Obviously fake test key: never use outside tests.
SECRET = b"test-key-not-secret-keys-0000000"
FORMS = (SECRET, SECRET.hex().encode(), SECRET.hex().upper().encode(), base64.b64encode(SECRET))
# Pinned: HKDF-SHA256(SECRET, info="natlink/fingerprint/v1", 16 bytes). A change breaks every manifest.
GOLDEN_FINGERPRINT = "4d7e7bebc4e97a6c7bf4809f392719d7"


def assert_no_secret(text: str) -> None:
    blob = text.encode("utf-8", "surrogateescape")
    for form in FORMS:
        assert form not in blob and form.lower() not in blob.lower()


def hkdf(info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(SECRET)


def test_fingerprint_is_pinned_public_and_not_a_subkey():
    key = KeyMaterial("test", SECRET)
    assert key.fingerprint == hkdf(b"natlink/fingerprint/v1", 16).hex()
    assert key.fingerprint == GOLDEN_FINGERPRINT
    assert len(key.fingerprint) == 32 and key.fingerprint != SECRET.hex()[:32]
    for purpose in ("field:nhs_number", "bloom:given_name", "project:x/field:nhs_number"):
        assert key.fingerprint not in key.subkey(purpose).hex()
    assert KeyMaterial("other-id", SECRET).fingerprint == key.fingerprint  # the id is a label, not the key
    assert KeyMaterial("test", SECRET[::-1]).fingerprint != key.fingerprint


def test_subkeys_are_hkdf_per_purpose_and_distinct():
    key = KeyMaterial("test", SECRET)
    assert key.subkey("field:given_name") == hkdf(b"natlink/subkey/v1/field:given_name", 32)
    purposes = ["field:given_name", "field:family_name", "project:a/field:given_name", "project:b/field:given_name"]
    subkeys = {key.subkey(p) for p in purposes}
    assert len(subkeys) == len(purposes) and all(len(s) == 32 for s in subkeys)
    with pytest.raises(KeyMaterialError):
        key.subkey("")


def test_repr_str_logs_and_pickle_never_show_the_secret(caplog):
    key = KeyMaterial("env:NATLINK_TEST", SECRET)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert_no_secret(text)
        assert GOLDEN_FINGERPRINT in text
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("natlink.test").info("using %s / %r", key, key)
    assert_no_secret(caplog.text)
    with pytest.raises(KeyMaterialError) as err:
        pickle.dumps(key)
    assert_no_secret(str(err.value))
    with pytest.raises(AttributeError):
        key._secret = b"x" * 32  # immutable
    with pytest.raises(KeyMaterialError, match="at least 32"):
        KeyMaterial("short", b"test-key-not-secret")


def test_env_reference_hex_and_base64(monkeypatch):
    monkeypatch.setenv("NATLINK_TEST_HEX", SECRET.hex())
    monkeypatch.setenv("NATLINK_TEST_B64", "base64:" + base64.b64encode(SECRET).decode())
    a, b = keys.resolve("env:NATLINK_TEST_HEX"), keys.resolve("env:NATLINK_TEST_B64")
    assert a == b and a.fingerprint == GOLDEN_FINGERPRINT and a.key_id == "env:NATLINK_TEST_HEX"
    monkeypatch.setenv("NATLINK_TEST_BAD", SECRET.decode())  # raw text: neither hex nor base64
    with pytest.raises(KeyMaterialError) as err:
        keys.resolve("env:NATLINK_TEST_BAD")
    assert_no_secret(str(err.value))
    with pytest.raises(KeyMaterialError, match="not set"):
        keys.resolve("env:NATLINK_TEST_UNSET_XYZ")


def test_file_reference_refuses_group_or_world_access(tmp_path):
    path = tmp_path / "k.key"
    ref = keys.create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.resolve(ref).fingerprint == keys.resolve(ref).fingerprint
    with pytest.raises(KeyMaterialError, match="refusing to overwrite"):
        keys.create_key_file(path)
    for mode in (0o640, 0o604, 0o620, 0o660):
        os.chmod(path, mode)
        with pytest.raises(KeyMaterialError, match="group or others"):
            keys.resolve(ref)
    os.chmod(path, 0o400)
    assert len(keys.resolve(ref).fingerprint) == 32
    with pytest.raises(KeyMaterialError, match="no such file"):
        keys.resolve(f"file:{tmp_path / 'missing.key'}")
    bad = tmp_path / "bad.key"
    bad.write_bytes(SECRET)  # not hex
    os.chmod(bad, 0o600)
    with pytest.raises(KeyMaterialError) as err:
        keys.resolve(f"file:{bad}")
    assert_no_secret(str(err.value))


def test_unknown_scheme_and_custom_provider():
    with pytest.raises(KeyMaterialError, match="scheme 'vault' is not known"):
        keys.resolve("vault:natlink/master")
    with pytest.raises(KeyMaterialError):
        keys.resolve("no-colon")

    class FakeKms:  # stands in for a cloud KMS / secret store client
        def fetch(self, target: str) -> bytes:
            if target == "broken":
                raise RuntimeError(f"backend said: {SECRET.hex()}")  # a careless provider error
            return keys.decode_key_text(SECRET.hex(), where=f"fake-kms {target}")

    keys.register_provider("fake-kms", FakeKms(), replace=True)
    key = keys.resolve("fake-kms:natlink/master")
    assert key.fingerprint == GOLDEN_FINGERPRINT and key.key_id == "fake-kms:natlink/master"
    with pytest.raises(KeyMaterialError) as err:
        keys.resolve("fake-kms:broken")
    assert "RuntimeError" in str(err.value)
    assert_no_secret(str(err.value))
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(KeyMaterialError, match="already registered"):
        keys.register_provider("fake-kms", FakeKms())
    with pytest.raises(KeyMaterialError, match="fetch"):
        keys.register_provider("nothing", object())


# --- issue 15: raw keys are refused unseen; weak keys are refused; test keys need the opt-in --------


def _canaries() -> dict[str, str]:
    """Random key material in the forms someone might paste for --key (fresh per run, never a real key)."""
    import secrets

    raw = secrets.token_bytes(32)
    return {
        "hex": raw.hex(),
        "base64": "base64:" + base64.b64encode(raw).decode(),
        "passphrase": "canary " + secrets.token_hex(12) + " horse battery",
        "env-of-hex": "env:" + secrets.token_hex(32),
    }


def assert_never_shown(canary: str, text: str) -> None:
    body = canary.split(":", 1)[-1]
    assert body not in text
    windows = {body[i:i + 10] for i in range(0, max(1, len(body) - 9))}
    assert not [w for w in windows if w in text], "part of the key was shown"


@pytest.mark.parametrize("kind", ["hex", "base64", "passphrase", "env-of-hex"])
def test_a_raw_key_is_refused_without_being_echoed(kind, caplog):
    import traceback

    from natlink.errors import KeyReferenceError

    canary = _canaries()[kind]
    with caplog.at_level(logging.DEBUG), pytest.raises(KeyReferenceError) as err:
        keys.resolve(canary)
    shown = "\n".join([str(err.value), repr(err.value), *traceback.format_exception(err.value), caplog.text])
    assert_never_shown(canary, shown)
    assert f"{len(canary)} characters" in str(err.value) and "not shown" in str(err.value)
    assert not keys.is_reference(canary) and keys.is_reference("env:NATLINK_KEY") and keys.is_reference("file:/etc/k.key")


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (b"correct horse battery staple 123", "it is text"),  # a passphrase padded to 32 bytes
        (b"0123456789abcdef0123456789abcdef", "it is text"),  # hex text used as the key bytes
        (bytes(32), "distinct byte values"),  # all zero
        (bytes([0x0B]) * 32, "distinct byte values"),  # RFC 4231's test key, repeated
        (bytes(range(200, 232)), "pattern"),  # a counter
        (bytes.fromhex("deadbeef00c0ffee11aa22bb33cc44dd55ee66ff778899aa0f1e2d3c4b5a6978")[:16] * 2, "period of 16"),
    ],
)
def test_weak_key_material_is_refused_naming_the_reference_not_the_key(monkeypatch, secret, reason):
    from natlink.errors import WeakKeyError

    monkeypatch.setenv("NATLINK_TEST_WEAK", secret.hex())
    with pytest.raises(WeakKeyError, match=reason) as err:
        keys.resolve("env:NATLINK_TEST_WEAK")
    assert "env:NATLINK_TEST_WEAK" in str(err.value) and secret.hex() not in str(err.value)


def test_random_keys_pass_and_labelled_test_keys_need_the_opt_in(monkeypatch, tmp_path):
    import secrets

    from natlink.errors import WeakKeyError

    for _ in range(200):  # random keys never trip the checks
        keys.check_key_strength(secrets.token_bytes(32), "random")
    monkeypatch.setenv("NATLINK_TEST_HEX", SECRET.hex())
    assert keys.resolve("env:NATLINK_TEST_HEX").fingerprint == GOLDEN_FINGERPRINT  # conftest's opt-in
    monkeypatch.delenv(keys.ALLOW_TEST_KEYS_ENV)
    with pytest.raises(WeakKeyError, match="labelled test key is accepted only in tests"):
        keys.resolve("env:NATLINK_TEST_HEX")
    monkeypatch.setenv(keys.ALLOW_TEST_KEYS_ENV, "1")
    monkeypatch.setenv("NATLINK_TEST_TEXT", b"other-text-key-not-labelled-0000".hex())
    with pytest.raises(WeakKeyError, match="it is text"):  # the opt-in covers labelled keys only
        keys.resolve("env:NATLINK_TEST_TEXT")
    ref = keys.create_key_file(tmp_path / "strong.key")
    assert keys.resolve(ref).key_id == ref and len(keys.resolve_secret_text(ref)) == 64
