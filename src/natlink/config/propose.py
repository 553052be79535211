"""``natlink model init``: a model YAML proposed from the datasets' identifiers and their completeness.

Input: each dataset's identifiers with their kinds (:mod:`natlink.config.identifiers`) and the
share of its rows with a usable value of each (``natlink profile``'s completeness). An identifier
is *usable* for the linkage when every dataset has it at least ``min_completeness`` complete (an
identifier one dataset lacks only ever falls in the null level). Output: the model as a mapping
(validated by :class:`~natlink.config.model.ModelConfig`) and one line per decision, written as
comments above the YAML so the user sees why each part is there and edits from there.

Rules, by kind (the levels are those measured on the generator and FEBRL, ``docs/model.md``):

* comparisons: person_id exact; given name exact, NYSIIS, initial; family name exact, NYSIIS,
  Soundex; date exact, day/month swapped, same year and month, same year; sex exact; postcode
  exact (and district when UK); address exact, NYSIIS; category exact.
* prediction blocking rules (each should be specific: a block of a common value is large and,
  with salted tokens, its size follows the value's frequency): every person id alone, then a date
  with the given initial, the family name with the date, the postcode with the initial (or
  a street number), the first address line with the postcode.
* training: deterministic rule a person id with the date (else both names and the date); EM rules
  the person id, the date and the postcode (two or more, each a prediction rule's subset);
  ELSE levels of sex, dates and categories allowed unobserved (true matches rarely disagree there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from natlink import columns as C
from natlink.config.datasets import DatasetConfig
from natlink.config.identifiers import IdentifierKind
from natlink.config.model import ModelConfig
from natlink.errors import ConfigError

__all__ = ["ProposedModel", "common_identifiers", "propose_model", "to_yaml", "write"]

ELSE = "all other comparisons"


def _levels(name: str, kind: IdentifierKind) -> list[dict[str, Any]]:
    if name == C.GIVEN_NAME:
        return [{"exact": "tk_given_name"}, {"exact": "tk_given_nysiis", "label": "same NYSIIS"},
                {"exact": "tk_given_initial", "label": "first initial"}]
    if name == C.FAMILY_NAME:
        return [{"exact": "tk_family_name"}, {"exact": "tk_family_nysiis", "label": "same NYSIIS"},
                {"exact": "tk_family_soundex", "label": "same Soundex"}]
    t = "dob" if name == C.DATE_OF_BIRTH else name
    if kind.kind == "date":
        return [{"exact": f"tk_{t}"}, {"sql": f"tk_{t}_swapped_l = tk_{t}_r", "label": "day and month swapped"},
                {"sql": f"tk_{t}_year_l = tk_{t}_year_r AND tk_{t}_month_l = tk_{t}_month_r", "label": "same year and month"},
                {"exact": f"tk_{t}_year", "label": "same year"}]
    if kind.kind == "postcode" and kind.postcode_format == "uk":
        return [{"exact": f"tk_{name}"}, {"exact": f"tk_{name}_district", "label": "same district"}]
    if kind.kind == "address":
        return [{"exact": f"tk_{name}"}, {"exact": f"tk_{name}_nysiis", "label": "same NYSIIS"}]
    return [{"exact": f"tk_{name}"}]


def _first(usable: list[str], kinds: Mapping[str, IdentifierKind], kind: str) -> str | None:
    return next((n for n in usable if kinds[n].kind == kind), None)


def propose_model(
    kinds: Mapping[str, IdentifierKind],
    completeness: Mapping[str, Mapping[str, float]],
    *,
    name: str = "proposed",
    link_type: str = "dedupe_only",
    encoding: str = "salted",
    min_completeness: float = 0.05,
) -> tuple[dict[str, Any], list[str]]:
    """(model mapping, explanation lines). ``completeness``: dataset -> identifier -> share of
    rows with a usable value (absent: 0). Raises :class:`ConfigError` when too little is usable."""
    if not completeness:
        raise ConfigError("model init: give one or more datasets")
    why: list[str] = []
    usable = []
    for ident in kinds:
        shares = {d: float(c.get(ident) or 0.0) for d, c in completeness.items()}
        low = min(shares.values())
        where = ", ".join(f"{d} {s:.0%}" for d, s in shares.items())
        if low >= min_completeness:
            usable.append(ident)
            why.append(f"{ident} ({kinds[ident].kind}): compared; complete in {where}")
        elif max(shares.values()) > 0:
            why.append(f"{ident}: left out, under {min_completeness:.0%} complete somewhere ({where})")
    if len(usable) < 2:
        raise ConfigError(f"model init: only {usable} are usable (at least {min_completeness:.0%} complete in every dataset); a model needs two or more identifiers")
    comparisons = [{"name": n, "levels": _levels(n, kinds[n])} for n in usable]
    ids = [n for n in usable if kinds[n].kind == "person_id"]
    dob = _first(usable, kinds, "date")
    dob_t = None if dob is None else ("dob" if dob == C.DATE_OF_BIRTH else dob)
    given = C.GIVEN_NAME in usable
    family = C.FAMILY_NAME in usable
    postcode = _first(usable, kinds, "postcode")
    addresses = [n for n in usable if kinds[n].kind == "address"]
    rules: list[list[str]] = [[f"tk_{n}"] for n in ids]
    if dob_t and given:
        rules.append([f"tk_{dob_t}", "tk_given_name"])  # as conf/model.yaml: an initial's blocks grow with the population
    if family and dob_t:
        rules.append(["tk_family_name", f"tk_{dob_t}"])  # as conf/model.yaml: with the year, surname classes chain
    if postcode and given:
        rules.append([f"tk_{postcode}", "tk_given_initial"])
    elif postcode and addresses:
        rules.append([f"tk_{postcode}", f"tk_{addresses[0]}"])
    if addresses and family:
        rules.append([f"tk_{addresses[-1]}", "tk_family_name"])
    if len(rules) < 2 and given and family:
        rules.append(["tk_given_name", "tk_family_name"])
    if not rules:
        raise ConfigError(
            f"model init: no specific blocking rule can be made from {usable} (it needs a person id, a date with the "
            "given name, the family name with a date, or a postcode with a name or an address); write the model by hand (docs/model.md)"
        )
    why.append("prediction rules: " + "; ".join("+".join(r) for r in rules) + " (each specific, so blocks stay small)")
    deterministic = [[f"tk_{ids[0]}", f"tk_{dob_t}"]] if ids and dob_t else ([["tk_given_name", "tk_family_name", f"tk_{dob_t}"]] if given and family and dob_t else [])
    em: list[list[str]] = [[f"tk_{ids[0]}"]] if ids else []
    em += [[f"tk_{dob_t}"]] if dob_t else []
    em += [[f"tk_{postcode}"]] if postcode else []
    for r in rules:
        if len(em) >= 2:
            break
        if r not in em:
            em.append(r)
    if not deterministic:
        deterministic = [rules[0]]
    why.append("training: lambda from " + "; ".join("+".join(r) for r in deterministic) + ", m by EM in the blocks of " + "; ".join("+".join(r) for r in em))
    unobserved = {n: [ELSE] for n in usable if kinds[n].kind in ("sex", "date", "category", "person_id")}
    model = {
        "name": name,
        "link_type": link_type,
        "encoding": encoding,
        "comparisons": comparisons,
        "blocking_rules_for_prediction": rules,
        "training": {
            "seed": 42,
            "deterministic_rules": deterministic,
            "deterministic_recall": 0.8,
            "em_blocking_rules": em,
            "allow_unobserved": unobserved,
        },
    }
    ModelConfig.model_validate(model)  # what natlink train will read
    return model, why


def to_yaml(model: Mapping[str, Any], why: list[str]) -> str:
    """The model as YAML, the explanation as comments above it."""
    import yaml

    head = ["# Proposed by `natlink model init` from the datasets' identifiers and completeness; edit freely",
            "# (every key: docs/model.md). Why each part is here:"]
    head += [f"#   {line}" for line in why]
    return "\n".join(head) + "\n" + yaml.safe_dump(dict(model), sort_keys=False, width=120)


@dataclass(frozen=True)
class ProposedModel:
    """What ``natlink model init`` wrote: the YAML's path, the explanation, the completeness used."""

    path: Path
    explanation: list[str]
    completeness: dict[str, dict[str, float]]


def common_identifiers(configs: Sequence[DatasetConfig]) -> dict[str, IdentifierKind]:
    """Every identifier of the datasets with its kind, refused when two datasets declare one differently."""
    if not configs:
        raise ConfigError("model init: give one or more --dataset configs")
    kinds: dict[str, IdentifierKind] = {}
    for cfg in configs:
        for ident, kind in cfg.identifier_kinds.items():
            if kinds.setdefault(ident, kind) != kind:
                raise ConfigError(f"model init: identifier {ident!r} is declared differently in {cfg.name!r}; declare it alike everywhere")
    return kinds


def write(out: str | Path, model: Mapping[str, Any], why: list[str], completeness: dict[str, dict[str, float]]) -> ProposedModel:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(model, why), encoding="utf-8")
    return ProposedModel(out, why, completeness)
