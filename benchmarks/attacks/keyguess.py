"""Attack d: guessing a low-entropy key from the public fingerprint in a manifest.

A manifest publishes the key's fingerprint. Whoever holds a manifest can test candidate keys
offline: compute the fingerprint of a candidate (natlink's own public ``KeyMaterial``, so the
attack follows whatever derivation natlink uses) and compare. The dictionary holds what people
use as keys: common passwords and words, the project's own vocabulary, strings that look like
keys in the project's public files (example and test keys in docs, configs, tests, benchmarks),
each with digits/years appended, and each turned into key bytes the usual ways (as is, padded to
32 bytes with NULs, spaces or zeros, repeated to 32 bytes, or SHA-256 of it).
A random 32-byte key is not in any dictionary: the suite confirms it is not found.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parents[2]
MIN_KEY_BYTES = 32
COMMON = (
    "password passw0rd p@ssw0rd letmein welcome admin administrator root secret secretkey changeme changeit "
    "qwerty qwertyuiop abc123 iloveyou monkey dragon master sunshine princess football baseball trustno1 "
    "test testing default guest login hello shadow superman batman starwars whatever freedom nhs nhsdigital "
    "natlink linkage link record records patient patients health hospital gp hes key masterkey "
    "master-key linkage-key natlink-key project demo bench benchmark example sample dev development prod "
    "production staging local token tokens pseudonym salt pepper hmac"
).split()
SUFFIXES = ("", "1", "12", "123", "1234", "12345", "!", "01", "2024", "2025", "2026", "-2025", "-2026", "_2026")
PAD_CHARS = (b"\x00", b" ", b"0", b"!", b"-")
QUOTED = re.compile(r"""b?["']([A-Za-z0-9][A-Za-z0-9 _\-!.@#:/+]{5,79})["']""")
HEX_KEY = re.compile(r"\b([0-9a-fA-F]{64})\b")


def as_keys(text: bytes) -> Iterator[bytes]:
    """The ways a text becomes 32+ key bytes."""
    if len(text) >= MIN_KEY_BYTES:
        yield text
        yield text[:MIN_KEY_BYTES]
    else:
        for pad in PAD_CHARS:
            yield text.ljust(MIN_KEY_BYTES, pad)
        if text:
            yield (text * (MIN_KEY_BYTES // len(text) + 1))[:MIN_KEY_BYTES]
    yield hashlib.sha256(text).digest()


def harvested(root: Path = ROOT) -> set[bytes]:
    """Key-like strings in the project's public files: quoted literals near 'key'/'secret'/'pass',
    and 64-hex-digit strings (a hex key)."""
    found: set[bytes] = set()
    for path in root.rglob("*"):
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh", ".ipynb") or not path.is_file():
            continue
        if any(part in {".venv", "data", "node_modules", ".git"} for part in path.relative_to(root).parts):
            continue
        rel = path.relative_to(root).as_posix()
        if rel in ("benchmarks/attacks/keyguess.py",) or rel.startswith("tests/privacy/"):  # planted keys
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for line in text.splitlines():
            low = line.lower()
            if "key" in low or "secret" in low or "pass" in low:
                found.update(m.group(1).encode() for m in QUOTED.finditer(line))
            for m in HEX_KEY.finditer(line):
                found.add(bytes.fromhex(m.group(1)))
    return found


def words() -> list[bytes]:
    base = set(COMMON)
    base |= {w.capitalize() for w in COMMON} | {w.upper() for w in COMMON}
    project = ["natlink", "nhs", "linkage", "gp", "hes", "alpha", "beta", "project", "master", "key", "secret", "demo"]
    base |= {f"{a}-{b}" for a in project for b in project if a != b} | {f"{a}_{b}" for a in project for b in project if a != b}
    base |= {f"{a}{b}" for a in project for b in project if a != b}
    return sorted({f"{w}{s}".encode() for w in base for s in SUFFIXES})


def candidates() -> Iterator[bytes]:
    """Every candidate key, cheapest guesses first; each yielded once."""
    seen: set[bytes] = set()
    for text in [*sorted(harvested()), *words()]:
        for key in as_keys(text):
            if key not in seen:
                seen.add(key)
                yield key


def fingerprint(secret: bytes) -> str:
    from natlink.tokens.keys import KeyMaterial

    return KeyMaterial("guess", secret).fingerprint


@dataclass(frozen=True)
class Guess:
    target: str
    found: bool
    tried: int
    seconds: float


def guess(target_fingerprint: str, label: str, pool: Iterable[bytes] | None = None, budget_s: float = 120.0) -> Guess:
    started = time.perf_counter()
    tried = 0
    for key in pool if pool is not None else candidates():
        tried += 1
        if fingerprint(key) == target_fingerprint:
            return Guess(label, True, tried, time.perf_counter() - started)
        if time.perf_counter() - started > budget_s:
            break
    return Guess(label, False, tried, time.perf_counter() - started)


# Weak keys people make, planted to time the attack (fake keys, for this benchmark only).
PLANTED = {
    "password, NUL-padded": b"Password123".ljust(32, b"\x00"),
    "project words, space-padded": b"natlink-key-2026".ljust(32, b" "),
    "sha256 of a word": hashlib.sha256(b"letmein").digest(),
}


def key_attack(manifest_fingerprints: dict[str, str]) -> list[Guess]:
    """Guess each manifest's key, each planted weak key, and a fresh random key (must not be found)."""
    pool = list(candidates())
    out = [guess(fp, f"manifest key ({name})", pool) for name, fp in manifest_fingerprints.items()]
    out += [guess(fingerprint(k), f"weak key: {name}", pool) for name, k in PLANTED.items()]
    out.append(guess(fingerprint(secrets.token_bytes(32)), "random 32-byte key", pool))
    return out
