"""Federated tokenisation: the provider job, the manifest, and the central side's guarded reader.

At a data provider (``natlink tokenise`` / ``jobs/tokenise.py``): a standardised frame becomes a
Delta token table (record id, region, event fields, ``tk_*`` tokens, ``bf_*`` Bloom filters) plus
``<dataset>.manifest.json`` recording the dataset, token schema version, row counts (in, out,
quarantined by reason), the key id and public fingerprint, the columns and their key purposes,
and the natlink version. Rows that cannot be tokenised usefully are quarantined with a reason
(never dropped): rows in = rows out + rows quarantined, checked in code.

At the linkage centre: :func:`read_token_tables` accepts only token tables with manifests, and
refuses (:class:`~natlink.errors.FingerprintMismatchError`) inputs made under different keys or
projects, and (:class:`~natlink.errors.NotTokenTableError`) anything that is not a token table:
plaintext identifier columns, undeclared columns, values that are not tokens, row counts that
differ from the manifest.

Project re-keying (``natlink rekey``): :func:`rekey_table` turns a token table into a project
extract whose tokens and record ids are project-specific pseudonyms (see :func:`natlink.tokens.encode.rekey`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.store import delta
from natlink.store import quarantine as Q
from natlink.tokens import encode
from natlink.errors import FingerprintMismatchError, NotTokenTableError, ReconciliationError, SchemaError
from natlink.tokens.keys import KeyMaterial

__all__ = [
    "MANIFEST_KIND",
    "TokenManifest",
    "manifest_path",
    "read_token_tables",
    "rekey_table",
    "tokenise_dataset",
    "tokenise_frame",
]

log = logging.getLogger(__name__)

MANIFEST_KIND = "natlink-token-table"
MANIFEST_VERSION = 1
SUPPORTED_SCHEMAS = frozenset({encode.SCHEMA_VERSION})
BOOKKEEPING = (C.DATASET, C.RECORD_ID, C.REGION)
QUARANTINE_REASONS = Q.STAGE_REASONS[Q.TOKENISE]
_REASON = "__natlink_reason"
_TOKEN_PATTERN = "^[0-9a-f]{64}$"
_VALUE_CHECK_ROWS = 10_000


# --------------------------------------------------------------------------------------------
# Manifest


@dataclass(frozen=True)
class TokenManifest:
    """A token table's manifest; ``path`` is the manifest file (None for an unsaved one)."""

    data: Mapping[str, Any]
    path: Path | None = None

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def key_fingerprint(self) -> str:
        return self.data["key_fingerprint"]

    @property
    def project(self) -> str | None:
        return self.data.get("project")

    @property
    def rows(self) -> int:
        return int(self.data["rows"])

    @property
    def token_purposes(self) -> dict[str, str]:
        return dict(self.data["columns"]["tokens"])

    @property
    def blooms(self) -> dict[str, Any]:
        return dict(self.data["columns"].get("blooms", {}))

    @property
    def keep(self) -> list[str]:
        return list(self.data["columns"]["keep"])

    @property
    def table_path(self) -> Path:
        table = Path(self.data["table"])
        if table.is_absolute() or self.path is None:
            return table
        return (self.path.parent / table).resolve()

    def __getitem__(self, item: str) -> Any:  # dict-like access for callers that used dicts
        if item == "table":
            return str(self.table_path)
        return self.data[item]

    def get(self, item: str, default: Any = None) -> Any:
        try:
            return self[item]
        except KeyError:
            return default

    def save(self, path: str | Path) -> "TokenManifest":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(dict(self.data), indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a manifest
        return TokenManifest(self.data, path)

    @classmethod
    def load(cls, path: str | Path) -> "TokenManifest":
        path = Path(path)
        if not path.is_file():
            raise NotTokenTableError(f"{path}: no token-table manifest there")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise NotTokenTableError(f"{path}: manifest is not valid JSON") from None
        manifest = cls(data, path)
        manifest.validate()
        return manifest

    def validate(self) -> None:
        where = str(self.path) if self.path else f"manifest of {self.data.get('dataset', '?')!r}"
        if not isinstance(self.data, Mapping) or self.data.get("kind") != MANIFEST_KIND:
            raise NotTokenTableError(f"{where}: not a natlink token-table manifest (kind != {MANIFEST_KIND!r})")
        missing = [k for k in ("dataset", "schema_version", "key_fingerprint", "rows", "table", "columns") if k not in self.data]
        if missing:
            raise NotTokenTableError(f"{where}: manifest lacks {missing}")
        if self.data["schema_version"] not in SUPPORTED_SCHEMAS:
            raise NotTokenTableError(
                f"{where}: token schema {self.data['schema_version']!r} is not one this natlink reads "
                f"({sorted(SUPPORTED_SCHEMAS)}); re-tokenise with this version"
            )


def manifest_path(out_dir: str | Path, dataset: str) -> Path:
    return Path(out_dir) / f"{dataset}.manifest.json"


def as_manifest(item: TokenManifest | Mapping[str, Any] | str | Path) -> TokenManifest:
    """A validated manifest from a manifest object, a mapping, a manifest path or a table folder."""
    return _as_manifest(item)


def _as_manifest(item: TokenManifest | Mapping[str, Any] | str | Path) -> TokenManifest:
    if isinstance(item, TokenManifest):
        item.validate()
        return item
    if isinstance(item, Mapping):
        manifest = TokenManifest(dict(item), None)
        manifest.validate()
        return manifest
    path = Path(item)
    if path.is_dir():
        sibling = path.with_name(path.name + ".manifest.json")
        if not sibling.is_file():
            raise NotTokenTableError(f"{path}: a table without a manifest ({sibling.name}) is not accepted")
        path = sibling
    return TokenManifest.load(path)


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
    """Adds the quarantine reason of stage ``tokenise`` (NULL for rows that are tokenised)."""
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
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(tokens, quarantine rows, reason counts) of a standardised frame; lazy, no Spark job."""
    missing = [c for c in BOOKKEEPING if c not in clean.columns]
    if missing:
        raise SchemaError(f"tokenise: the standardised frame lacks {missing}; present: {sorted(clean.columns)}")
    keep = [*BOOKKEEPING, *event_columns]
    encode.check_input(clean, keep, specs, blooms)
    marked = _mark(clean)
    tokens = encode.tokenise(
        marked.where(F.col(_REASON).isNull()), key, keep=keep, specs=specs, blooms=blooms, project=project
    )
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
    project: str | None = None,
    run_id: str | None = None,
    quarantine_table: str | Path | None = None,
) -> TokenManifest:
    """Write ``out_dir/<dataset>`` (Delta, by region), its quarantine rows and its manifest.

    Quarantine rows go to the one quarantine table (:mod:`natlink.store.quarantine`; default
    ``out_dir/quarantine``) as stage ``tokenise`` of ``run_id`` (default: a new run id), replacing
    that (run, dataset, stage) only. ``upstream_quarantine``: rows onboarding already quarantined,
    by reason (not in ``clean``). The manifest counts both stages, by reason, under ``quarantined``.
    """
    import natlink

    _check_jvm_casing(spark)
    out_dir = Path(out_dir)
    run_id = run_id or new_run_id()
    onboarding_quarantined = Q.check_counts(upstream_quarantine or {}, Q.ONBOARDING)
    tokens, quarantine, counts = tokenise_frame(
        clean, key, event_columns=event_columns, specs=specs, blooms=blooms, project=project
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
    manifest = TokenManifest(data).save(manifest_path(out_dir, dataset))
    log.info(
        "tokenised %s: %d rows in, %d out, quarantined %s; key fingerprint %s",
        dataset, rows_in, rows_out, quarantined, key.fingerprint,
    )
    return manifest


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
) -> TokenManifest:
    """Onboard and tokenise one configured dataset (``conf/datasets/NAME.yaml``).

    :func:`natlink.provider.onboard.onboard` reads, checks and standardises the delivery. Both
    stages' quarantine rows go to the one ``quarantine_table`` (default ``out_dir/quarantine``;
    stages ``onboarding`` and ``tokenise``, each (run_id, dataset, stage) replaced, so a rerun with
    the same run id is idempotent); the onboarding counts (rows in = out + quarantined +
    duplicates collapsed) go into the manifest under ``onboarding``.
    """
    from natlink.provider import onboard as onboarding

    run_id = run_id or new_run_id()
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
            project=project,
            run_id=run_id,
            quarantine_table=table,
        )
    finally:
        onboarded.unpersist()
    if manifest.data["rows_in"] != counts.rows_out:
        raise ReconciliationError(
            f"tokenise {ds.name}: onboarding passed on {counts.rows_out} rows, tokenise received {manifest.data['rows_in']}"
        )
    data = {**manifest.data, "onboarding": counts.as_dict()}
    if ds.age_band is not None:  # how the kept age band was derived: readers check providers agree
        data["age_band"] = ds.age_band.model_dump(mode="json")
    return TokenManifest(data).save(manifest.path)


# --------------------------------------------------------------------------------------------
# Central side


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


def _check_values(m: TokenManifest, df: DataFrame) -> None:
    """On a bounded sample: every token is 64 lowercase hex digits (plaintext is not)."""
    tokens = list(m.token_purposes)
    if not tokens:
        return
    bad = F.lit(0)
    for c in tokens:
        bad = bad + F.when(F.col(c).isNotNull() & ~F.col(c).rlike(_TOKEN_PATTERN), 1).otherwise(0)
    row = df.limit(_VALUE_CHECK_ROWS).agg(F.sum(bad).alias("bad")).first()
    if row["bad"]:
        raise NotTokenTableError(
            f"token table {m.table_path} (dataset {m.dataset!r}): {row['bad']} values in token columns are not "
            "64-hex-digit tokens in the first rows checked; refused"
        )


def read_token_tables(
    spark,
    manifests: Iterable[TokenManifest | Mapping[str, Any] | str | Path],
    *,
    expected_fingerprint: str | None = None,
) -> DataFrame:
    """Union of token tables, refusing mixed keys/projects and anything that is not a token table."""
    items = [_as_manifest(m) for m in manifests]
    if not items:
        raise NotTokenTableError("read_token_tables: no token tables given")
    keys = {(m.key_fingerprint, m.project) for m in items}
    if len(keys) > 1 or (expected_fingerprint is not None and items[0].key_fingerprint != expected_fingerprint):
        described = ", ".join(f"{m.dataset}: {m.key_fingerprint}" + (f" (project {m.project})" if m.project else "") for m in items)
        expected = f"; expected {expected_fingerprint}" if expected_fingerprint else ""
        raise FingerprintMismatchError(f"token tables were made under different keys or projects: {described}{expected}")
    names = [m.dataset for m in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise NotTokenTableError(f"datasets {repeated} are given more than once")
    purposes: dict[str, str] = {}
    for m in items:
        for column, purpose in m.token_purposes.items():
            if purposes.setdefault(column, purpose) != purpose:
                raise NotTokenTableError(f"column {column} has different key purposes across manifests ({m.dataset})")
    frames = []
    for m in items:
        if not delta.exists(m.table_path):
            raise NotTokenTableError(f"token table {m.table_path} (dataset {m.dataset!r}) is not a Delta table")
        counted = delta.row_count(m.table_path)
        if counted != m.rows:
            raise NotTokenTableError(
                f"token table {m.table_path}: {counted} rows, but its manifest records {m.rows}; refused"
            )
        df = delta.read(spark, str(m.table_path))
        _check_columns(m, df)
        _check_values(m, df)
        frames.append(df)
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame, allowMissingColumns=True)
    return union


# --------------------------------------------------------------------------------------------
# Project re-keying


def rekey_table(
    spark,
    source: TokenManifest | Mapping[str, Any] | str | Path,
    project_key: KeyMaterial,
    *,
    project: str,
    out_dir: str | Path,
) -> TokenManifest:
    """Write a project extract of one token table: project pseudonyms, no Bloom filters."""
    import natlink

    m = _as_manifest(source)
    if m.project:
        raise NotTokenTableError(f"{m.dataset}: already a project extract (project {m.project!r}); re-key the source table")
    df = read_token_tables(spark, [m])
    out = encode.rekey(df, m.token_purposes, project_key, project=project)
    table = Path(out_dir) / m.dataset
    written = delta.write(out, str(table), mode="overwrite", partition_by=(C.REGION,))
    if written.rows != m.rows:
        raise ReconciliationError(f"rekey {m.dataset}: {m.rows} rows in, {written.rows} written")
    kept = [c for c in m.keep]
    data = {
        **{k: v for k, v in m.data.items() if k not in ("quarantine_table",)},
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
    manifest = TokenManifest(data).save(manifest_path(out_dir, m.dataset))
    log.info("re-keyed %s for project %s: %d rows", m.dataset, project, written.rows)
    return manifest


# --------------------------------------------------------------------------------------------
# Job entry (jobs/tokenise.py and `natlink tokenise` share it)


@dataclass
class JobArgs:
    dataset: str
    key: str
    out: str
    data_dir: str | None = None
    environment: str = "conf/environments/local.yaml"
    project: str | None = None
    extra: dict = field(default_factory=dict)


def run_job(args: JobArgs, *, spark=None) -> TokenManifest:
    """Load configs, resolve the key by reference, tokenise one dataset; returns its manifest."""
    from natlink import config as cfgmod
    from natlink.tokens import keys

    root = cfgmod.project_root()
    ds = cfgmod.load(args.dataset, cfgmod.DatasetConfig, base_dir=root)
    env = cfgmod.load(args.environment, cfgmod.EnvironmentConfig, base_dir=root)
    key = keys.resolve(args.key)
    if spark is None:
        from natlink.spark.session import get_spark

        spark = get_spark(f"natlink-tokenise-{ds.name}", master=env.master, conf=env.spark_conf)
    return tokenise_configured(spark, ds, key, data_dir=args.data_dir, out_dir=args.out, project=args.project)
