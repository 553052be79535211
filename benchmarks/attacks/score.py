"""Scoring only: the truth (synthetic plaintext, the centre's project id maps) is read here and nowhere else in the suite.

A *field is recovered* for a record when the attacker's guess equals the record's own normalised
plaintext value (the value its tokens were computed from; a record with a typo counts as
recovered only if the typo is guessed). Shares are over all records of the table.

A field's guess comes from the first exported column (in the order of :data:`SOURCES`, then of
decoding) that has one for the record, as :func:`guesses` gives it. A block-salted table's token
columns are *slices* (``tk_<field>__r<i>`` and the block key ``tk_block__r<i>`` per prediction
rule ``i``): there the field is recovered when ANY slice gives it away (:func:`recovered`; a block
key aligned to a rule's pair of fields gives both). Deterministic tables have no slices, so their
figures are those of the single guess.

A record is *re-identified* by a combination of quasi-identifiers when every part of the
attacker's guess is correct AND the record's true combination belongs to exactly one person
among the table's records (so the guess points at one person). Combinations scored:

* ``name+yob+area``: given name, family name, year of birth, postcode area;
* ``name+band+region``: given name, family name, age band, region (the last two are plaintext today);
* ``any``: either.

Two project extracts' persons are *the same* when the linkage centre gave both project ids to one
of its person ids (:func:`partner_persons`): a cross-project join is scored against the linkage
the extracts were made from.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .align import Decoded
from .inputs import PROJECT_PERSON_ID, AttackTable, Extract

# Quasi-identifier -> (decoded feature, how to derive the QI from that feature's value), in order of preference.
SOURCES = {
    "given_name": [("given_name", lambda s: s)],
    "family_name": [("family_name", lambda s: s)],
    "sex": [("sex", lambda s: s)],
    "year_of_birth": [("dob_year", lambda s: s), ("dob", lambda s: s[:4])],
    "date_of_birth": [("dob", lambda s: s)],
    "postcode_area": [
        ("postcode_area", lambda s: s),
        ("postcode_district", lambda s: s.rstrip("0123456789")),
        ("postcode_sector", lambda s: s.split(" ")[0].rstrip("0123456789")),
    ],
    "postcode_district": [("postcode_district", lambda s: s), ("postcode_sector", lambda s: s.split(" ")[0])],
    "age_band": [("age_band", lambda s: s)],
    "region": [("region", lambda s: s)],
}
QUASI_IDENTIFIERS = tuple(SOURCES)
COMBINATIONS = {
    "name+yob+area": ("given_name", "family_name", "year_of_birth", "postcode_area"),
    "name+band+region": ("given_name", "family_name", "age_band", "region"),
}


def truth_frame(prepared_root: Path, table: AttackTable) -> pd.DataFrame:
    """The plaintext quasi-identifiers of each row of ``table`` (same order), plus the true person id."""
    import pyarrow.dataset as ds

    plain = pd.read_parquet(prepared_root / "plain" / "gp")
    persons = ds.dataset(prepared_root / "truth", format="parquet", partitioning="hive").to_table().to_pandas()
    persons = persons[persons["dataset"] == "gp"][["record_id", "true_person_id"]]
    t = table.rows[["record_id", *[c for c in ("age_band", "region") if c in table.rows]]].merge(
        plain, on="record_id", how="left"
    ).merge(persons, on="record_id", how="left")
    dob = pd.to_datetime(t["date_of_birth"])
    out = pd.DataFrame(
        {
            "record_id": t["record_id"],
            "true_person_id": t["true_person_id"],
            "given_name": t["given_name"],
            "family_name": t["family_name"],
            "sex": t["sex"],
            "year_of_birth": dob.dt.year.astype("Int64").astype(str).where(dob.notna()),
            "date_of_birth": dob.dt.strftime("%Y-%m-%d").where(dob.notna()),
            "postcode_area": t["postcode"].str.extract(r"^([A-Z]+)")[0],
            "postcode_district": t["postcode"].str.split(" ").str[0].where(t["postcode"].str.contains(" ", na=False)),
            "age_band": t.get("age_band"),
            "region": t.get("region"),
        }
    )
    assert len(out) == len(table), "truth join changed the row count"
    return out


def guesses(decoded: Decoded) -> pd.DataFrame:
    """The attacker's guess of each quasi-identifier per row (None where it has none)."""
    n = len(next(iter(decoded.values.values()))) if decoded.values else 0
    by_feature: dict[str, list[np.ndarray]] = {}
    for column, feature in decoded.feature.items():
        by_feature.setdefault(feature, []).append(decoded.values[column])
    out = {}
    for qi, sources in SOURCES.items():
        guess = np.full(n, None, dtype=object)
        for feature, derive in sources:
            for values in by_feature.get(feature, []):
                fill = np.array([derive(str(v)) if v is not None else None for v in values], dtype=object)
                guess = np.where(pd.isna(guess.astype(object)) & pd.notna(fill), fill, guess)
        out[qi] = guess
    return pd.DataFrame(out)


SLICE = re.compile(r"__r\d+$")


def _derived(values: np.ndarray, derive) -> np.ndarray:
    return np.array([derive(str(v)) if v is not None else None for v in values], dtype=object)


def _parts(decoded: Decoded):
    """(column, feature, values) per decoded column; a compound feature ``a+b`` (a salted block key
    aligned to a rule's joint distribution, values ``va|vb``) gives one entry per part."""
    for column, feature in decoded.feature.items():
        values = decoded.values[column]
        if "+" not in feature:
            yield column, feature, values
            continue
        split = [None if v is None or "|" not in str(v) else str(v).split("|") for v in values]
        for i, part in enumerate(feature.split("+")):
            yield column, part, np.array([None if x is None else x[i] for x in split], dtype=object)


def recovered(decoded: Decoded, truth: pd.DataFrame) -> pd.DataFrame:
    """Per row and quasi-identifier: recovered by the first whole column with a guess (as :func:`guesses`),
    or by any slice of a salted table (``..__r<i>``: a rule's field token or block key)."""
    n = len(truth)
    whole: dict[str, list[np.ndarray]] = {}
    slices: dict[str, list[np.ndarray]] = {}
    for column, feature, values in _parts(decoded):
        (slices if SLICE.search(column) else whole).setdefault(feature, []).append(values)
    out = {}
    for qi, sources in SOURCES.items():
        known = truth[qi].notna().to_numpy()
        true = truth[qi].astype(str).to_numpy(dtype=object)
        hit, decided = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for feature, derive in sources:
            for values in whole.get(feature, []):
                fill = _derived(values, derive)
                present = pd.notna(fill)
                hit |= ~decided & present & known & (fill.astype(str) == true)
                decided |= present
            for values in slices.get(feature, []):
                fill = _derived(values, derive)
                hit |= pd.notna(fill) & known & (fill.astype(str) == true)
        out[qi] = hit
    return pd.DataFrame(out)


def correct(guess: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {qi: (guess[qi].notna() & truth[qi].notna() & (guess[qi].astype(str) == truth[qi].astype(str))).to_numpy() for qi in QUASI_IDENTIFIERS}
    )


def unique_combination(truth: pd.DataFrame, parts: tuple[str, ...]) -> np.ndarray:
    """True where the record's true combination belongs to exactly one person among the records."""
    key = truth[list(parts)].astype(str).agg("|".join, axis=1)
    complete = truth[list(parts)].notna().all(axis=1)
    persons = pd.DataFrame({"k": key, "p": truth["true_person_id"]}).groupby("k")["p"].nunique()
    return (complete & key.map(persons).eq(1)).to_numpy()


def score(decoded: Decoded, truth: pd.DataFrame) -> dict[str, float]:
    """Share of records recovered per quasi-identifier and re-identified per combination."""
    ok = recovered(decoded, truth)
    out = {f"recovered:{qi}": float(ok[qi].mean()) for qi in QUASI_IDENTIFIERS}
    any_ = np.zeros(len(truth), dtype=bool)
    for name, parts in COMBINATIONS.items():
        hit = ok[list(parts)].all(axis=1).to_numpy() & unique_combination(truth, parts)
        out[f"reidentified:{name}"] = float(hit.mean())
        any_ |= hit
    out["reidentified:any"] = float(any_.mean())
    return out


def partner_persons(spark, tables: Path, a: Extract, b: Extract) -> np.ndarray:
    """For each person of extract ``a`` (``a.persons``), the index in ``b.persons`` of the same person (-1: none).

    The truth is the linkage centre's own map from its person ids to each project's random ids
    (``TABLES/projects/<project>/person_ids``, never part of an extract): two project ids are the
    same person when they stand for the same centre person id."""
    from natlink.store import delta

    def centre_ids(project: str) -> pd.Series:
        ids = delta.read(spark, str(Path(tables) / "projects" / project / "person_ids")).toPandas()
        return ids.set_index(PROJECT_PERSON_ID)["person_id"]

    centre_a = pd.Series(a.persons).map(centre_ids(a.project))
    b_index = pd.Series(np.arange(len(b.persons)), index=pd.Series(b.persons).map(centre_ids(b.project)).to_numpy())
    assert b_index.index.is_unique, "a centre person has two ids in one project"
    return centre_a.map(b_index).fillna(-1).astype(np.int64).to_numpy()
