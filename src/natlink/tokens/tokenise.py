"""Tokenisation at a data provider: a standardised frame becomes a token table and its manifest.

At a data provider (``natlink tokenise`` / ``jobs/tokenise.py``): a standardised frame becomes a
Delta token table (record id, region, event fields, ``tk_*`` tokens, ``bf_*`` Bloom filters) plus
``<dataset>.manifest.json`` recording the dataset, token schema version, row counts (in, out,
quarantined by reason), the key id and public fingerprint, the columns and their key purposes,
and the natlink version. Rows that cannot be tokenised usefully are quarantined with a reason
(never dropped): rows in = rows out + rows quarantined, checked in code.

Every function here takes ``hmac_implementation`` ("auto", "jvm" or "native") and passes it
down to :func:`natlink.tokens.encode.tokenise`; None means the ``NATLINK_HMAC`` environment
variable, else "auto" (:func:`natlink.tokens.hmac_sha256.choose_hmac_implementation`).
:func:`natlink.commands.tokenise` decides it once, at the outermost call.

The encodings themselves are :mod:`natlink.tokens.encode`; the manifest is
:mod:`natlink.tokens.manifest`; the linkage centre reads token tables through
:mod:`natlink.tokens.reader`, and re-keys them for projects with :mod:`natlink.tokens.rekey`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import delta
from natlink.tokens import encode
from natlink.errors import ReconciliationError, SchemaError
from natlink.tokens.hmac_sha256 import choose_hmac_implementation
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import MANIFEST_KIND, MANIFEST_VERSION, TokenManifest, manifest_path

__all__ = [
    "tokenise_configured",
    "tokenise_dataset",
    "tokenise_frame",
]

log = logging.getLogger(__name__)

BOOKKEEPING = (C.DATASET, C.RECORD_ID, C.REGION)
QUARANTINE_REASONS = ("missing_record_id", "duplicate_record_id", "no_identifiers")
_REASON = "__natlink_reason"


# --------------------------------------------------------------------------------------------
# Provider side


def _check_jvm_casing(spark) -> None:
    """Upper-casing of non-ASCII text follows the JVM locale; refuse the locales that change it."""
    language = spark.sparkContext._jvm.java.util.Locale.getDefault().getLanguage()
    if language in ("tr", "az", "lt"):
        raise SchemaError(
            f"the JVM default locale language is {language!r}, whose upper-casing differs from every other "
            "site's; start Spark with -Duser.language=en so tokens match across providers"
        )


def _mark(clean: DataFrame) -> DataFrame:
    """Adds the quarantine reason (NULL for rows that are tokenised)."""
    identifiers = [c for c in C.IDENTIFIERS if c in clean.columns]
    duplicated = (
        clean.where(F.col(C.RECORD_ID).isNotNull())
        .groupBy(C.RECORD_ID)
        .agg(F.count(F.lit(1)).alias("__n"))
        .where(F.col("__n") > 1)
        .select(F.col(C.RECORD_ID), F.lit(True).alias("__dup"))
    )
    joined = clean.join(duplicated, on=C.RECORD_ID, how="left")
    no_ids = F.lit(True)
    for c in identifiers:
        no_ids = no_ids & F.col(c).isNull()
    reason = (
        F.when(F.col(C.RECORD_ID).isNull(), F.lit("missing_record_id"))
        .when(F.col("__dup").isNotNull(), F.lit("duplicate_record_id"))
        .when(no_ids, F.lit("no_identifiers"))
    )
    return joined.select(*[F.col(c) for c in clean.columns], reason.alias(_REASON))


def tokenise_frame(
    clean: DataFrame,
    key: KeyMaterial,
    *,
    event_columns: Sequence[str] = (),
    specs: Sequence[encode.TokenSpec] = encode.TOKEN_SPECS,
    blooms: Sequence[encode.BloomSpec] = encode.BLOOM_SPECS,
    project: str | None = None,
    hmac_implementation: str | None = None,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(tokens, quarantine rows, reason counts) of a standardised frame; lazy, no Spark job."""
    missing = [c for c in BOOKKEEPING if c not in clean.columns]
    if missing:
        raise SchemaError(f"tokenise: the standardised frame lacks {missing}; present: {sorted(clean.columns)}")
    keep = [*BOOKKEEPING, *event_columns]
    encode.check_standardised_input(clean, keep, specs, blooms)
    marked = _mark(clean)
    tokens = encode.tokenise(
        marked.where(F.col(_REASON).isNull()), key, keep=keep, specs=specs, blooms=blooms, project=project,
        hmac_implementation=hmac_implementation,
    )
    quarantine = marked.where(F.col(_REASON).isNotNull()).select(
        C.DATASET, C.RECORD_ID, F.col(_REASON).alias(C.REASON), F.lit("tokenise").alias("stage")
    )
    counts = marked.groupBy(F.col(_REASON).alias(C.REASON)).agg(F.count(F.lit(1)).alias("rows"))
    return tokens, quarantine, counts


def tokenise_dataset(
    spark,
    clean: DataFrame,
    key: KeyMaterial,
    *,
    dataset: str,
    out_dir: str | Path,
    event_columns: Sequence[str] = (),
    upstream_quarantine: Mapping[str, int] | None = None,
    specs: Sequence[encode.TokenSpec] = encode.TOKEN_SPECS,
    blooms: Sequence[encode.BloomSpec] = encode.BLOOM_SPECS,
    hmac_implementation: str | None = None,
    project: str | None = None,
) -> TokenManifest:
    """Write ``out_dir/<dataset>`` (Delta, by region), its quarantine rows and its manifest.

    ``upstream_quarantine``: rows the standardiser already quarantined, by reason (recorded in the
    manifest's counts; they are not in ``clean``).
    """
    import natlink

    _check_jvm_casing(spark)
    out_dir = Path(out_dir)
    tokens, quarantine, counts = tokenise_frame(
        clean, key, event_columns=event_columns, specs=specs, blooms=blooms, project=project,
        hmac_implementation=hmac_implementation,
    )
    by_reason = {r[C.REASON]: int(r["rows"]) for r in counts.collect()}
    rows_in = sum(by_reason.values())
    table = out_dir / dataset
    written = delta.write(tokens, str(table), mode="overwrite", partition_by=(C.REGION,))
    quarantine_table = out_dir / "quarantine"
    q_written = delta.write(
        quarantine, str(quarantine_table), partition_by=(C.DATASET,), replace_partitions={C.DATASET: [dataset]}
    )
    quarantined = {r: n for r, n in by_reason.items() if r is not None}
    rows_out = written.rows
    if rows_in != rows_out + sum(quarantined.values()) or q_written.rows != sum(quarantined.values()):
        raise ReconciliationError(
            f"tokenise {dataset}: rows in {rows_in} != rows out {rows_out} + quarantined {sum(quarantined.values())} "
            f"(quarantine table got {q_written.rows})"
        )
    data = {
        "kind": MANIFEST_KIND,
        "manifest_version": MANIFEST_VERSION,
        "schema_version": encode.SCHEMA_VERSION,
        "dataset": dataset,
        "natlink_version": natlink.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "key_id": key.key_id,
        "key_fingerprint": key.fingerprint,
        "project": project,
        "rows": rows_out,
        "rows_in": rows_in,
        "quarantined": {"tokenise": quarantined, "standardise": dict(upstream_quarantine or {})},
        "table": table.name,
        "delta_version": written.version,
        "partition_by": [C.REGION],
        "quarantine_table": quarantine_table.name,
        "columns": {
            "keep": [*BOOKKEEPING, *event_columns],
            "tokens": encode.column_purposes(specs),
            "blooms": {b.column: {"bits": b.bits, "hashes": b.hashes, "flips": b.flips} for b in blooms},
        },
        "token_columns": encode.token_columns(specs),
    }
    manifest = TokenManifest(data).save(manifest_path(out_dir, dataset))
    log.info(
        "tokenised %s: %d rows in, %d out, quarantined %s; key fingerprint %s",
        dataset, rows_in, rows_out, quarantined, key.fingerprint,
    )
    return manifest


def tokenise_configured(
    spark,
    ds,
    key: KeyMaterial,
    *,
    data_dir: str | None,
    out_dir: str | Path,
    project: str | None = None,
    run_id: str | None = None,
    quarantine_table: str | Path | None = None,
    hmac_implementation: str | None = None,
) -> TokenManifest:
    """Onboard and tokenise one configured dataset (``conf/datasets/NAME.yaml``).

    :func:`natlink.provider.onboard.onboard` reads, checks and standardises the delivery; its quarantine
    rows go to ``quarantine_table`` (default ``out_dir/onboarding_quarantine``; partition
    run_id/dataset replaced, so a rerun with the same run id is idempotent) and its counts
    (rows in = out + quarantined + duplicates collapsed) into the manifest under ``onboarding``.
    """
    from natlink.provider import onboard as onboarding
    from natlink.store import quarantine as quarantine_rows

    run_id = run_id or datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%SZ")
    onboarded = onboarding.onboard(spark, ds, data_dir=data_dir, run_id=run_id)
    try:
        table = Path(quarantine_table) if quarantine_table is not None else Path(out_dir) / "onboarding_quarantine"
        quarantine_rows.write(onboarded.quarantine, table, dataset=ds.name, run_id=run_id)
        counts = onboarded.counts
        manifest = tokenise_dataset(
            spark,
            onboarded.clean,
            key,
            dataset=ds.name,
            out_dir=out_dir,
            event_columns=ds.kept_columns(),
            upstream_quarantine={r: n for r, n in counts.quarantine_reasons.items() if n},
            hmac_implementation=hmac_implementation,
            project=project,
        )
    finally:
        onboarded.unpersist()
    if manifest.data["rows_in"] != counts.rows_out:
        raise ReconciliationError(
            f"tokenise {ds.name}: onboarding passed on {counts.rows_out} rows, tokenise received {manifest.data['rows_in']}"
        )
    data = {**manifest.data, "run_id": run_id, "onboarding": counts.as_dict(), "onboarding_quarantine_table": str(table)}
    if ds.age_band is not None:  # how the kept age band was derived: readers check providers agree
        data["age_band"] = ds.age_band.model_dump(mode="json")
    return TokenManifest(data).save(manifest.path)


# --------------------------------------------------------------------------------------------
# Job entry (jobs/tokenise.py and `natlink tokenise` share it)
