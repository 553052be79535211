"""What a link run id stands for: its inputs, model and settings, so a run id cannot be reused for others.

A run id names one linkage of one set of inputs. Its identity is:

* per token table: dataset, rows, key fingerprint, token schema, the Delta version its manifest
  records and the content id of that version (:func:`natlink.store.files.content_id`: the data
  files it is made of), and the tokenise run that made it;
* the model: its settings hash (a hash of the whole trained model file, checked when it is
  loaded); the link settings that change the result: the match threshold, the cannot-link rules
  and the large-block splits;
* where person ids are carried from (``--carry-ids-from``, the first run after a key rotation):
  that linkage's last completed run, its key fingerprint and the content id of the ``clusters``
  version it recorded (the folder itself is informative only, as a token table's is).

The ``runs`` row of a completed run keeps its identity (the ``inputs`` and ``model`` columns), and
every table write of the run carries its digest in the commit info. Rerunning a run id is then:

* with the same identity, after it completed: a no-op (``already-completed``);
* with the same identity, after it was killed part-way: the run resumes (writes that committed
  are skipped by their Delta transaction id);
* with a different identity: refused, :class:`~natlink.errors.RunIdentityError`, saying what
  differs (dataset, field, before and after; versions and content ids only, never a value).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from natlink import columns as C
from natlink.config.link import LinkConfig
from natlink.errors import RunIdentityError
from natlink.linkage import model_store
from natlink.linkage.runs import completed_runs
from natlink.store import delta, files
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.reader import scan_key

__all__ = ["INPUT_FIELDS", "MODEL_FIELDS", "MODEL_LABELS", "RunIdentity", "cannot_link_identity", "carry_identity", "identify", "scanned_before", "txn_app_id"]

# Fields of one input that must match for a rerun of the same run id ("table" is where it is read
# from, informative only: a moved folder with the same content is the same input).
INPUT_FIELDS = ("rows", "key_fingerprint", "schema_version", "delta_version", "content_id", "tokenise_run_id")
MODEL_FIELDS = ("settings_hash", "threshold_match_probability", "cannot_link", "block_splits", "carry_ids_from")
# How RunIdentity.differences names a field of the model part (dict-valued ones: one line per key).
MODEL_LABELS = {"settings_hash": "model", "threshold_match_probability": "model", "cannot_link": "link setting",
                "block_splits": "link setting", "carry_ids_from": "person ids carried from:"}
_BEFORE_SPLITS = ("settings_hash", "threshold_match_probability", "cannot_link")
# Cannot-link settings that change which records end in one cluster (max_component_edges only refuses).
CANNOT_LINK_FIELDS = ("enabled", "nhs_number", "one_row_per_person")


@dataclass(frozen=True)
class RunIdentity:
    inputs: list[dict[str, Any]]  # one per token table, sorted by dataset
    model: dict[str, Any]

    @property
    def digest(self) -> str:
        canonical = json.dumps(
            {"inputs": [{k: i.get(k) for k in ("dataset", *INPUT_FIELDS)} for i in self.inputs],
             # A field added later (block_splits, carry_ids_from) counts only when set: a run's digest from before stays its digest.
             "model": {k: self.model.get(k) for k in MODEL_FIELDS if k in _BEFORE_SPLITS or self.model.get(k) is not None}},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def differences(self, row: dict[str, Any]) -> list[str]:
        """What differs from a completed run's ``runs`` row (fields the row lacks are not compared)."""
        out: list[str] = []
        before = {i["dataset"]: i for i in json.loads(row["inputs"])}
        now = {i["dataset"]: i for i in self.inputs}
        for name in sorted(set(before) - set(now)):
            out.append(f"dataset {name!r} was an input and is not now")
        for name in sorted(set(now) - set(before)):
            out.append(f"dataset {name!r} is an input now and was not")
        for name in sorted(set(now) & set(before)):
            for key in INPUT_FIELDS:
                if key in before[name] and before[name][key] != now[name].get(key):
                    out.append(f"dataset {name!r} {key}: {before[name][key]} -> {now[name].get(key)}")
        model = json.loads(row["model"])
        for key in MODEL_FIELDS:
            was, now = model.get(key), self.model.get(key)
            if key not in model or was == now:
                continue
            if isinstance(was, dict) or isinstance(now, dict):  # one line per setting that differs (None: none set)
                was, now = was or {}, now or {}
                out += [f"{MODEL_LABELS[key]} {key}.{k}: {was.get(k)} -> {now.get(k)}" for k in sorted({*was, *now}) if was.get(k) != now.get(k)]
            else:
                out.append(f"{MODEL_LABELS[key]} {key}: {was} -> {now}")
        return out

    def refuse_if_reused(self, spark, tables: Path, run_id: str, completed: dict[str, Any] | None) -> None:
        """Raise RunIdentityError when ``run_id`` completed, or started and was killed, with other inputs."""
        if completed is not None:
            differs = self.differences(completed)
            if differs:
                raise RunIdentityError(
                    f"run id {run_id!r} already completed (at {completed['finished_at']}) with different inputs: "
                    f"{'; '.join(differs)}. A run id names one linkage: use a new run id for these inputs"
                )
            return
        app_id = txn_app_id(run_id)
        for name in ("clusters", "edges", "person_index", "id_events"):
            path = tables / name
            if delta.txn_version(str(path), app_id, spark=spark) is None:
                continue
            for commit in delta.history(str(path), spark=spark):
                info = commit["commit_info"]
                if info.get(C.RUN_ID) == run_id and info.get("inputs_id") not in (None, self.digest):
                    raise RunIdentityError(
                        f"run id {run_id!r} was started with different inputs and did not complete (its write of "
                        f"{name} is version {commit['version']}, invisible to readers until a run completes); "
                        "rerun it with its original inputs, or use a new run id for these"
                    )


def txn_app_id(run_id: str) -> str:
    """The Delta transaction id of a run's table writes (a rerun skips the writes that committed)."""
    return f"natlink-run:{run_id}"


def identify(spark, manifests: Sequence[TokenManifest], model_path: str | Path, link_cfg: LinkConfig,
             carry_ids_from: str | Path | None = None) -> RunIdentity:
    """The identity of linking ``manifests`` with the model at ``model_path`` (reads only metadata);
    ``carry_ids_from``: the tables folder person ids are carried from (:mod:`natlink.linkage.carry`)."""
    inputs = []
    for m in sorted(manifests, key=lambda m: m.dataset):
        version = m.data.get("delta_version")
        inputs.append({
            "dataset": m.dataset,
            "table": str(m.table_path),
            "rows": m.rows,
            "key_fingerprint": m.key_fingerprint,
            "schema_version": m.data.get("schema_version"),
            "delta_version": version,
            "content_id": files.content_id(spark, m.table_path, version),
            "tokenise_run_id": m.data.get("run_id"),
            "created_at": m.data.get("created_utc"),
            # Informative (not in INPUT_FIELDS): a completed run read this table, so its value scan
            # passed; the next run of this folder need not repeat it (scanned_before).
            "value_scan": scan_key(m),
        })
    _settings, meta = model_store.load(model_path, key_fingerprint=manifests[0].key_fingerprint if manifests else None)
    model = {
        "path": str(model_path),
        "settings_hash": meta.get("settings_hash"),
        "splink_version": meta.get("splink_version"),
        "threshold_match_probability": link_cfg.threshold_match_probability,
        "cannot_link": cannot_link_identity(link_cfg),
        # None without splits: runs recorded before splits existed compare equal.
        "block_splits": [split.model_dump() for split in link_cfg.split_large_blocks] or None,
        # None without carrying: runs recorded before it existed compare equal.
        "carry_ids_from": carry_identity(spark, carry_ids_from) if carry_ids_from is not None else None,
    }
    return RunIdentity(inputs, model)


def scanned_before(history: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Value-scan key (:func:`natlink.tokens.reader.scan_key`) -> the id of the last completed run
    that read that table content: its scan passed there, under the same scan version."""
    out: dict[str, str] = {}
    for row in history:
        for item in json.loads(row["inputs"] or "[]"):
            if item.get("value_scan"):
                out[item["value_scan"]] = row[C.RUN_ID]
    return out


def carry_identity(spark, carry_ids_from: str | Path) -> dict[str, Any]:
    """What carried person ids come from: the folder's last completed run (its id, key fingerprint
    and the content id of its ``clusters`` version). A folder without one gives ``run_id`` None
    here; :func:`natlink.linkage.carry.carried_ids` refuses it, with the reason, before any scoring."""
    runs = completed_runs(spark, carry_ids_from)
    if not runs:
        return {"run_id": None, "key_fingerprint": None, "clusters_content_id": None}
    last = runs[-1]
    version = json.loads(last["versions"]).get("clusters")
    path = Path(carry_ids_from) / "clusters"
    content = files.content_id(spark, path, int(version)) if version is not None and delta.exists(str(path)) else None
    return {"run_id": last[C.RUN_ID], "key_fingerprint": last["key_fingerprint"], "clusters_content_id": content}


def cannot_link_identity(link_cfg: LinkConfig) -> dict[str, Any]:
    """The cannot-link settings a run's result depends on (datasets sorted: their order does not matter)."""
    rules = link_cfg.cannot_link
    return {"enabled": rules.enabled, "nhs_number": rules.nhs_number, "one_row_per_person": sorted(rules.one_row_per_person)}
