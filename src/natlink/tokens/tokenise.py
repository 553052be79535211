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
:mod:`natlink.tokens.reader`. Projects never receive tokens: their extracts
(:mod:`natlink.outputs.extract`) hold random per-project person ids and allow-listed columns.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import delta
from natlink.store import quarantine as Q
from natlink.tokens import encode, salted, signing
from natlink.errors import NatlinkError, ReconciliationError, SchemaError
from natlink.tokens.delivery import identify_delivery
from natlink.config.identifiers import IdentifierKind
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import MANIFEST_KIND, MANIFEST_VERSION, TokenManifest, delivery_summary, manifest_path, summary_line
from natlink.tokens.plaintext import check_kept_columns

__all__ = [
    "SaltedEncoding",
    "tokenise_configured",
    "tokenise_dataset",
    "tokenise_frame",
]

log = logging.getLogger(__name__)

BOOKKEEPING = (C.DATASET, C.RECORD_ID, C.REGION)
QUARANTINE_REASONS = Q.STAGE_REASONS[Q.TOKENISE]
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


def _mark(clean: DataFrame, kinds: Mapping[str, IdentifierKind] | None = None) -> DataFrame:
    """Adds the quarantine reason of stage ``tokenise`` (NULL for rows that are tokenised)."""
    identifiers = [c for c in (C.IDENTIFIERS if kinds is None else kinds) if c in clean.columns]
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
        F.when(F.col(C.RECORD_ID).isNull(), F.lit(Q.MISSING_RECORD_ID))
        .when(F.col("__dup").isNotNull(), F.lit(Q.DUPLICATE_RECORD_ID))
        .when(no_ids, F.lit(Q.NO_USABLE_IDENTIFIER))
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
    scheme: salted.SaltedScheme | None = None,
    inner_source: salted.InnerSource | None = None,
    identifiers: Mapping[str, IdentifierKind] | None = None,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(tokens, quarantine rows, reason counts) of a standardised frame; lazy, but for one Spark job that
    refuses kept columns holding identifiers (:func:`natlink.tokens.plaintext.check_kept_columns`).

    ``identifiers``: the dataset's identifiers and kinds (None: the six built-in ones); with
    declared identifiers, ``specs`` defaults to theirs too (:func:`natlink.tokens.encode.token_specs`)."""
    if identifiers is not None and specs is encode.TOKEN_SPECS:
        specs = encode.token_specs(identifiers)
    missing = [c for c in BOOKKEEPING if c not in clean.columns]
    if missing:
        raise SchemaError(f"tokenise: the standardised frame lacks {missing}; present: {sorted(clean.columns)}")
    keep = [*BOOKKEEPING, *event_columns]
    encode.check_standardised_input(clean, keep, specs, blooms, identifiers)
    check_kept_columns(clean, keep)
    marked = _mark(clean, identifiers)
    accepted = marked.where(F.col(_REASON).isNull())
    if scheme is None:
        tokens = encode.tokenise(
            accepted, key, keep=keep, specs=specs, blooms=blooms, project=project, hmac_implementation=hmac_implementation,
            identifiers=identifiers,
        )
    else:
        tokens = salted.encode(accepted, key, scheme, keep=keep, project=project, hmac_implementation=hmac_implementation,
                               inner_source=inner_source, identifiers=identifiers)
    quarantine = marked.where(F.col(_REASON).isNotNull()).select(
        C.DATASET, C.RECORD_ID, F.col(_REASON).alias(C.REASON), F.lit(Q.TOKENISE).alias(C.STAGE)
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
    run_id: str | None = None,
    quarantine_table: str | Path | None = None,
    signer: signing.ManifestSigner | str | None = None,
    encoding: SaltedEncoding | None = None,
    identifiers: Mapping[str, IdentifierKind] | None = None,
) -> TokenManifest:
    """Write ``out_dir/<dataset>`` (Delta, by region), its quarantine rows and its signed manifest.

    ``identifiers``: the dataset's identifiers and kinds (None: the six built-in ones); the
    manifest records the declared ones and any options of built-in ones, so the centre can check
    providers agree on them.

    ``encoding.inner_source``: where the salted encoding's inner tokens come from (None: the local
    key; the key service in federated mode, :mod:`natlink.keyservice.spark`).

    ``encoding``: the block-salted encoding (:mod:`natlink.tokens.salted`) with the provider's
    aggregates; None: today's deterministic tokens and Bloom filters (``specs``, ``blooms``).

    ``signer``: the manifest signing key (a signer or key reference; None: ``NATLINK_SIGNING_KEY``),
    resolved before any Spark work (:func:`natlink.tokens.signing.load_signer`).

    Quarantine rows go to the one quarantine table (:mod:`natlink.store.quarantine`; default
    ``out_dir/quarantine``) as stage ``tokenise`` of ``run_id`` (default: a new run id), replacing
    that (run, dataset, stage) only. ``upstream_quarantine``: rows onboarding already quarantined,
    by reason (not in ``clean``). The manifest counts both stages, by reason, under ``quarantined``.
    """
    import natlink

    signer = signing.load_signer(signer)
    _check_jvm_casing(spark)
    out_dir = Path(out_dir)
    run_id = run_id or new_run_id()
    onboarding_quarantined = Q.check_counts(upstream_quarantine or {}, Q.ONBOARDING)
    if identifiers is not None and specs is encode.TOKEN_SPECS:
        specs = encode.token_specs(identifiers)
    scheme = encoding.scheme.for_identifiers(identifiers) if encoding else None
    tokens, quarantine, counts = tokenise_frame(
        clean, key, event_columns=event_columns, specs=specs, blooms=blooms, project=project,
        hmac_implementation=hmac_implementation, scheme=scheme, inner_source=encoding.inner_source if encoding else None,
        identifiers=identifiers,
    )
    by_reason = {r[C.REASON]: int(r["rows"]) for r in counts.collect()}
    rows_in = sum(by_reason.values())
    quarantined = Q.check_counts({r: n for r, n in by_reason.items() if r is not None}, Q.TOKENISE)
    table = out_dir / dataset
    written = delta.write(tokens, str(table), mode="overwrite", partition_by=(C.REGION,))
    q_table = Path(quarantine_table) if quarantine_table is not None else out_dir / "quarantine"
    q_written = Q.write(quarantine, q_table, dataset=dataset, stage=Q.TOKENISE, run_id=run_id)
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
        "run_id": run_id,
        "quarantined": {Q.ONBOARDING: onboarding_quarantined, Q.TOKENISE: quarantined},
        "table": table.name,
        "delta_version": written.version,
        "partition_by": [C.REGION],
        # beside the manifest: by name (moves with the folder); elsewhere: the absolute path
        "quarantine_table": q_table.name if q_table.resolve().parent == out_dir.resolve() else str(q_table.resolve()),
        "columns": {
            "keep": [*BOOKKEEPING, *event_columns],
            "tokens": encode.column_purposes(specs),
            "blooms": {b.column: {"bits": b.bits, "hashes": b.hashes, "flips": b.flips} for b in blooms},
        },
        "token_columns": encode.token_columns(specs),
    }
    described = described_identifiers(identifiers)
    if described:
        data["identifiers"] = described
    if scheme is not None and encoding is not None:
        accepted = _mark(clean, identifiers).where(F.col(_REASON).isNull())
        inner = salted.inner_tokens(accepted, key, scheme, project=project, hmac_implementation=hmac_implementation,
                                    identifiers=identifiers)
        data.update({
            "schema_version": salted.SCHEMA_VERSION,
            "encoding": scheme.as_dict(),
            "columns": {"keep": [*BOOKKEEPING, *event_columns], "tokens": scheme.column_purposes(), "blooms": {}},
            "token_columns": scheme.columns,
            # Rates per comparison level from the provider's own records: no value, token or count of one.
            "u": encoding.aggregates(inner),
        })
    manifest = TokenManifest(data).save(manifest_path(out_dir, dataset), signer=signer, spark=spark)
    log.info(
        "tokenised %s: %d rows in, %d out, quarantined %s; key fingerprint %s",
        dataset, rows_in, rows_out, quarantined, key.fingerprint,
    )
    return manifest


@dataclass(frozen=True)
class SaltedEncoding:
    """The block-salted encoding of a model (:class:`natlink.tokens.salted.SaltedScheme`) and the
    function that turns the provider's unexported per-field tokens into its shipped aggregates
    (u-probabilities per comparison level: :func:`natlink.linkage.salted_training.provider_u`)."""

    scheme: salted.SaltedScheme
    aggregates: Callable[[DataFrame], dict[str, Any]]
    # None: inner tokens under the local key (centralised mode); else e.g. the key service's OPRF.
    # The u aggregates always use local inner tokens: they count equalities only, which are the same.
    inner_source: salted.InnerSource | None = None


def described_identifiers(identifiers: Mapping[str, IdentifierKind] | None) -> dict[str, dict]:
    """Identifiers that differ from the six built-in defaults, with kind and options (for the
    manifest): empty for a UK dataset, so its manifest is as before."""
    from natlink.config.identifiers import BUILTIN

    if identifiers is None:
        return {}
    return {n: k.described() for n, k in identifiers.items() if BUILTIN.get(n) != k}


def new_run_id() -> str:
    """A run id from the current UTC time (``run-YYYYMMDDTHHMMSSZ``)."""
    return datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%SZ")


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
    signer: signing.ManifestSigner | str | None = None,
    encoding: SaltedEncoding | None = None,
) -> TokenManifest:
    """Onboard and tokenise one configured dataset (``conf/datasets/NAME.yaml``).

    :func:`natlink.provider.onboard.onboard` reads, checks and standardises the delivery. Both
    stages' quarantine rows go to the one ``quarantine_table`` (default ``out_dir/quarantine``;
    stages ``onboarding`` and ``tokenise``, each (run_id, dataset, stage) replaced, so a rerun with
    the same run id is idempotent); the onboarding counts (rows in = out + quarantined +
    duplicates collapsed) go into the manifest under ``onboarding``.
    """
    from natlink.provider import onboard as onboarding

    signer = signing.load_signer(signer)  # the final manifest is signed again below
    delivery = identify_delivery(
        spark, ds, data_dir=data_dir, key=key, project=project, encoding=encoding.scheme.fingerprint if encoding else None
    )
    run_id = run_id or delivery.default_run_id
    previous = _previous_manifest(out_dir, ds.name)
    if delivery.refuse_if_reused(run_id, previous.data if previous else None, f"tokenise {ds.name}") and _complete(previous):
        log.info("tokenise %s: run %s already tokenised this delivery; nothing to do", ds.name, run_id)
        return previous
    onboarded = onboarding.onboard(spark, ds, data_dir=data_dir, run_id=run_id)
    try:
        table = Path(quarantine_table) if quarantine_table is not None else Path(out_dir) / "quarantine"
        q_written = Q.write(onboarded.quarantine, table, dataset=ds.name, stage=Q.ONBOARDING, run_id=run_id)
        counts = onboarded.counts
        if q_written.rows != counts.quarantined:
            raise ReconciliationError(
                f"onboard {ds.name}: {counts.quarantined} rows quarantined, the quarantine table got {q_written.rows}"
            )
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
            run_id=run_id,
            quarantine_table=table,
            signer=signer,
            encoding=encoding,
            identifiers=ds.identifier_kinds,
        )
    finally:
        onboarded.unpersist()
    if manifest.data["rows_in"] != counts.rows_out:
        raise ReconciliationError(
            f"tokenise {ds.name}: onboarding passed on {counts.rows_out} rows, tokenise received {manifest.data['rows_in']}"
        )
    data = {**manifest.data, "onboarding": counts.as_dict(), "delivery": delivery.as_dict()}
    data["summary"] = delivery_summary(data)
    if not data["summary"]["reconciles"]:
        raise ReconciliationError(f"tokenise {ds.name}: {summary_line(data)}")
    if ds.age_band is not None:  # how the kept age band was derived: readers check providers agree
        data["age_band"] = ds.age_band.model_dump(mode="json")
    return TokenManifest(data).save(manifest.path, signer=signer, spark=spark)


def _previous_manifest(out_dir: str | Path, dataset: str) -> TokenManifest | None:
    path = manifest_path(out_dir, dataset)
    if not path.is_file():
        return None
    try:
        return TokenManifest.load(path)
    except NatlinkError:  # not a manifest this version reads: the run replaces it
        return None


def _complete(manifest: TokenManifest) -> bool:
    """The manifest's table is still the version it describes, with its onboarding counts."""
    if "onboarding" not in manifest.data or not delta.exists(manifest.table_path):
        return False
    return delta.history(str(manifest.table_path), limit=1)[0]["version"] == manifest.data.get("delta_version")


# --------------------------------------------------------------------------------------------
# Job entry (jobs/tokenise.py and `natlink tokenise` share it)
