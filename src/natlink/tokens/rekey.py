"""Project re-keying: project-specific pseudonyms from stored tokens, without plaintext.

:func:`rekey` computes ``HMAC(project subkey, token bytes)`` per token column, with subkeys
derived per project and per field purpose from a project key, so two projects' extracts share no
values and cannot be joined, while columns of one purpose stay comparable within a project. Record
and person ids are pseudonymised too (a shared record id would join two extracts). Bloom filter
columns are dropped from project extracts (a position permutation would keep their set structure,
which is enough to join them). :func:`rekey_table` (``natlink rekey``) applies it to one token
table and writes the extract with its own manifest.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import NotTokenTableError, ReconciliationError, SchemaError
from natlink.store import delta
from natlink.tokens.encode import BLOOM_PREFIX
from natlink.tokens.hmac_sha256 import PadColumns, key_frame
from natlink.tokens import signing
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import TokenManifest, as_manifest, manifest_path
from natlink.tokens.reader import read_token_tables

__all__ = ["rekey", "rekey_table"]

log = logging.getLogger(__name__)


def rekey(
    df: DataFrame,
    purposes: Mapping[str, str],
    project_key: KeyMaterial,
    *,
    project: str,
    ids: Sequence[str] = (C.RECORD_ID, C.PERSON_ID),
    keep: Sequence[str] | None = None,
    hmac_implementation: str | None = None,
) -> DataFrame:
    """Project pseudonyms from stored tokens, without plaintext.

    ``purposes`` maps each token column to its key purpose (from the manifest): columns of one
    purpose stay comparable within the project. ``ids`` (record and person ids, when present) are
    pseudonymised too, since a shared record id would join two projects' extracts. Bloom filter
    columns are dropped. ``keep`` (default: every other column) is carried over unchanged.
    ``hmac_implementation``: "auto", "jvm" or "native"; None reads ``NATLINK_HMAC``.
    """
    if not project or "/" in project:
        raise SchemaError(f"rekey: project name {project!r} must be non-empty and contain no '/'")
    unknown = sorted(c for c in df.columns if C.is_token(c) and c not in purposes)
    if unknown:
        raise SchemaError(f"rekey: token columns {unknown} have no purpose in the manifest")
    tokens = [c for c in df.columns if c in purposes]
    id_cols = [c for c in ids if c in df.columns]
    dropped = {*tokens, *id_cols, *(c for c in df.columns if c.startswith(BLOOM_PREFIX))}
    carried = list(keep) if keep is not None else [c for c in df.columns if c not in dropped]
    leaking = sorted(set(carried) & (set(C.IDENTIFIERS) | dropped))
    if leaking:
        raise SchemaError(f"rekey: cannot carry {leaking} into a project extract")

    needed = sorted({f"rekey:{project}/{purposes[c]}" for c in tokens} | {f"rekey:{project}/id:{c}" for c in id_cols})
    pads = PadColumns(needed, hmac_implementation)
    joined = df.crossJoin(F.broadcast(key_frame(df.sparkSession, project_key, needed)))
    out = [F.col(c) for c in carried]
    out += [pads.hmac(f"rekey:{project}/id:{c}", F.col(c).cast("string")).alias(c) for c in id_cols]
    out += [pads.hmac(f"rekey:{project}/{purposes[c]}", F.unhex(F.col(c))).alias(c) for c in tokens]
    return joined.select(*out)


def rekey_table(
    spark,
    source: TokenManifest | Mapping[str, Any] | str | Path,
    project_key: KeyMaterial,
    *,
    project: str,
    out_dir: str | Path,
    hmac_implementation: str | None = None,
    signer: signing.ManifestSigner | str | None = None,
) -> TokenManifest:
    """Write a project extract of one token table: project pseudonyms, no Bloom filters.

    ``hmac_implementation``: "auto", "jvm" or "native"; None reads ``NATLINK_HMAC``. ``signer``: the
    linkage centre's own manifest signing key (a signer or key reference; None: ``NATLINK_SIGNING_KEY``):
    the extract's manifest is signed by the centre, whose public key the projects trust."""
    import natlink

    signer = signing.load_signer(signer)
    m = as_manifest(source)
    if m.project:
        raise NotTokenTableError(f"{m.dataset}: already a project extract (project {m.project!r}); re-key the source table")
    df = read_token_tables(spark, [m])
    out = rekey(df, m.token_purposes, project_key, project=project, hmac_implementation=hmac_implementation)
    table = Path(out_dir) / m.dataset
    written = delta.write(out, str(table), mode="overwrite", partition_by=(C.REGION,))
    if written.rows != m.rows:
        raise ReconciliationError(f"rekey {m.dataset}: {m.rows} rows in, {written.rows} written")
    kept = [c for c in m.keep]
    data = {
        **{k: v for k, v in m.data.items() if k not in ("quarantine_table", signing.SIGNATURE_FIELD, signing.TABLE_CONTENT_FIELD)},
        "natlink_version": natlink.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "key_id": project_key.key_id,
        "key_fingerprint": project_key.fingerprint,
        "project": project,
        "source_key_fingerprint": m.key_fingerprint,
        "rows": written.rows,
        "table": table.name,
        "delta_version": written.version,
        "columns": {"keep": kept, "tokens": m.token_purposes, "blooms": {}},
    }
    manifest = TokenManifest(data).save(manifest_path(out_dir, m.dataset), signer=signer, spark=spark)
    log.info("re-keyed %s for project %s: %d rows", m.dataset, project, written.rows)
    return manifest
