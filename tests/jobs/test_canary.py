"""Canary test: plant known plaintext and a known (fake) key, run tokenise and link with Spark
event logs on, then scan every file written and the explain() text for any form of them.

Forms searched: plaintext values raw (upper, lower, title case), UTF-16, hex and base64 (three
alignments); the master key, every subkey and every HMAC pad derived from it, raw, hex and base64.
Parquet files (Delta tables, Splink's lineage files) are decoded as well as scanned raw, and
compressed files are inflated. Zero hits allowed; positive controls prove the scanner finds them.
"""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hashlib
import hmac

from natlink.config import ModelConfig, load, project_root
from natlink.tokens import encode, hmac_sha256, salted
from natlink.synth import generate as synth
from natlink.tokens.keys import KeyMaterial

# A second Spark session in a child process: minutes on a shared 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# Obviously fake canary key: never use outside tests.
CANARY_KEY = b"test-key-not-secret-canary-00000"
GP_HEADER = "patient_ref,nhs_no,forename,surname,birth_date,gender,postcode"
HES_HEADER = "EPIKEY,NHS_NUMBER,GIVEN_NAME,FAMILY_NAME,DOB,SEX,POSTCODE,ADMIDATE"
CANARY = {
    "nhs": "9990012345",
    "given": "QUILLIFERA",
    "family": "ZANTHROPUSK",
    "dob": "1907-06-05",
    "postcode": "ZE9 9QX",
}
GP_ROWS = [
    f"GPCANARY01,{CANARY['nhs']},Quillifera,Zanthropusk,{CANARY['dob']},F,{CANARY['postcode']}",
    f"GPCANARY02,,Quillifera,Zanthropusk,{CANARY['dob']},F,ZE99QX",
]
HES_ROWS = [
    f"HECANARY01,{CANARY['nhs']},QUILLIFERA,ZANTHROPUSK,05/06/1907,2,{CANARY['postcode']},2024-02-02",
    f"HECANARY02,999 001 2345,QUILIFERA,ZANTHROPUSK,06/05/1907,2,ZE9 9QX,2024-03-03",
]


SALTED_MODEL = load(project_root() / "conf" / "model.yaml", ModelConfig)
# The canary's normalised values, as the salted encoder's inner tokens hash them.
INNER = {
    "nhs_number": ["9990012345"], "given_name": ["QUILLIFERA", "QUILIFERA"], "family_name": ["ZANTHROPUSK"],
    "date_of_birth": ["1907-06-05", "1907-05-06"], "postcode": ["ZE9 9QX", "ZE99QX"],
}


def b64_forms(data: bytes) -> list[bytes]:
    """base64 of ``data`` at the three byte alignments it can have inside a longer blob."""
    forms = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data).rstrip(b"=")
        start = (0, 2, 3)[k]
        forms.append(enc[start:-2])
    return [f for f in forms if len(f) >= 8]


def plaintext_needles() -> dict[str, bytes]:
    needles = {}
    values = set(CANARY.values()) | {"ZE99QX", "999 001 2345", "05/06/1907", "QUILIFERA"}
    for value in values:
        for variant in {value, value.upper(), value.lower(), value.title()}:
            raw = variant.encode()
            needles[f"plain {variant!r}"] = raw
            needles[f"utf16le {variant!r}"] = variant.encode("utf-16-le")
            needles[f"utf16be {variant!r}"] = variant.encode("utf-16-be")
            needles[f"hex {variant!r}"] = raw.hex().encode()
            needles[f"HEX {variant!r}"] = raw.hex().upper().encode()
            for i, form in enumerate(b64_forms(raw)):
                needles[f"b64/{i} {variant!r}"] = form
    return needles


def secret_needles() -> dict[str, bytes]:
    key = KeyMaterial("canary", CANARY_KEY)
    purposes = {s.purpose for s in encode.TOKEN_SPECS}
    purposes |= {b.purpose for b in encode.BLOOM_SPECS} | {b.noise_purpose for b in encode.BLOOM_SPECS}
    purposes |= set(salted.SaltedScheme.from_model(SALTED_MODEL).key_purposes())
    secrets = {"master": CANARY_KEY}
    # A salted table's inner tokens are deterministic per value: they must never leave the provider.
    for field, values in INNER.items():
        for value in values:
            purpose = f"salted:inner/field:{field}"
            secrets[f"inner token {field} {value!r}"] = hmac.new(key.subkey(purpose), value.encode(), hashlib.sha256).hexdigest().encode()
    for p in sorted(purposes):
        sub = key.subkey(p)
        inner, outer = hmac_sha256.hmac_pads(sub)
        secrets[f"subkey {p}"] = sub
        secrets[f"ipad {p}"] = inner
        secrets[f"opad {p}"] = outer
    needles = {}
    for name, secret in secrets.items():
        if name.startswith("inner token"):
            needles[name] = secret
            continue
        needles[f"raw {name}"] = secret
        needles[f"hex {name}"] = secret.hex().encode()
        needles[f"HEX {name}"] = secret.hex().upper().encode()
        for i, form in enumerate(b64_forms(secret)):
            needles[f"b64/{i} {name}"] = form
    # A pad's distinctive part: a 32-byte subkey xor 0x36 followed by the 0x36 block filler.
    return needles


def decoded_views(path: Path, blob: bytes) -> list[bytes]:
    """The raw bytes plus decoded forms of containers (Parquet pages, gzip/zstd streams)."""
    views = [blob]
    if blob[:4] == b"PAR1":
        try:
            table = pq.read_table(path)
            views.append(repr(table.to_pylist()).encode("utf-8", "backslashreplace"))
            for column in table.columns:
                if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                    views += [v for v in column.to_pylist() if v]
        except Exception:  # noqa: BLE001 - a partial file is still scanned raw
            pass
    elif blob[:2] == b"\x1f\x8b":
        try:
            views.append(gzip.decompress(blob))
        except OSError:
            pass
    elif blob[:4] == b"\x28\xb5\x2f\xfd":
        try:
            import pyarrow as pa_

            with pa_.input_stream(pa_.py_buffer(blob), compression="zstd") as stream:
                views.append(stream.read())
        except Exception:  # noqa: BLE001
            pass
    return views


def scan(files: list[Path], needles: dict[str, bytes]) -> list[str]:
    hits = []
    for path in files:
        try:
            blob = path.read_bytes()
        except OSError:
            continue
        for view in decoded_views(path, blob):
            for name, needle in needles.items():
                if needle in view:
                    hits.append(f"{name} in {path}")
    return hits


def plant(folder: Path, header: str, rows: list[str]) -> None:
    """Write the canary rows as one more CSV file in ``folder``, under the generator's own header
    (a delivery's files must share one header): columns the canary does not set stay empty."""
    generated = sorted(folder.glob("*.csv"))[0]
    columns = generated.read_text(encoding="utf-8").splitlines()[0].split(",")
    names = header.split(",")
    assert set(names) <= set(columns), (names, columns)
    lines = [",".join(columns)]
    for row in rows:
        values = dict(zip(names, row.split(",")))
        lines.append(",".join(values.get(c, "") for c in columns))
    (folder / "canary.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def canary_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    for sub in ("cwd", "logs", "eventlog"):
        (root / sub).mkdir()
    data = root / "data"
    synth.generate(spark, data, persons=150, seed=5)
    plant(data / "raw" / "gp", GP_HEADER, GP_ROWS)
    plant(data / "raw" / "hes", HES_HEADER, HES_ROWS)
    (root / "tmp").mkdir()
    # TMPDIR: the run's temporary files (Python's tempfile, DuckDB spill folders) land where the scan looks.
    env = {**os.environ, "NATLINK_CANARY_KEY": CANARY_KEY.hex(), "NATLINK_SPARK_LOG_LEVEL": "INFO", "TMPDIR": str(root / "tmp")}
    job = Path(__file__).with_name("canary_job.py")
    with open(root / "logs" / "stdout.txt", "wb") as out, open(root / "logs" / "stderr.txt", "wb") as err:
        proc = subprocess.run([sys.executable, str(job), str(root)], env=env, stdout=out, stderr=err, timeout=2200)
    assert proc.returncode == 0, (root / "logs" / "stderr.txt").read_text()[-3000:]
    written = [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(data / "raw")]
    return root, written


def test_the_run_left_the_traces_we_scan(canary_run):
    root, written = canary_run
    names = {p.relative_to(root).parts[0] for p in written}
    assert {"out", "eventlog", "logs", "checkpoints_at_end", "local_snapshot"} <= names, names
    assert not (root / "checkpoints").exists()  # private, and removed when the job ended
    assert any(p.stat().st_size > 10_000 for p in (root / "eventlog").rglob("*") if p.is_file())
    assert (root / "logs" / "natlink.log").read_text().count("fingerprint") >= 1
    assert "clusters=" in (root / "logs" / "stdout.txt").read_text()
    assert "BroadcastNestedLoopJoin" in (root / "out" / "explain.txt").read_text()
    assert any(p.suffix == ".parquet" for p in (root / "out" / "tokens").rglob("*"))
    assert len(written) > 50
    # The outputs people see, the salted run and the error paths all ran.
    assert (root / "out" / "report.html").stat().st_size > 10_000
    assert (root / "out" / "extract" / "multimorbidity_example" / "extract.json").is_file()
    assert (root / "out" / "salted" / "gp.manifest.json").is_file() and (root / "out" / "salted_tables" / "clusters" / "_delta_log").is_dir()
    log = (root / "logs" / "natlink.log").read_text()
    assert "discover found" in log and log.count("expected failure") >= 7, log[-3000:]
    assert "EncodingMismatchError" in log or "salted" in log


def test_no_plaintext_canary_anywhere(canary_run):
    _root, written = canary_run
    assert scan(written, plaintext_needles()) == []


def test_no_key_or_key_derived_secret_anywhere(canary_run):
    _root, written = canary_run
    assert scan(written, secret_needles()) == []


def test_scanner_finds_what_it_looks_for(canary_run, tmp_path):
    root, _ = canary_run
    # The planted input holds the plaintext ...
    assert scan([root / "data" / "raw" / "gp" / "canary.csv"], plaintext_needles())
    # ... a zstd Parquet file of plaintext and a base64/hex dump of the key are found too.
    pq.write_table(pa.table({"v": ["x", CANARY["family"].title()]}), tmp_path / "p.parquet", compression="zstd")
    assert any("ZANTHROPUSK" in h.upper() for h in scan([tmp_path / "p.parquet"], plaintext_needles()))
    sub = KeyMaterial("canary", CANARY_KEY).subkey("field:given_name")
    (tmp_path / "k.txt").write_bytes(b"x" + base64.b64encode(b"yy" + sub) + b" " + sub.hex().encode())
    hits = scan([tmp_path / "k.txt"], secret_needles())
    assert any("b64" in h for h in hits) and any("hex subkey field:given_name" in h for h in hits)
