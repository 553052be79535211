"""What a tokenise run id stands for: one delivery (its files), one dataset config, one key.

``natlink tokenise`` binds its run id to the delivery it read, as a link run binds its id to its
inputs (:mod:`natlink.linkage.run_identity`):

* the source: for files, each file's name (relative to the source path), size and modification
  time; for a Delta source, its version and content id;
* the dataset config (a hash of its resolved content), the key fingerprint, the project, the
  token schema and the natlink version.

Without ``--run-id`` the run id is derived from that identity (``tok-<16 hex>``): rerunning the
same delivery reuses its run id, so its quarantine rows are replaced, not appended again. With
an explicit run id that an earlier run used for a different delivery, the run is refused
(:class:`~natlink.errors.RunIdentityError`, saying what differs: file names, sizes, config, key;
never a data value). A rerun of a completed run id with the same delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from natlink.config.datasets import DatasetConfig, source_path
from natlink.errors import RunIdentityError
from natlink.store import delta, files
from natlink.tokens.encode import SCHEMA_VERSION
from natlink.tokens.keys import KeyMaterial

__all__ = ["Delivery", "identify_delivery"]


@dataclass(frozen=True)
class Delivery:
    """The identity of one tokenise run's input (``data``: JSON-able, stored in the manifest)."""

    data: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def default_run_id(self) -> str:
        return f"tok-{self.digest[:16]}"

    def as_dict(self) -> dict[str, Any]:
        return {**self.data, "digest": self.digest}

    def differences(self, before: dict[str, Any]) -> list[str]:
        """What differs from an earlier run's delivery (as stored in its manifest)."""
        out: list[str] = []
        for key in ("config_sha256", "key_fingerprint", "project", "schema_version", "natlink_version"):
            if before.get(key) != self.data.get(key):
                out.append(f"{key}: {before.get(key)} -> {self.data.get(key)}")
        old = {f["name"]: f for f in before.get("files") or []}
        new = {f["name"]: f for f in self.data.get("files") or []}
        out += [f"file {n} is gone" for n in sorted(set(old) - set(new))]
        out += [f"file {n} is new" for n in sorted(set(new) - set(old))]
        for n in sorted(set(old) & set(new)):
            if (old[n]["size"], old[n]["modified"]) != (new[n]["size"], new[n]["modified"]):
                out.append(f"file {n} changed (size {old[n]['size']} -> {new[n]['size']}, modified {old[n]['modified']} -> {new[n]['modified']})")
        for key in ("delta_version", "content_id"):
            if before.get(key) != self.data.get(key):
                out.append(f"source {key}: {before.get(key)} -> {self.data.get(key)}")
        return out

    def refuse_if_reused(self, run_id: str, previous: dict[str, Any] | None, where: str) -> bool:
        """True when ``previous`` (a manifest's data) is this run id on this delivery (a rerun: nothing
        to do); raise RunIdentityError when it is this run id on another delivery; else False."""
        if previous is None or previous.get("run_id") != run_id:
            return False
        before = previous.get("delivery")
        if before is None:  # made before run identities: cannot tell, so do not reuse its id
            raise RunIdentityError(f"{where}: run id {run_id!r} was used by a tokenise run that recorded no delivery; use a new run id")
        differs = self.differences(before)
        if differs:
            raise RunIdentityError(
                f"{where}: run id {run_id!r} already tokenised a different delivery: {'; '.join(differs)}. "
                "A run id names one delivery: use a new run id (or none: one is derived from the delivery)"
            )
        return True


def identify_delivery(
    spark, ds: DatasetConfig, *, data_dir: str | None, key: KeyMaterial, project: str | None, encoding: str | None = None
) -> Delivery:
    """The identity of tokenising ``ds``'s source now (lists files; reads no data rows).
    ``encoding``: the salted scheme's fingerprint, when tokens are block-salted."""
    import natlink
    from natlink.provider.sources import list_source_files

    path = source_path(ds, data_dir)
    data: dict[str, Any] = {
        "dataset": ds.name,
        "config_sha256": hashlib.sha256(ds.model_dump_json().encode()).hexdigest(),
        "key_fingerprint": key.fingerprint,
        "project": project,
        "schema_version": SCHEMA_VERSION,
        "natlink_version": natlink.__version__,
    }
    if encoding is not None:  # absent for deterministic tokens: their run ids stay as they were
        data["encoding"] = encoding
    if ds.source.format == "delta":
        if delta.exists(path):  # a missing source is onboarding's named error
            data["delta_version"] = delta.history(path, limit=1, spark=spark)[0]["version"]
            data["content_id"] = files.content_id(spark, path, data["delta_version"])
    else:
        root = path.rstrip("/")
        listed = list_source_files(spark, path, dataset=ds.name)
        data["files"] = [
            {"name": _relative(f.path, root), "size": f.size, "modified": f.modified} for f in listed
        ]
    return Delivery(data)


def _relative(file_uri: str, root: str) -> str:
    """``file_uri`` relative to the source path (a single-file source: its base name)."""
    bare_root, bare_file = _bare(root), _bare(file_uri)
    if bare_file.startswith(bare_root + "/"):
        return bare_file[len(bare_root) + 1:]
    return bare_file.rsplit("/", 1)[-1]


def _bare(uri: str) -> str:
    return re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:/*", "", uri).strip("/")
