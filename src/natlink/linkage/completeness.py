"""Every comparison level trained, or a named error: the check both trainings end with.

A level without m or u would make Splink silently use a default weight. :func:`complete_levels`
refuses it with :class:`~natlink.errors.UntrainedLevelError` (which level, in how many pairs, what
to change), unless the model lists it in ``training.allow_unobserved``: then it gets the Jeffreys
estimate 0.5 / (n + 1) for a level seen 0 times in n pairs, recorded in the sidecar (``fit.floors``)
and the report. Used by :mod:`natlink.linkage.train` and :mod:`natlink.linkage.salted_training`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from natlink.config.model import ModelConfig, TrainingSpec
from natlink.errors import UntrainedLevelError
from natlink.linkage.settings import required_columns

log = logging.getLogger(__name__)


@dataclass
class TrainingEvidence:
    """How many pairs training looked at, to say why a level is untrained and to size a floor."""

    population_records: int
    sample_records: int
    u_pairs: int  # pairs Splink's u sampling looked at (at most u_max_pairs)
    em_pairs: dict[str, int | None]  # EM rule SQL -> pairs (capped by em_max_pairs), None if not counted
    em_columns: dict[str, set[str]]  # EM rule SQL -> the columns it blocks on
    exact: dict[str, list[float | None]]  # exact u per comparison and level
    population_pairs: int | None = None  # link_only: the pairs across datasets exact u counted over (None: all pairs)


def _jeffreys(pairs: int) -> float:
    """Posterior mean of a proportion seen 0 times in ``pairs`` trials under the Jeffreys prior Beta(1/2, 1/2)."""
    return 0.5 / (pairs + 1)


def complete_levels(trained: dict[str, Any], cfg: ModelConfig, ev: TrainingEvidence) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every non-null level with m and u, or :class:`UntrainedLevelError` naming each one that is not.

    Levels listed in ``training.allow_unobserved`` that training saw 0 times get a floor (Jeffreys
    estimate over the pairs that could have shown them); the comparison's other m (or u) values are
    scaled so the level probabilities still sum to 1. Returns the completed settings and the floors.
    """
    allowed = cfg.training.allow_unobserved
    problems: list[str] = []
    floors: list[dict[str, Any]] = []
    comparisons = []
    for comparison in trained["comparisons"]:
        name = comparison["output_column_name"]
        columns = required_columns({"comparisons": [comparison]})
        trained_by = [rule for rule, cols in ev.em_columns.items() if not cols & columns]
        em_n = sum(ev.em_pairs.get(rule) or 0 for rule in trained_by)
        levels = [dict(lv) for lv in comparison["comparison_levels"]]
        for i, level in enumerate(levels):
            if level.get("is_null_level"):
                continue
            label = level["label_for_charts"]
            ok = label in allowed.get(name, [])
            if level.get("m_probability") is None:
                why, fix, n = _m_problem(name, sorted(columns), trained_by, em_n, ev, cfg.training)
                if ok and n:
                    floors.append(_floor(level, "m", name, label, n, why))
                else:
                    problems.append(f"{name} / {label}: m {why}; {fix}")
            if level.get("u_probability") is None:
                why, fix, n = _u_problem(name, i, ev, cfg.training)
                if ok and n:
                    floors.append(_floor(level, "u", name, label, n, why))
                else:
                    problems.append(f"{name} / {label}: u {why}; {fix}")
        for param in ("m", "u"):
            _rescale(levels, param, {f["level"] for f in floors if f["comparison"] == name and f["parameter"] == param})
        comparisons.append(dict(comparison, comparison_levels=levels))
    if problems:
        raise UntrainedLevelError(
            f"model {cfg.name}: {len(problems)} comparison level(s) left untrained (Splink would silently use a default):\n  - "
            + "\n  - ".join(problems)
        )
    for f in floors:
        log.warning("model %s: %s / %s %s set to %.3g (%s; training.allow_unobserved)", cfg.name, f["comparison"], f["level"],
                    f["parameter"], f["value"], f["why"])
    return dict(trained, comparisons=comparisons), floors


def _m_problem(name: str, columns: list[str], trained_by: list[str], em_n: int, ev: TrainingEvidence, t: TrainingSpec) -> tuple[str, str, int]:
    if not trained_by:
        return (
            "was not estimated: every EM blocking rule uses its columns " + str(columns),
            f"add a rule to training.em_blocking_rules that blocks on none of {columns}",
            0,
        )
    more = []
    if t.em_max_pairs and any(ev.em_pairs.get(r) == int(t.em_max_pairs) for r in trained_by):
        more.append(f"raise training.em_max_pairs (now {t.em_max_pairs:.3g}: it capped these rules)")
    if ev.sample_records < ev.population_records:
        more.append(f"raise training.max_records (now {t.max_records:,} of {ev.population_records:,} records)")
    more.append(f"add an EM blocking rule on columns other than {columns} whose pairs reach this level")
    more.append(f"if true matches legitimately never fall in it, list it under training.allow_unobserved.{name}")
    return (
        f"was not observed in the {em_n:,} EM pairs of the rules that train it {trained_by}",
        "; or ".join(more),
        em_n,
    )


def _u_problem(name: str, index: int, ev: TrainingEvidence, t: TrainingSpec) -> tuple[str, str, int]:
    exact = (ev.exact.get(name) or [None] * (index + 1))[index]
    if exact == 0:
        cross = ev.population_pairs is not None
        pairs = ev.population_pairs if cross else ev.population_records * (ev.population_records - 1) // 2
        return (
            f"is 0: no two of the {ev.population_records:,} records are at this level (counted exactly over all {pairs:,} pairs"
            f"{' across datasets' if cross else ''})",
            f"remove the level, or list it under training.allow_unobserved.{name}",
            pairs,
        )
    return (
        f"was not observed in the {ev.u_pairs:,} randomly sampled pairs",
        f"raise training.u_max_pairs (now {t.u_max_pairs:.3g})"
        + ("" if t.u_exact else "; or set training.u_exact: true (equality levels are then counted exactly)")
        + f"; or list it under training.allow_unobserved.{name}",
        ev.u_pairs,
    )


def _floor(level: dict[str, Any], param: str, name: str, label: str, pairs: int, why: str) -> dict[str, Any]:
    value = _jeffreys(pairs)
    level[f"{param}_probability"] = value
    return {"comparison": name, "level": label, "parameter": param, "value": value, "pairs": pairs,
            "estimate": "Jeffreys 0.5 / (pairs + 1)", "why": why}


def _rescale(levels: list[dict[str, Any]], param: str, floored: set[str]) -> None:
    if not floored:
        return
    key = f"{param}_probability"
    mass = sum(lv[key] for lv in levels if lv.get("label_for_charts") in floored and not lv.get("is_null_level"))
    for lv in levels:
        if not lv.get("is_null_level") and lv.get("label_for_charts") not in floored and lv.get(key) is not None:
            lv[key] = lv[key] * (1 - mass)
