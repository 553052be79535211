"""A token table's manifest: what was tokenised, under which key, with which columns and counts.

A provider writes ``<dataset>.manifest.json`` beside each token table
(:func:`natlink.tokens.tokenise.tokenise_dataset`): the dataset, token schema version, row counts
(in, out, quarantined by reason), the key id and public fingerprint, the columns and their key
purposes, and the natlink version. The linkage centre reads token tables only through their
manifests (:mod:`natlink.tokens.reader`). A manifest is written atomically (a reader never sees
half of one) and validated when loaded; one that is not a natlink token-table manifest is refused
with :class:`~natlink.errors.NotTokenTableError`.

Manifests are authenticated (:mod:`natlink.tokens.signing`): :meth:`TokenManifest.save` with a
``signer`` binds the token table's current content (``table_content``) and signs the whole, and
:func:`as_manifest`, the way every reader takes a manifest, refuses one that is unsigned, edited or
signed by a key no trusted signer holds (:class:`~natlink.errors.ManifestSignatureError`, naming
the file). :meth:`TokenManifest.load` only parses and validates the structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from natlink.errors import NotTokenTableError
from natlink.tokens import signing
from natlink.tokens import salted
from natlink.tokens.encode import SCHEMA_VERSION

__all__ = [
    "MANIFEST_KIND", "MANIFEST_VERSION", "SUPPORTED_SCHEMAS", "TokenManifest", "as_manifest", "delivery_summary",
    "manifest_path", "summary_line",
]

MANIFEST_KIND = "natlink-token-table"
MANIFEST_VERSION = 1
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION, salted.SCHEMA_VERSION})


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
    def scheme(self) -> "salted.SaltedScheme | None":
        """The block-salted encoding's scheme (rules, compared fields), or None for deterministic tokens."""
        return salted.SaltedScheme.from_manifest(self.data) if self.data.get("encoding") else None

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

    def summary_line(self) -> str:
        """Where every record of the delivery went (:func:`summary_line`)."""
        return summary_line(self.data)

    def __getitem__(self, item: str) -> Any:  # dict-like access for callers that used dicts
        if item == "table":
            return str(self.table_path)
        return self.data[item]

    def get(self, item: str, default: Any = None) -> Any:
        try:
            return self[item]
        except KeyError:
            return default

    @property
    def table_content(self) -> dict[str, Any] | None:
        """The signed digest of the token table (version, files, bytes, sha256); None when unsigned."""
        found = self.data.get(signing.TABLE_CONTENT_FIELD)
        return dict(found) if isinstance(found, Mapping) else None

    def save(self, path: str | Path, *, signer: "signing.ManifestSigner | None" = None, spark=None) -> "TokenManifest":
        """Write the manifest to ``path`` atomically; with ``signer``, sealed to its table and signed first.

        Without a signer the data is written as it is (a stale signature then fails verification).
        """
        path = Path(path)
        data = dict(self.data)
        if signer is not None:
            data = signing.seal(data, signer, table=TokenManifest(data, path).table_path, spark=spark)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a manifest
        return TokenManifest(data, path)

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
        if (self.data["schema_version"] == salted.SCHEMA_VERSION) != bool(self.data.get("encoding")):
            raise NotTokenTableError(f"{where}: token schema {self.data['schema_version']!r} and its 'encoding' entry disagree")
        if self.data.get("encoding") and not isinstance(self.data.get("u"), Mapping):
            raise NotTokenTableError(f"{where}: a salted token table's manifest must carry its provider's u aggregates ('u')")


def manifest_path(out_dir: str | Path, dataset: str) -> Path:
    return Path(out_dir) / f"{dataset}.manifest.json"


def as_manifest(item: TokenManifest | Mapping[str, Any] | str | Path, *, trusted=None) -> TokenManifest:
    """A validated, signature-verified manifest from a manifest object, a mapping, a manifest path or
    a table folder. ``trusted``: the registry of trusted signers (default: :func:`natlink.tokens.signing.trusted_signers`)."""
    if isinstance(item, TokenManifest):
        manifest = item
    elif isinstance(item, Mapping):
        manifest = TokenManifest(dict(item), None)
    else:
        path = Path(item)
        if path.is_dir():
            sibling = path.with_name(path.name + ".manifest.json")
            if not sibling.is_file():
                raise NotTokenTableError(f"{path}: a table without a manifest ({sibling.name}) is not accepted")
            path = sibling
        manifest = TokenManifest.load(path)
    manifest.validate()
    where = str(manifest.path) if manifest.path else f"manifest of {manifest.data.get('dataset', '?')!r} (not from a file)"
    signing.verify(manifest.data, where=where, trusted=trusted)
    return manifest


def delivery_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """Where every record of the delivery went, reconciled: records in = tokenised + quarantined
    (by stage and reason) + duplicates collapsed. ``data``: a manifest's content."""
    onboarding = data.get("onboarding") or {}
    quarantined = {stage: {r: int(n) for r, n in (reasons or {}).items() if n} for stage, reasons in (data.get("quarantined") or {}).items()}
    collapsed = int(onboarding.get("duplicates_collapsed", 0))
    records_in = int(onboarding.get("rows_in", data.get("rows_in", 0)))
    total_q = sum(sum(r.values()) for r in quarantined.values())
    out = {
        "records_in": records_in,
        "tokenised": int(data["rows"]),
        "quarantined": total_q,
        "quarantined_by_stage": quarantined,
        "duplicates_collapsed": collapsed,
    }
    out["reconciles"] = records_in == out["tokenised"] + total_q + collapsed
    return out


def summary_line(data: Mapping[str, Any]) -> str:
    """One line a user can check: ``gp: 200 records in = 195 tokenised + 3 quarantined (...) + 2 duplicates collapsed``."""
    s = delivery_summary(data)
    stages = "; ".join(
        f"{stage}: " + (", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "none")
        for stage, reasons in s["quarantined_by_stage"].items()
    )
    check = "" if s["reconciles"] else "  [DOES NOT RECONCILE]"
    return (
        f"{data['dataset']}: {s['records_in']} records in = {s['tokenised']} tokenised + {s['quarantined']} quarantined "
        f"({stages or 'none'}) + {s['duplicates_collapsed']} duplicates collapsed{check}"
    )
