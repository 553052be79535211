"""The linkage centre's one way in: token tables read through their manifests, refused when unsafe.

:func:`load_tokens` is what train, link, evaluate and discover call; :func:`read_token_tables`
is the guarded union beneath it. They accept only token tables with manifests, and refuse
(:class:`~natlink.errors.FingerprintMismatchError`) inputs made under different keys or projects,
and (:class:`~natlink.errors.NotTokenTableError`) anything that is not a token table: plaintext
identifier columns, undeclared columns, values that are not tokens, row counts that differ from
the manifest. Named errors, before any linkage work.

Manifests are trusted only when signed by a trusted signer (:func:`natlink.tokens.manifest.as_manifest`,
:mod:`natlink.tokens.signing`; :class:`~natlink.errors.ManifestSignatureError`), and a table only
when its files are those its manifest binds (:func:`natlink.store.snapshot.content_digest`;
:class:`~natlink.errors.TokenTableChangedError`). The value check reads every row, once per
process and signed content (:func:`natlink.tokens.plaintext.scan_token_table`): every token is 64
hex digits, no kept text column holds NHS numbers or postcodes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import DeltaTableError, EncodingMismatchError, FingerprintMismatchError, InputDataError, NotTokenTableError, TokenTableChangedError
from natlink.store import delta, files, snapshot
from natlink.tokens.manifest import TokenManifest, as_manifest
from natlink.tokens.plaintext import scan_token_table

# Token tables whose values passed scan_token_table in this process, by scan_key (the signed
# content digest that check_table_content verified just before: the same bytes give the same
# answer): training and linking each read every input, so one `natlink run` scanned each table
# twice, and the scans took 13% of a 100k-person run's executor CPU (15% at 1M).
_SCANNED: set[str] = set()
# Bump when scan_token_table would answer otherwise for the same bytes (a stricter check): scans
# remembered under an older version are made again.
SCAN_VERSION = "natlink.value-scan/1"

__all__ = [
    "SCAN_VERSION", "as_manifests", "check_identifiers", "check_table_content", "forget_scans", "load_tokens", "read_token_tables",
    "scan_key", "signed_version", "with_unique_id",
]


def forget_scans() -> None:
    """Forget which token tables passed the value scan in this process: the next read scans again."""
    _SCANNED.clear()


def scan_key(m: TokenManifest) -> str | None:
    """What a passed value scan of ``m``'s table is remembered by: the content digest its manifest
    signs (the bytes of the table's version, which :func:`check_table_content` verifies before any
    read), the columns the scan checks and :data:`SCAN_VERSION`. None for a manifest that binds no
    content (such a table is refused anyway)."""
    content = m.table_content or {}
    if not content.get("sha256"):
        return None
    text = json.dumps({"scan": SCAN_VERSION, "sha256": content["sha256"], "version": signed_version(m),
                       "tokens": sorted(m.token_purposes), "keep": list(m.keep)}, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def as_manifests(manifests: Sequence[Any], *, trusted=None) -> list[TokenManifest]:
    """Verified manifests from manifest objects, mappings or manifest file paths."""
    return [as_manifest(m, trusted=trusted) for m in manifests]


def with_unique_id(tokens: DataFrame) -> DataFrame:
    """Splink's key: dataset and record id joined (record ids are unique within a dataset)."""
    return tokens.withColumn(C.UNIQUE_ID, F.concat_ws(":", F.col(C.DATASET), F.col(C.RECORD_ID)))


def load_tokens(spark, manifests: Sequence[Any], *, trusted=None, scanned: Collection[str] = ()) -> tuple[DataFrame, str]:
    """Union of token tables (manifests, paths or mappings) with Splink's unique id, and their key fingerprint.

    Refused unless every input is a token table with a valid, signed manifest and all were made
    under one key (:func:`read_token_tables`; ``scanned`` as there).
    """
    items = as_manifests(manifests, trusted=trusted)
    union = read_token_tables(spark, items, trusted=trusted, scanned=scanned)
    plain = sorted(set(union.columns) & set(C.IDENTIFIERS))
    if plain:
        raise InputDataError(f"inputs hold plaintext identifier columns {plain}; link takes token tables only")
    return with_unique_id(union), items[0].key_fingerprint


def _check_columns(m: TokenManifest, df: DataFrame) -> None:
    where = f"token table {m.table_path} (dataset {m.dataset!r})"
    present = list(df.columns)
    plaintext = sorted(set(present) & set(C.IDENTIFIERS))
    if plaintext:
        raise NotTokenTableError(f"{where}: carries plaintext identifier columns {plaintext}; refused")
    declared = {*m.keep, *m.token_purposes, *m.blooms}
    undeclared = sorted(set(present) - declared)
    if undeclared:
        raise NotTokenTableError(f"{where}: columns {undeclared} are not declared in its manifest; refused")
    absent = sorted(declared - set(present))
    if absent:
        raise NotTokenTableError(f"{where}: columns {absent} declared in its manifest are missing")
    types = dict(df.dtypes)
    wrong = sorted(c for c in m.token_purposes if types[c] != "string") + sorted(
        c for c in m.blooms if types[c] != "array<int>"
    )
    if wrong:
        raise NotTokenTableError(f"{where}: columns {wrong} have the wrong type for tokens / Bloom filters")


def signed_version(m: TokenManifest) -> int | None:
    """The Delta version of the token table a manifest describes (and signs): a later write to the
    table does not change what an earlier manifest, or a link run that read it, meant."""
    content = m.table_content or {}
    return content.get("version", m.data.get("delta_version"))


def check_table_content(m: TokenManifest, spark=None) -> None:
    """Refuse a token table whose files at its signed version are not those its manifest binds."""
    signed = m.table_content or {}
    try:
        now = snapshot.content_digest(m.table_path, spark, version=signed_version(m))
    except DeltaTableError as exc:
        raise TokenTableChangedError(f"token table {m.table_path} (dataset {m.dataset!r}): {exc}; refused") from None
    if (signed.get("version"), signed.get("sha256")) != (now.version, now.sha256):
        manifest = m.path or f"the manifest of {m.dataset!r}"
        raise TokenTableChangedError(
            f"token table {m.table_path} (dataset {m.dataset!r}): its files (Delta version {now.version}, {now.files} files, "
            f"{now.bytes} bytes) are not those {manifest} was signed for (version {signed.get('version')}, "
            f"{signed.get('files')} files, {signed.get('bytes')} bytes): the table was changed after signing; refused"
        )


def check_identifiers(items: Sequence[TokenManifest]) -> None:
    """Refuse token tables whose providers normalised one identifier differently (its kind or
    options, as each manifest records them; a manifest that records none has the built-in
    defaults): their tokens of equal values would differ and true matches be lost silently."""
    from natlink.config.identifiers import BUILTIN

    seen: dict[str, tuple[str, dict]] = {}
    for m in items:
        recorded = m.data.get("identifiers") or {}
        for name in sorted({*recorded, *BUILTIN}):
            described = recorded.get(name, BUILTIN[name].described() if name in BUILTIN else None)
            if described is None:
                continue  # a declared identifier this dataset does not have
            first = seen.setdefault(name, (m.dataset, described))
            if first[1] != described:
                raise EncodingMismatchError(
                    f"identifier {name!r} is {first[1]} in dataset {first[0]!r} but {described} in {m.dataset!r}: "
                    "declare it alike in every dataset's identifiers (docs/datasets.md) and re-tokenise"
                )


def read_token_tables(
    spark,
    manifests: Iterable[TokenManifest | Mapping[str, Any] | str | Path],
    *,
    expected_fingerprint: str | None = None,
    trusted=None,
    scanned: Collection[str] = (),
) -> DataFrame:
    """Union of token tables, refusing unsigned or forged manifests, edited tables, mixed
    keys/projects and anything that is not a token table. ``trusted``: the registry of trusted
    signers (default: :func:`natlink.tokens.signing.trusted_signers`).

    ``scanned``: :func:`scan_key` values of tables whose value scan passed before, where the
    caller keeps a record (a link run: the completed runs of its tables folder). Their scan is not
    repeated; every other check is, and the content digest the key holds is verified first."""
    items = [as_manifest(m, trusted=trusted) for m in manifests]
    if not items:
        raise NotTokenTableError("read_token_tables: no token tables given")
    keys = {(m.key_fingerprint, m.project) for m in items}
    if len(keys) > 1 or (expected_fingerprint is not None and items[0].key_fingerprint != expected_fingerprint):
        described = ", ".join(f"{m.dataset}: {m.key_fingerprint}" + (f" (project {m.project})" if m.project else "") for m in items)
        expected = f"; expected {expected_fingerprint}" if expected_fingerprint else ""
        raise FingerprintMismatchError(f"token tables were made under different keys or projects: {described}{expected}")
    encodings = {(m.data.get("encoding") or {}).get("fingerprint") for m in items}
    if len(encodings) > 1:
        described = ", ".join(f"{m.dataset}: {(m.data.get('encoding') or {}).get('fingerprint') or 'deterministic'}" for m in items)
        raise EncodingMismatchError(f"token tables were made with different encodings: {described}; re-tokenise them alike")
    names = [m.dataset for m in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise NotTokenTableError(f"datasets {repeated} are given more than once")
    check_identifiers(items)
    purposes: dict[str, str] = {}
    for m in items:
        for column, purpose in m.token_purposes.items():
            if purposes.setdefault(column, purpose) != purpose:
                raise NotTokenTableError(f"column {column} has different key purposes across manifests ({m.dataset})")
    frames = []
    for m in items:
        if not delta.exists(m.table_path):
            raise NotTokenTableError(f"token table {m.table_path} (dataset {m.dataset!r}) is not a Delta table")
        version = signed_version(m)  # the version the manifest describes, not whatever came later
        what = f"token table {m.table_path} (dataset {m.dataset!r}, version {version})"
        files.check_files(spark, m.table_path, version, what=what, remedy="re-tokenise the dataset at its provider")
        check_table_content(m, spark)  # the bytes of that version are those the manifest was signed for
        df = delta.read(spark, str(m.table_path), version=version)
        counted = int(df.count())  # answered from the Delta log's file statistics
        if counted != m.rows:
            raise NotTokenTableError(f"{what}: {counted} rows, but its manifest records {m.rows}; refused")
        _check_columns(m, df)
        key = scan_key(m)
        if key is None or (key not in _SCANNED and key not in scanned):
            scan_token_table(df, tokens=list(m.token_purposes), kept=m.keep, where=f"token table {m.table_path} (dataset {m.dataset!r})")
            if key is not None:
                _SCANNED.add(key)
        frames.append(df)
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame, allowMissingColumns=True)
    return union
