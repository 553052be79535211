"""Loading typed, frozen configuration from YAML; unknown keys are rejected.

Every loader names the file and the key path in its error, and never echoes values
that might be secrets (config holds key *references* only, e.g. ``env:NATLINK_KEY``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from natlink.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def load(path: str | Path, model: type[T], *, base_dir: str | Path | None = None) -> T:
    """Load one YAML file into ``model``; errors name the file and the offending keys."""
    path = Path(path)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: " + "; ".join(describe_error(model, raw, e) for e in err.errors())) from None


def describe_error(model: type[BaseModel], raw: Any, error: dict[str, Any]) -> str:
    """One validation problem as ``key.path: what is wrong``: list items by index and, where the
    item has a ``name``, by name; an unknown key with the keys allowed there. Never the value
    (config holds key references, and a value given by mistake might be a secret)."""
    loc = error["loc"]
    where = _key_path(raw, loc)
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        if owner is not None:
            msg = f"unknown key; allowed here: {', '.join(owner.model_fields)}"
    return f"{where}: {msg}" if where else msg


def _key_path(raw: Any, loc: tuple) -> str:
    parts: list[str] = []
    node = raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and -len(node) <= part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]" + (f" ({name})" if isinstance(name, str) else "")]
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config model class that holds the mapping at ``loc`` (for the keys it allows)."""
    current: Any = model
    keyed = False  # the previous part was a field of type dict[str, X]: this part is a key of it
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        keyed = get_origin(annotation) is dict
        current = _inner_model(annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]`` (else the annotation)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _roots() -> list[Path]:
    """Folders holding a ``conf/``: the current directory, then the package's source checkout."""
    return [c for c in (Path.cwd(), Path(__file__).resolve().parents[3]) if (c / "conf").is_dir()]


def project_root() -> Path:
    """The checkout holding ``conf/`` (cwd first, then the package's source checkout)."""
    roots = _roots()
    return roots[0] if roots else Path.cwd()


def resolve(path: str | Path) -> Path:
    """``path`` as given when it exists (absolute, or relative to the current directory), else the
    same relative path under the first project root where it exists (the defaults, ``conf/...``,
    from any folder), else as given (so a "not found" error names what the user gave)."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    # A folder of the user's own with a conf/ (say conf/datasets/) need not copy every default.
    return next((root / given for root in _roots() if (root / given).exists()), given)
