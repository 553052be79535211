"""Weighted lookup tables for the synthetic generator, drawn from without joins.

Each table is a Walker/Vose *alias table* held as Spark array literals: a draw takes two
uniforms, picks a slot ``i`` uniformly and keeps it with probability ``prob[i]`` or moves to
``alias[i]``. That is exact weighted sampling in O(1) per row with native expressions only:
no join, no shuffle, no broadcast, and any weight keeps its exact share however rare.

Grouped tables (given names by sex and birth era, nicknames by formal name) concatenate
their groups; a group index selects the slice ``[offset, offset + count)``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from natlink.errors import ConfigError


@lru_cache(maxsize=None)
def read_data_csv(name: str) -> tuple[dict[str, str], ...]:
    """Rows of a CSV shipped in ``natlink/data`` (cached; read-only)."""
    with resources.files("natlink.data").joinpath(name).open(encoding="utf-8") as fh:
        return tuple(csv.DictReader(fh))


def literal_array(values: Sequence) -> Column:
    """An array literal built as ONE expression (``F.lit(list)`` makes one child per element, which
    bloats every plan that uses a long list). Strings: a folded ``split`` of one literal; numbers:
    a numpy array, which Spark takes as a single typed literal."""
    import numpy as np

    values = list(values)
    if all(isinstance(v, str) for v in values):
        if any(_SEP in v for v in values):
            # the lists come from the synth configuration (pseudo_postcodes, dob placeholders) and data/*.csv
            raise ConfigError("synth: a listed value contains the unit separator \\x1f, which no value may hold")
        return F.split(F.lit(_SEP.join(values)), _SEP)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return F.lit(np.array(values, dtype=np.int32 if all(abs(v) < 2**31 for v in values) else np.int64))
    return F.lit(np.array([float(v) for v in values], dtype=np.float64))


_SEP = "\x1f"


def _alias(weights: Sequence[float]) -> tuple[list[float], list[int]]:
    """Vose's alias method: (prob, alias) with alias indices relative to the group."""
    n = len(weights)
    total = float(sum(weights))
    scaled = [w * n / total for w in weights]
    prob = [0.0] * n
    alias = list(range(n))
    small = [i for i, s in enumerate(scaled) if s < 1.0]
    large = [i for i, s in enumerate(scaled) if s >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    for i in small + large:  # what is left is 1 up to rounding
        prob[i] = 1.0
    return prob, alias


@dataclass(frozen=True)
class AliasTable:
    """Concatenated alias tables of one or more groups, with payload columns per item."""

    groups: tuple[str, ...]
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    prob: tuple[float, ...]
    alias: tuple[int, ...]  # absolute index into the concatenation
    values: dict[str, tuple]

    @property
    def size(self) -> int:
        return len(self.prob)

    def group_index(self, name: str) -> int:
        return self.groups.index(name)

    def draw(self, u1: Column, u2: Column, group: Column | int = 0) -> Column:
        """0-based index of the drawn item (absolute in the concatenation)."""
        if isinstance(group, int):
            offset, count = F.lit(self.offsets[group]), F.lit(self.counts[group])
        else:
            offset = F.element_at(literal_array(self.offsets), group + 1)
            count = F.element_at(literal_array(self.counts), group + 1)
        slot = offset + F.least(F.floor(u1 * count).cast("int"), count - 1)
        return F.when(u2 < F.element_at(literal_array(self.prob), slot + 1), slot).otherwise(
            F.element_at(literal_array(self.alias), slot + 1)
        )

    def value(self, column: str, index: Column) -> Column:
        """The payload ``column`` of the item at ``index`` (from :meth:`draw`)."""
        return F.element_at(literal_array(self.values[column]), index + 1)


def alias_table(rows: Sequence[tuple[str, float, dict[str, object]]], *, source: str) -> AliasTable:
    """Build from (group, weight, payload) rows; groups keep first-seen order; zero weights dropped."""
    by_group: dict[str, list[tuple[float, dict[str, object]]]] = {}
    for group, weight, payload in rows:
        if weight < 0:
            raise ConfigError(f"{source}: negative weight {weight} (group {group!r})")
        by_group.setdefault(group, [])
        if weight > 0:
            by_group[group].append((float(weight), payload))
    empty = [g for g, items in by_group.items() if not items]
    if not by_group or empty:
        raise ConfigError(f"{source}: groups without a positive weight: {empty or ['<all>']}")
    groups, offsets, counts, prob, alias = [], [], [], [], []
    columns = list(next(iter(by_group.values()))[0][1].keys())
    values: dict[str, list] = {c: [] for c in columns}
    for group, items in by_group.items():
        p, a = _alias([w for w, _ in items])
        groups.append(group)
        offsets.append(len(prob))
        counts.append(len(items))
        alias.extend(offsets[-1] + x for x in a)
        prob.extend(p)
        for _, payload in items:
            for c in columns:
                values[c].append(payload[c])
    return AliasTable(
        tuple(groups), tuple(offsets), tuple(counts), tuple(prob), tuple(alias), {c: tuple(v) for c, v in values.items()}
    )


# --- the tables the generator uses ------------------------------------------------------------

ERAS = ("w_pre1950", "w_1950_1974", "w_1975_1999", "w_2000_on")
SEXES = ("F", "M")


def era_index(birth_year: Column) -> Column:
    """0..3: the birth era whose name fashions apply (see given_names.csv)."""
    return (
        F.when(birth_year < 1950, F.lit(0))
        .when(birth_year < 1975, F.lit(1))
        .when(birth_year < 2000, F.lit(2))
        .otherwise(F.lit(3))
    )


@lru_cache(maxsize=None)
def given_names() -> AliasTable:
    """Groups ``F0..F3, M0..M3`` (sex, birth era): group index = sex index * 4 + era."""
    rows = [
        (f"{sex}{i}", float(r[era]) if r["sex"] == sex else 0.0, {"name": r["name"]})
        for sex in SEXES
        for i, era in enumerate(ERAS)
        for r in read_data_csv("given_names.csv")
    ]
    return alias_table(rows, source="given_names.csv")


@lru_cache(maxsize=None)
def family_names() -> AliasTable:
    return alias_table([("", float(r["weight"]), {"name": r["name"]}) for r in read_data_csv("family_names.csv")], source="family_names.csv")


@lru_cache(maxsize=None)
def surname_parts() -> AliasTable:
    """Groups ``prefix`` (0) and ``suffix`` (1): the generated long tail of rare surnames."""
    rows = [(r["position"], float(r["weight"]), {"part": r["part"]}) for r in read_data_csv("surname_parts.csv")]
    table = alias_table(rows, source="surname_parts.csv")
    if table.groups != ("prefix", "suffix"):
        raise ConfigError(f"surname_parts.csv: expected prefix rows then suffix rows, got groups {table.groups}")
    return table


@lru_cache(maxsize=None)
def nicknames() -> tuple[AliasTable, tuple[int, ...]]:
    """(table grouped by formal name, group index per given-name item or -1 when it has none)."""
    rows = [(r["name"], float(r["weight"]), {"nickname": r["nickname"]}) for r in read_data_csv("nicknames.csv")]
    table = alias_table(rows, source="nicknames.csv")
    position = {g: i for i, g in enumerate(table.groups)}
    per_given = tuple(position.get(name, -1) for name in given_names().values["name"])
    return table, per_given


@lru_cache(maxsize=None)
def age_pyramid() -> AliasTable:
    rows = [
        (
            "",
            float(r["population_thousands"]),
            {"age_from": int(r["age_from"]), "age_to": int(r["age_to"]), "female_share": float(r["female_share"])},
        )
        for r in read_data_csv("age_pyramid.csv")
    ]
    return alias_table(rows, source="age_pyramid.csv")


@lru_cache(maxsize=None)
def postcode_areas() -> AliasTable:
    """Areas weighted by approximate population, with their region and highest district number."""
    regions = {r["area"]: r["region"] for r in read_data_csv("postcode_areas.csv")}
    rows = []
    for r in read_data_csv("postcode_area_weights.csv"):
        if r["area"] not in regions:
            raise ConfigError(f"postcode_area_weights.csv: area {r['area']!r} is not in postcode_areas.csv")
        rows.append(
            (
                "",
                float(r["population_thousands"]),
                {"area": r["area"], "region": regions[r["area"]], "max_district": int(r["max_district"])},
            )
        )
    return alias_table(rows, source="postcode_area_weights.csv")


@lru_cache(maxsize=None)
def condition_codes() -> dict[str, dict[str, object]]:
    """condition -> {'icd10': [...], 'bnf': [...], 'death_weight': float} from conditions.csv."""
    out: dict[str, dict[str, object]] = {}
    for r in read_data_csv("conditions.csv"):
        out[r["condition"]] = {
            "label": r["label"],
            "icd10": r["icd10"].split(";"),
            "bnf": r["bnf"].split(";"),
            "death_weight": float(r["death_weight"]),
        }
    return out


@lru_cache(maxsize=None)
def acute_codes(kind: str) -> tuple[str, ...]:
    """Codes not tied to a long-term condition, repeated by integer weight (for an array draw)."""
    out: list[str] = []
    for r in read_data_csv("acute_codes.csv"):
        if r["kind"] == kind:
            out.extend([r["code"]] * max(1, round(float(r["weight"]))))
    if not out:
        raise ConfigError(f"acute_codes.csv: no codes of kind {kind!r}")
    return tuple(out)
