"""Loading typed, frozen configuration from YAML; unknown keys are rejected.

Every loader names the file and the key path in its error, and never echoes values
that might be secrets (config holds key *references* only, e.g. ``env:NATLINK_KEY``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


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
