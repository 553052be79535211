"""Trained models on disk: ``linkage_models/NAME.json`` and its sidecar.

The sidecar (``NAME.sidecar.json``) pins the Splink and natlink versions, the key fingerprint of
the data the model was trained on, the training data manifest, a hash of the settings and fit
diagnostics. A model is refused for data under a different key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from natlink.errors import FingerprintMismatchError, ModelError, UntrainedLevelError
from natlink.version import __version__

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".sidecar.json"


@dataclass
class TrainedModel:
    """Trained Splink settings (m, u, lambda) and how the fit went."""

    settings: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def parameter_table(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """m, u and match weight for every non-null comparison level (for sidecars and reports)."""
    rows = []
    for comparison in settings.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": comparison["output_column_name"],
                    "level": level.get("label_for_charts"),
                    "m": m,
                    "u": u,
                    "match_weight": weight,
                }
            )
    return rows


def untrained_levels(settings: dict[str, Any]) -> list[str]:
    """``comparison / level (m, u)`` for every non-null level lacking m or u (Splink would use a default)."""
    out = []
    for comparison in settings.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            missing = [p for p in ("m", "u") if level.get(f"{p}_probability") is None]
            if missing:
                out.append(f"{comparison['output_column_name']} / {level.get('label_for_charts')} ({', '.join(missing)})")
    return out


def settings_hash(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def save(
    model: TrainedModel,
    path: str | Path,
    *,
    key_fingerprint: str,
    training_manifest: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write the model JSON and its sidecar; refuse to overwrite unless asked, and refuse a model
    with an untrained level (:func:`natlink.linkage.train.train` never returns one)."""
    import splink

    untrained = untrained_levels(model.settings)
    if untrained:
        raise UntrainedLevelError(f"model not saved to {path}: levels without m or u: {untrained}")
    path = Path(path)
    sidecar = path.with_name(path.stem + SIDECAR_SUFFIX)
    if path.exists() and not overwrite:
        raise ModelError(f"model file {path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.settings, indent=2, sort_keys=True), encoding="utf-8")
    meta = {
        "splink_version": splink.__version__,
        "natlink_version": __version__,
        "key_fingerprint": key_fingerprint,
        "training_data": training_manifest,
        "settings_hash": settings_hash(model.settings),
        "fit": model.diagnostics,
    }
    sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    log.info("model saved: %s (settings hash %s)", path, meta["settings_hash"][:12])
    return path


def load(path: str | Path, *, key_fingerprint: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a model and its sidecar; refuse it for data under a different key fingerprint."""
    path = Path(path)
    sidecar = path.with_name(path.stem + SIDECAR_SUFFIX)
    if not path.is_file() or not sidecar.is_file():
        raise ModelError(f"model {path} or its sidecar {sidecar.name} is missing")
    settings = json.loads(path.read_text(encoding="utf-8"))
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if meta.get("settings_hash") != settings_hash(settings):
        raise ModelError(f"model {path} does not match the settings hash in its sidecar")
    if key_fingerprint is not None and meta.get("key_fingerprint") != key_fingerprint:
        raise FingerprintMismatchError(
            f"model {path} was trained on data under key fingerprint {meta.get('key_fingerprint')}, "
            f"but the data to link has fingerprint {key_fingerprint}"
        )
    return settings, meta
