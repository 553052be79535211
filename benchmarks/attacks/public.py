"""The attacker's public knowledge: expected distributions of plaintext values, from published tables.

Only the reference tables shipped in ``natlink/data`` are used (stand-ins for ONS name, postcode
and age statistics): ``given_names.csv`` (by sex and birth era), ``nicknames.csv``,
``family_names.csv`` with ``surname_parts.csv`` (the rare-surname tail), ``age_pyramid.csv``,
``postcode_area_weights.csv`` and ``postcode_areas.csv``. Plus what any manifest says in clear:
the age band rules (reference date, width, open band).

Knowledge is a list of *blocks*: weighted tables of plaintext features that vary together
(a person's sex, birth year and given name; a date of birth; a family name; a postcode). Every
feature a column might encode is a column of a block (``given_soundex``, ``dob_month``,
``postcode_district``...), derived with the published algorithms (Soundex, NYSIIS: natlink's own
public functions, since the algorithms are public). Blocks are treated as independent of each other.

A block-salted table (``natlink.tokens.salted``) exports one block key per prediction rule, whose
rules its manifest lists in clear (``encoding.rules``). A rule of two fields with public features
gets a *rule block* (:func:`rule_blocks`): the joint distribution of the pair, as one compound
feature ``a+b`` with values ``va|vb`` (e.g. ``family_name+dob_year``: ``SMITH|1980``), which the
block key is aligned to like any token column.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "src" / "natlink" / "data"
ERAS = ((0, 1950, "w_pre1950"), (1950, 1975, "w_1950_1974"), (1975, 2000, "w_1975_1999"), (2000, 9999, "w_2000_on"))
# The attacker's assumptions where no table says (documented in docs/threat_model.md).
NICKNAME_MASS = 0.05  # share of a formal name's holders recorded under one of its nicknames
DEFAULT_REFERENCE_DATE = dt.date(2026, 1, 1)
# A rule block keeps its most probable values; the rest of the mass is one value that matches no
# record (REST), so expected counts keep their scale. Values beyond these expect < 0.1 records at 100k.
RULE_BLOCK_VALUES = 20_000
REST = "(rest)"
# Blocks share no person but may share a feature; a pair from two blocks is joined on this one
# (P(a, b) = P(a, s) P(b | s)), else taken as independent.
SHARED = ("dob_year", "age_band", "sex")


@dataclass(frozen=True)
class Block:
    """A weighted table of features (column ``w``: probability mass, summing to 1)."""

    name: str
    table: pd.DataFrame

    @property
    def features(self) -> list[str]:
        return [c for c in self.table.columns if c != "w"]


def read_table(name: str) -> list[dict[str, str]]:
    """Rows of one of the published tables (``natlink/data/NAME``)."""
    return _csv(name)


def _csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _age_band_rules(manifest: dict[str, Any]) -> tuple[dt.date, int, int]:
    rules = manifest.get("age_band") or {}
    ref = dt.date.fromisoformat(rules["reference_date"]) if "reference_date" in rules else DEFAULT_REFERENCE_DATE
    return ref, int(rules.get("width", 10)), int(rules.get("open_from", 90))


def _band(age: np.ndarray, width: int, open_from: int) -> np.ndarray:
    lower = (age // width) * width
    closed = np.char.add(np.char.add(lower.astype(str), "-"), (lower + width - 1).astype(str))
    return np.where(age >= open_from, f"{open_from}+", closed)


def birth_years(ref: dt.date) -> pd.DataFrame:
    """P(birth year, sex) from the age pyramid: age uniform within each band at the reference date."""
    rows = []
    for r in _csv("age_pyramid.csv"):
        lo, hi, pop, fem = int(r["age_from"]), int(r["age_to"]), float(r["population_thousands"]), float(r["female_share"])
        for age in range(lo, hi):
            year = ref.year - 1 - age if (ref.month, ref.day) == (1, 1) else ref.year - age
            rows += [(year, "F", pop / (hi - lo) * fem), (year, "M", pop / (hi - lo) * (1 - fem))]
    df = pd.DataFrame(rows, columns=["dob_year", "sex", "w"]).groupby(["dob_year", "sex"], as_index=False)["w"].sum()
    df["w"] /= df["w"].sum()
    return df


def phonetics(spark, names: list[str]) -> pd.DataFrame:
    """initial, Soundex and NYSIIS of each name, with natlink's public functions (the same algorithms)."""
    from pyspark.sql import functions as F

    from natlink.tokens.normalise import nysiis, soundex

    df = spark.createDataFrame([(n,) for n in sorted(set(names))], "name string")
    out = df.select(
        "name",
        F.substring("name", 1, 1).alias("initial"),
        soundex(F.col("name")).alias("soundex"),
        nysiis(F.col("name")).alias("nysiis"),
    )
    return out.toPandas()


def given_distribution(ref: dt.date) -> pd.DataFrame:
    """P(sex, birth year, given name) (columns ``sex``, ``dob_year``, ``given_name``, ``w``): the birth
    years and sexes of the age pyramid, each with the given names of its sex and birth era, a share
    ``NICKNAME_MASS`` of a formal name's holders recorded under one of its nicknames."""
    years = birth_years(ref)
    given = _csv("given_names.csv")
    nick: dict[str, list[tuple[str, float]]] = {}
    for r in _csv("nicknames.csv"):
        nick.setdefault(r["name"], []).append((r["nickname"], float(r["weight"])))
    rows = []
    for (lo, hi, column) in ERAS:
        for sex in ("F", "M"):
            names = [(r["name"], float(r[column])) for r in given if r["sex"] == sex and float(r[column]) > 0]
            total = sum(w for _, w in names)
            dist: dict[str, float] = {}
            for n, w in names:
                p = w / total
                dist[n] = dist.get(n, 0.0) + p * (1 - NICKNAME_MASS * bool(nick.get(n)))
                nicks = nick.get(n, [])
                for k, kw in nicks:
                    dist[k] = dist.get(k, 0.0) + p * NICKNAME_MASS * kw / sum(x for _, x in nicks)
            part = years[(years["sex"] == sex) & (years["dob_year"] >= lo) & (years["dob_year"] < hi)]
            for year, wy in zip(part["dob_year"], part["w"]):
                rows += [(sex, year, n, wy * p) for n, p in dist.items()]
    return pd.DataFrame(rows, columns=["sex", "dob_year", "given_name", "w"])


def person_block(spark, ref: dt.date, width: int, open_from: int) -> Block:
    df = given_distribution(ref)
    age = ref.year - 1 - df["dob_year"].to_numpy()  # whole years at the reference date (most birthdays)
    df["age_band"] = _band(age, width, open_from)
    ph = phonetics(spark, df["given_name"].unique().tolist()).set_index("name")
    df["given_initial"] = df["given_name"].map(ph["initial"])
    df["given_soundex"] = df["given_name"].map(ph["soundex"])
    df["given_nysiis"] = df["given_name"].map(ph["nysiis"])
    df["dob_year"] = df["dob_year"].astype(str)
    return Block("person", df)


def date_block(ref: dt.date, width: int, open_from: int) -> Block:
    years = birth_years(ref).groupby("dob_year", as_index=False)["w"].sum()
    frames = []
    for year, wy in zip(years["dob_year"], years["w"]):
        days = pd.date_range(dt.date(year, 1, 1), dt.date(year, 12, 31), freq="D")
        days = days[days < pd.Timestamp(ref)]
        if len(days):
            frames.append(pd.DataFrame({"date": days, "w": wy / len(days)}))
    df = pd.concat(frames, ignore_index=True)
    d = df.pop("date")
    df["dob_year"] = d.dt.year.astype(str)
    df["dob_month"] = d.dt.month.astype(str)
    df["dob_day"] = d.dt.day.astype(str)
    df["dob"] = d.dt.strftime("%Y-%m-%d")
    swappable = (d.dt.day <= 12) & (d.dt.day != d.dt.month)
    df["dob_swapped"] = np.where(
        swappable, d.dt.year.astype(str) + "-" + d.dt.day.map("{:02d}".format) + "-" + d.dt.month.map("{:02d}".format), None
    )
    ref_ts = pd.Timestamp(ref)
    age = ref_ts.year - d.dt.year - ((d.dt.month > ref_ts.month) | ((d.dt.month == ref_ts.month) & (d.dt.day > ref_ts.day)))
    df["age_band"] = _band(age.to_numpy(), width, open_from)
    df["w"] /= df["w"].sum()
    return Block("date", df)


def family_block_listed() -> Block:
    """The published family-name list alone (no phonetic codes): enough to size it."""
    real = pd.DataFrame(_csv("family_names.csv"))
    real["w"] = real.pop("weight").astype(float)
    real["w"] /= real["w"].sum()
    return Block("family-listed", real.rename(columns={"name": "family_name"}))


def family_block(spark, tail_share: float) -> Block:
    """Family names: the published list, plus the rare tail (prefix + suffix) with ``tail_share`` of the mass."""
    df = family_distribution(tail_share)
    ph = phonetics(spark, df["family_name"].tolist()).set_index("name")
    df["family_initial"] = df["family_name"].map(ph["initial"])
    df["family_soundex"] = df["family_name"].map(ph["soundex"])
    df["family_nysiis"] = df["family_name"].map(ph["nysiis"])
    return Block("family", df)


def family_distribution(tail_share: float) -> pd.DataFrame:
    """P(family name): the published list with 1 - ``tail_share`` of the mass, the rare tail (prefix +
    suffix) with the rest (columns ``family_name``, ``w``)."""
    real = [(r["name"], float(r["weight"])) for r in _csv("family_names.csv")]
    parts = _csv("surname_parts.csv")
    pre = [(r["part"], float(r["weight"])) for r in parts if r["position"] == "prefix"]
    suf = [(r["part"], float(r["weight"])) for r in parts if r["position"] == "suffix"]
    total_real = sum(w for _, w in real)
    total_pre, total_suf = sum(w for _, w in pre), sum(w for _, w in suf)
    dist: dict[str, float] = {}
    for n, w in real:
        dist[n] = dist.get(n, 0.0) + (1 - tail_share) * w / total_real
    for p, pw in pre:
        for s, sw in suf:
            dist[p + s] = dist.get(p + s, 0.0) + tail_share * pw / total_pre * sw / total_suf
    df = pd.DataFrame({"family_name": list(dist), "w": list(dist.values())})
    df["w"] /= df["w"].sum()
    return df


def postcode_block() -> Block:
    regions = {r["area"]: r["region"] for r in _csv("postcode_areas.csv")}
    rows = []
    for r in _csv("postcode_area_weights.csv"):
        area, pop, maxd = r["area"], float(r["population_thousands"]), int(r["max_district"])
        for d in range(1, maxd + 1):
            for s in range(10):
                rows.append((regions.get(area, "UNKNOWN"), area, f"{area}{d}", f"{area}{d} {s}", pop / maxd / 10))
    df = pd.DataFrame(rows, columns=["region", "postcode_area", "postcode_district", "postcode_sector", "w"])
    df["w"] /= df["w"].sum()
    return Block("postcode", df)


def knowledge(spark, manifest: dict[str, Any], *, family_tail_share: float) -> list[Block]:
    ref, width, open_from = _age_band_rules(manifest)
    blocks = [
        person_block(spark, ref, width, open_from),
        date_block(ref, width, open_from),
        family_block(spark, family_tail_share),
        postcode_block(),
    ]
    return blocks + rule_blocks(blocks, manifest)


def rule_feature(rule) -> str:
    return "+".join(rule)


def _joint(blocks: list[Block], a: str, b: str) -> pd.DataFrame | None:
    home = {f: next((x for x in blocks if f in x.features), None) for f in (a, b)}
    if home[a] is None or home[b] is None:
        return None
    if home[a] is home[b]:
        return home[a].table.groupby([a, b], as_index=False)["w"].sum()
    shared = [s for s in SHARED if s in home[a].features and s in home[b].features and s not in (a, b)]
    if not shared:
        pa = home[a].table.groupby(a, as_index=False)["w"].sum()
        pb = home[b].table.groupby(b, as_index=False)["w"].sum()
        pa["w"] /= pa["w"].sum()
        pb["w"] /= pb["w"].sum()
        return top_product(pa, pb, a, b, RULE_BLOCK_VALUES)  # absolute masses: the rest is REST
    else:
        s = shared[0]
        pa = home[a].table.groupby([a, s], as_index=False)["w"].sum()
        pb = home[b].table.groupby([b, s], as_index=False)["w"].sum()
        pb["wb"] = pb["w"] / pb.groupby(s)["w"].transform("sum")
        out = pa.merge(pb[[b, s, "wb"]], on=s)
    out["w"] = out["w"] * out["wb"]
    out = out.groupby([a, b], as_index=False)["w"].sum()
    out["w"] /= out["w"].sum()
    return out


def top_pairs(wa: np.ndarray, wb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of the ``k`` largest products ``wa[i] * wb[j]`` (both arrays sorted in
    descending order), without the whole cross product (:func:`top_pairs_grouped`, one group).
    A (surname, date of birth) pair space has ~300M values, which a cross join holds in ~20 GB."""
    _, ia, ib = top_pairs_grouped([(wa, wb)], k)
    return ia, ib


def top_pairs_grouped(groups: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest products ``wa[i] * wb[j]`` over groups ``(wa, wb)`` (each array sorted in
    descending order; the pairs of a group are its cross product), largest first, as (group, i, j).
    A threshold t on the product is found by bisection, the pairs >= t counted per ``i`` with a binary
    search in ``wb``; only those are built. Zero masses are never taken.
    A joint distribution that is a product within groups (P(given name, date) = P(date)
    P(name | the date's year): a group a year) is ranked without building it."""
    groups = [(wa[: np.count_nonzero(wa > 0)], wb[: np.count_nonzero(wb > 0)]) for wa, wb in groups]
    groups = [(wa, wb) if len(wa) and len(wb) else (wa[:0], wb[:0]) for wa, wb in groups]

    def at_least(t: float) -> list[np.ndarray]:  # per group and i: how many j pair with it at a product >= t
        return [np.searchsorted(-wb, -(t / wa), side="right") for wa, wb in groups]

    if sum(len(wa) * len(wb) for wa, wb in groups) <= k:
        takes = [np.full(len(wa), len(wb)) for wa, wb in groups]
    else:
        lo = np.log(min(wa[-1] * wb[-1] for wa, wb in groups if len(wa)))
        hi = np.log(max(wa[0] * wb[0] for wa, wb in groups if len(wa)))
        for _ in range(100):
            mid = (lo + hi) / 2
            if sum(t.sum() for t in at_least(np.exp(mid))) >= k:
                lo = mid
            else:
                hi = mid
        takes = at_least(np.exp(lo))
    parts = []
    for g, ((wa, wb), take) in enumerate(zip(groups, takes)):
        i = np.repeat(np.arange(len(take)), take)
        j = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
        parts.append((np.full(len(i), g), i, j, wa[i] * wb[j]))
    g, ia, ib, w = (np.concatenate(x) for x in zip(*parts))
    order = np.argsort(-w, kind="stable")[:k]
    return g[order], ia[order], ib[order]


def top_product(pa: pd.DataFrame, pb: pd.DataFrame, a: str, b: str, k: int) -> pd.DataFrame:
    """The ``k`` most probable pairs of two independent features (columns ``a``/``b`` and ``w``),
    most probable first (:func:`top_pairs`)."""
    pa = pa[pa["w"] > 0].sort_values("w", ascending=False, kind="stable")
    pb = pb[pb["w"] > 0].sort_values("w", ascending=False, kind="stable")
    wa, wb = pa["w"].to_numpy(), pb["w"].to_numpy()
    ia, ib = top_pairs(wa, wb, k)
    return pd.DataFrame({a: pa[a].to_numpy()[ia], b: pb[b].to_numpy()[ib], "w": wa[ia] * wb[ib]})


def rule_blocks(blocks: list[Block], manifest: dict[str, Any]) -> list[Block]:
    """One block per two-field prediction rule of a salted table whose fields have public features."""
    out = []
    for rule in (manifest.get("encoding") or {}).get("rules", []):
        if len(rule) != 2:
            continue
        joint = _joint(blocks, *rule)
        if joint is None:
            continue
        joint = joint.sort_values("w", ascending=False, kind="stable")
        top = joint.head(RULE_BLOCK_VALUES)
        values = top[rule[0]].astype(str) + "|" + top[rule[1]].astype(str)
        table = pd.DataFrame({rule_feature(rule): [*values, REST], "w": [*top["w"], max(1 - top["w"].sum(), 0.0)]})
        out.append(Block(f"rule {rule_feature(rule)}", table))
    return out


def vocabulary(blocks: list[Block], feature: str) -> pd.Series:
    """Total public mass of each value of a feature (over the first block that has it)."""
    for b in blocks:
        if feature in b.table.columns:
            return b.table.groupby(feature)["w"].sum().sort_values(ascending=False)
    raise KeyError(feature)
