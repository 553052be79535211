"""Multimorbidity case study: long-term conditions per person, with and without linkage.

The prevalence of multimorbidity (``min_conditions`` or more distinct long-term conditions,
default 2) by age band and region, computed from the same records in four ways:

* ``linked``: every record of a ``person_id`` in the link run's ``clusters`` table pooled;
* ``unlinked``: each record on its own, as a researcher without linkage sees the datasets
  (persons = records; a hospital episode with two diagnoses can show two conditions, a
  prescription or a death registration never more than one);
* ``perfect_linkage``: the records pooled by the generator's ``true_person_id`` (the ``truth``
  table): what linkage could see at best, so ``linked - perfect_linkage`` is the linkage error;
* ``truth``: the generator's own conditions (``truth_conditions``) over all its persons
  (``truth_persons``), recorded or not: ``perfect_linkage - truth`` is under-recording.

The last two need the synthetic generator's truth tables and are skipped without them.

Condition codes are the non-identifying event columns the providers kept through tokenise
(``conf/case_study.yaml`` names them and their coding system: ICD-10 diagnoses and causes of
death, BNF prescription codes) and map to conditions through ``natlink/data/conditions.csv``
(ICD-10 by 3-character category; BNF by the longest listed prefix). Codes matching no
long-term condition (acute diagnoses) are counted as ``unmatched`` and reported. A BNF prefix
listed under several conditions (bronchodilators: asthma or COPD) is evidence of *one of*
them: a person's count is the fewest distinct conditions consistent with all their codes
(:func:`condition_counts`), a lower bound that never over-counts and is exact for "2 or more".

Age band and region of a linked person are the most frequent among their records (a known
region before ``UNKNOWN``); the age band is the provider's kept ``age_band`` column (the date of
birth never leaves the provider), and the truth side bands the generator's dates of birth with
the same rule, read from the token manifests.

Everything is native Spark aggregation; the result is a small table (method x grouping level x
age band x region) in which counts from 1 to ``min_cell_count - 1`` are suppressed.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence


from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from natlink import columns as C
from natlink.store import delta
from natlink.config.case_study import CaseStudyConfig
from natlink.config.datasets import AgeBandRules
from natlink.errors import InputDataError, ReconciliationError
from natlink.linkage.runs import completed_view

__all__ = [
    "METHODS",
    "CaseStudyInputError",
    "CaseStudyResult",
    "condition_lookup",
    "record_conditions",
    "condition_counts",
    "persons_from_records",
    "prevalence",
    "suppress",
    "run",
    "prevalence_chart_spec",
    "write_chart_html",
]

log = logging.getLogger(__name__)

METHODS = ("linked", "unlinked", "perfect_linkage", "truth")
LEVELS = ("overall", "age_band", "region", "age_band_region")
ALL = "ALL"  # age band / region of a rolled-up row
UNKNOWN = "UNKNOWN"  # no usable value among a person's records
CONDITION = "condition"
CANDIDATES = "candidates"
UNIT = "unit"
N_CONDITIONS = "n_conditions"
SYSTEMS = ("icd10", "bnf")

PREVALENCE_SCHEMA = T.StructType(
    [
        T.StructField("method", T.StringType(), False),
        T.StructField("level", T.StringType(), False),
        T.StructField(C.AGE_BAND, T.StringType(), False),
        T.StructField(C.REGION, T.StringType(), False),
        T.StructField("persons", T.LongType(), True),
        T.StructField("multimorbid", T.LongType(), True),
        T.StructField("prevalence", T.DoubleType(), True),
        T.StructField("suppressed", T.BooleanType(), False),
    ]
)


class CaseStudyInputError(InputDataError):
    """The inputs cannot support the case study (no code columns, no age band, mixed rules)."""


# ---------------------------------------------------------------------------------------------
# Codes -> conditions


@dataclass(frozen=True)
class _Lookup:
    rows: list[tuple[str, str, list[str]]]  # (system, prefix, the conditions listing it, sorted)
    lengths: tuple[int, ...]
    ambiguous: dict[str, list[str]]  # "bnf:0301" -> [asthma, copd]


def _code_lists() -> _Lookup:
    with resources.files("natlink.data").joinpath("conditions.csv").open(encoding="utf-8") as fh:
        listed = list(csv.DictReader(fh))
    owners: dict[tuple[str, str], set[str]] = {}
    for row in listed:
        for system in SYSTEMS:
            for prefix in filter(None, (p.strip().upper() for p in row[system].split(";"))):
                owners.setdefault((system, prefix), set()).add(row["condition"])
    rows = [(s, p, sorted(c)) for (s, p), c in sorted(owners.items())]
    ambiguous = {f"{s}:{p}": c for s, p, c in rows if len(c) > 1}
    return _Lookup(rows, tuple(sorted({len(p) for _s, p, _c in rows})), ambiguous)


def condition_lookup(spark) -> DataFrame:
    """(system, prefix, candidates): the code lists; a prefix listed under several conditions
    (an ambiguous one) has them all as candidates, sorted."""
    schema = T.StructType(
        [
            T.StructField("system", T.StringType(), False),
            T.StructField("prefix", T.StringType(), False),
            T.StructField(CANDIDATES, T.ArrayType(T.StringType(), False), False),
        ]
    )
    return spark.createDataFrame(_code_lists().rows, schema)


def _code_occurrences(records: DataFrame, code_columns: Mapping[str, str]) -> DataFrame:
    """(dataset, record_id, system, code): one row per non-NULL code, upper-cased, trimmed. A cell
    may list several codes separated by ';' (a GP problem list)."""
    present = [c for c in code_columns if c in records.columns]
    cells = F.array(*[F.struct(F.lit(code_columns[c]).alias("system"), F.col(c).alias("code")) for c in present])
    exploded = records.select(C.DATASET, C.RECORD_ID, F.explode(cells).alias("_cell")).where(
        F.col("_cell.code").isNotNull()
    )
    exploded = exploded.select(
        C.DATASET, C.RECORD_ID, "_cell", F.explode(F.split(F.col("_cell.code"), ";")).alias("_code")
    )
    code = F.upper(F.trim(F.col("_code")))
    return exploded.select(C.DATASET, C.RECORD_ID, F.col("_cell.system").alias("system"), code.alias("code")).where(
        F.col("code").isNotNull() & (F.col("code") != "")
    )


def record_conditions(records: DataFrame, code_columns: Mapping[str, str]) -> tuple[DataFrame, DataFrame]:
    """(evidence, code counts) of a token-table frame.

    Evidence: (dataset, record_id, candidates), one row per distinct candidate set of a record:
    ``[condition]`` for a code that names one condition, several for an ambiguous code. Each
    code takes its longest matching prefix. Code counts: (system, outcome, codes) with outcome
    ``matched`` / ``ambiguous`` / ``unmatched``, so nothing is dropped unseen.
    """
    lookup = _code_lists()
    spark = records.sparkSession
    occurrences = _code_occurrences(records, code_columns)
    prefixes = F.array_distinct(F.array(*[F.substring("code", 1, n) for n in lookup.lengths]))
    candidates = occurrences.select("*", F.explode(prefixes).alias("prefix"))
    table = condition_lookup(spark)
    hits = candidates.join(F.broadcast(table), on=["system", "prefix"], how="left")
    best = F.max_by(F.col(CANDIDATES), F.when(F.col(CANDIDATES).isNotNull(), F.length("prefix")))
    per_code = hits.groupBy(C.DATASET, C.RECORD_ID, "system", "code").agg(best.alias(CANDIDATES))
    outcome = (
        F.when(F.col(CANDIDATES).isNull(), F.lit("unmatched"))
        .when(F.size(CANDIDATES) > 1, F.lit("ambiguous"))
        .otherwise(F.lit("matched"))
    )
    classified = per_code.select(C.DATASET, C.RECORD_ID, "system", CANDIDATES, outcome.alias("outcome"))
    evidence = (
        classified.where(F.col(CANDIDATES).isNotNull())
        .groupBy(C.DATASET, C.RECORD_ID, CANDIDATES)
        .agg(F.count(F.lit(1)).alias("_codes"))
        .select(C.DATASET, C.RECORD_ID, CANDIDATES)
    )
    counts = classified.groupBy("system", "outcome").agg(F.count(F.lit(1)).alias("codes"))
    return evidence, counts


# ---------------------------------------------------------------------------------------------
# Persons


def _mode(records: DataFrame, person: str, column: str, *, prefer: Column | None = None) -> DataFrame:
    """(person, column): the most frequent non-NULL value; ``prefer`` (a boolean of the value)
    ranks first; ties go to the greatest value, so the choice is deterministic."""
    rank = prefer if prefer is not None else F.lit(True)
    counted = (
        records.where(F.col(column).isNotNull())
        .groupBy(person, column)
        .agg(F.count(F.lit(1)).alias("_n"))
        .select(person, column, rank.alias("_rank"), "_n")
    )
    return counted.groupBy(person).agg(F.max(F.struct("_rank", "_n", column))[column].alias(column))


def condition_counts(evidence: DataFrame, person: str) -> DataFrame:
    """(person, n_conditions): the fewest distinct conditions consistent with a person's codes.

    ``evidence``: person, candidates. ``U`` = conditions named by unambiguous codes. The
    ambiguous candidate sets that share no condition with ``U`` need at least one more
    condition, or two when no single condition is in all of them. So ``|U| + (0, 1 or 2)``: a
    lower bound (never an over-count), exact for "2 or more" and for unambiguous codes.
    """
    sure = (
        evidence.where(F.size(CANDIDATES) == 1)
        .groupBy(person)
        .agg(F.collect_set(F.element_at(CANDIDATES, 1)).alias("_sure"))
    )
    sets = evidence.where(F.size(CANDIDATES) > 1).groupBy(person, CANDIDATES).agg(F.count(F.lit(1)).alias("_n"))
    open_sets = (
        sets.join(sure, on=person, how="left")
        .where(~F.arrays_overlap(F.col(CANDIDATES), F.coalesce(F.col("_sure"), F.array().cast("array<string>"))))
        .select(person, CANDIDATES)
    )
    k = open_sets.groupBy(person).agg(F.count(F.lit(1)).alias("_k"))
    widest = (
        open_sets.select(person, F.explode(CANDIDATES).alias("_c"))
        .groupBy(person, "_c")
        .agg(F.count(F.lit(1)).alias("_m"))
        .groupBy(person)
        .agg(F.max("_m").alias("_m"))
    )
    extra = F.when(F.col("_k").isNull(), 0).when(F.col("_m") == F.col("_k"), 1).otherwise(2)
    people = evidence.groupBy(person).agg(F.count(F.lit(1)).alias("_evidence"))
    return (
        people.join(sure, on=person, how="left")
        .join(k, on=person, how="left")
        .join(widest, on=person, how="left")
        .select(person, (F.coalesce(F.size("_sure"), F.lit(0)) + extra).cast("int").alias(N_CONDITIONS))
    )


def persons_from_records(records: DataFrame, evidence: DataFrame, person: str) -> DataFrame:
    """(person, age_band, region, n_conditions) pooling every record of each ``person``.

    ``records``: person, dataset, record_id, region, age_band; ``evidence``: dataset,
    record_id, candidates (from :func:`record_conditions`).
    """
    keys = [C.DATASET, C.RECORD_ID]
    counts = condition_counts(records.select(person, *keys).join(evidence, on=keys, how="inner"), person)
    band = _mode(records, person, C.AGE_BAND)
    region = _mode(records, person, C.REGION, prefer=F.col(C.REGION) != UNKNOWN)
    persons = records.groupBy(person).agg(F.count(F.lit(1)).alias("_records"))
    return (
        persons.join(band, on=person, how="left")
        .join(region, on=person, how="left")
        .join(counts, on=person, how="left")
        .select(
            F.col(person),
            F.coalesce(F.col(C.AGE_BAND), F.lit(UNKNOWN)).alias(C.AGE_BAND),
            F.coalesce(F.col(C.REGION), F.lit(UNKNOWN)).alias(C.REGION),
            F.coalesce(F.col(N_CONDITIONS), F.lit(0)).cast("int").alias(N_CONDITIONS),
        )
    )


def _unlinked_persons(records: DataFrame, evidence: DataFrame) -> DataFrame:
    """Each record its own person (what is seen without linkage), with its dataset."""
    unit = F.concat_ws("/", C.DATASET, C.RECORD_ID)
    keyed = records.select("*", unit.alias(UNIT))
    persons = persons_from_records(keyed, evidence, UNIT)
    return persons.join(keyed.select(UNIT, C.DATASET), on=UNIT, how="inner")


def _truth_persons(truth_persons: DataFrame, truth_conditions: DataFrame, rules: AgeBandRules) -> DataFrame:
    from natlink.provider.standardise import age_band

    counts = truth_conditions.groupBy(C.TRUE_PERSON_ID).agg(F.countDistinct(CONDITION).alias(N_CONDITIONS))
    persons = truth_persons.select(C.TRUE_PERSON_ID, C.DATE_OF_BIRTH, C.REGION)  # not its own n_conditions
    return persons.join(counts, on=C.TRUE_PERSON_ID, how="left").select(
        C.TRUE_PERSON_ID,
        F.coalesce(age_band(F.col(C.DATE_OF_BIRTH).cast("date"), rules), F.lit(UNKNOWN)).alias(C.AGE_BAND),
        F.coalesce(F.col(C.REGION), F.lit(UNKNOWN)).alias(C.REGION),
        F.coalesce(F.col(N_CONDITIONS), F.lit(0)).cast("int").alias(N_CONDITIONS),
    )


# ---------------------------------------------------------------------------------------------
# Prevalence


def prevalence(persons: DataFrame, method: str, min_conditions: int = 2) -> DataFrame:
    """Prevalence of ``n_conditions >= min_conditions`` overall, by age band, by region and by
    both (one ``cube``), in :data:`PREVALENCE_SCHEMA` (``suppressed`` False: see :func:`suppress`)."""
    multimorbid = F.when(F.col(N_CONDITIONS) >= min_conditions, 1).otherwise(0)
    cubed = persons.select(C.AGE_BAND, C.REGION, multimorbid.alias("_mm")).cube(C.AGE_BAND, C.REGION).agg(
        F.count(F.lit(1)).alias("persons"),
        F.sum("_mm").cast("long").alias("multimorbid"),
        F.grouping(C.AGE_BAND).alias("_ga"),
        F.grouping(C.REGION).alias("_gr"),
    )
    level = (
        F.when((F.col("_ga") == 1) & (F.col("_gr") == 1), F.lit("overall"))
        .when(F.col("_gr") == 1, F.lit("age_band"))
        .when(F.col("_ga") == 1, F.lit("region"))
        .otherwise(F.lit("age_band_region"))
    )
    return cubed.select(
        F.lit(method).alias("method"),
        level.alias("level"),
        F.when(F.col("_ga") == 1, F.lit(ALL)).otherwise(F.col(C.AGE_BAND)).alias(C.AGE_BAND),
        F.when(F.col("_gr") == 1, F.lit(ALL)).otherwise(F.col(C.REGION)).alias(C.REGION),
        F.col("persons").cast("long").alias("persons"),
        F.col("multimorbid"),
        (F.col("multimorbid") / F.col("persons")).alias("prevalence"),
        F.lit(False).alias("suppressed"),
    )


def suppress(table: DataFrame, min_cell_count: int) -> DataFrame:
    """Small-cell suppression: a count from 1 to ``min_cell_count - 1`` is withheld, and the
    prevalence with it (it would give the count back). Secondary suppression (differencing
    against the totals) is not attempted: this table is for synthetic and aggregate review."""
    if min_cell_count <= 1:
        return table
    small = lambda c: (F.col(c) >= 1) & (F.col(c) < min_cell_count)  # noqa: E731
    hidden = small("persons") | small("multimorbid")
    return table.select(
        "method",
        "level",
        C.AGE_BAND,
        C.REGION,
        F.when(~small("persons"), F.col("persons")).alias("persons"),
        F.when(~hidden, F.col("multimorbid")).alias("multimorbid"),
        F.when(~hidden, F.col("prevalence")).alias("prevalence"),
        (F.col("suppressed") | hidden).alias("suppressed"),
    )


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class CaseStudyResult:
    rows: list[dict[str, Any]]  # the (suppressed) prevalence table, collected (it is small)
    summary: dict[str, Any] = field(default_factory=dict)
    table_path: Path | None = None
    summary_path: Path | None = None

    def overall(self, method: str) -> float | None:
        for r in self.rows:
            if r["method"] == method and r["level"] == "overall":
                return r["prevalence"]
        return None

    def by(self, level: str, method: str) -> dict[str, float | None]:
        key = {"age_band": C.AGE_BAND, "region": C.REGION}[level]
        return {r[key]: r["prevalence"] for r in self.rows if r["method"] == method and r["level"] == level}

    def summary_lines(self) -> list[str]:
        lines = []
        for method in METHODS:
            s = self.summary["overall"].get(method)
            if s is None:
                continue
            value = "suppressed" if s["prevalence"] is None else f"{s['prevalence']:.4f}"
            lines.append(f"{method}: prevalence={value} multimorbid={s['multimorbid']} persons={s['persons']}")
        return lines


def _age_band_rules(manifests: Sequence[Any]) -> AgeBandRules:
    seen = {m.dataset: m.get("age_band") for m in manifests}
    missing = sorted(d for d, rules in seen.items() if rules is None)
    if missing:
        raise CaseStudyInputError(
            f"token tables {missing} carry no age band (set age_band in their dataset config and re-tokenise)"
        )
    distinct = {json.dumps(r, sort_keys=True) for r in seen.values()}
    if len(distinct) > 1:
        raise CaseStudyInputError(f"token tables band ages differently, so their bands do not agree: {seen}")
    return AgeBandRules.model_validate(next(iter(seen.values())))


def _records(tokens: DataFrame, code_columns: Mapping[str, str]) -> DataFrame:
    present = [c for c in code_columns if c in tokens.columns]
    if not present:
        raise CaseStudyInputError(
            f"token tables keep none of the condition code columns {sorted(code_columns)}; "
            f"kept columns present: {sorted(c for c in tokens.columns if not c.startswith(('tk_', 'bf_')))}"
        )
    return tokens.select(C.DATASET, C.RECORD_ID, C.REGION, C.AGE_BAND, *present)


def _with_person(records: DataFrame, mapping: DataFrame, person: str, what: str) -> DataFrame:
    """records joined to a (dataset, record_id, person) mapping; every record must have one."""
    keys = [C.DATASET, C.RECORD_ID]
    joined = records.join(mapping.select(*keys, person), on=keys, how="left").cache()
    unmapped = joined.where(F.col(person).isNull()).count()
    if unmapped:
        joined.unpersist()
        raise ReconciliationError(f"{unmapped} token records have no row in the {what}")
    return joined


def run(
    spark,
    *,
    tables: str | Path,
    manifests: Sequence[Any],
    truth_dir: str | Path | None = None,
    out: str | Path | None = None,
    cfg: CaseStudyConfig | None = None,
) -> CaseStudyResult:
    """Compute the case study from a link run's ``tables`` and its token ``manifests``.

    ``truth_dir``: the synthetic generator's output folder (``truth``, ``truth_persons``,
    ``truth_conditions``); without it only ``linked`` and ``unlinked`` are computed. ``out``:
    where to write ``prevalence`` (Delta) and ``summary.json``.
    """
    from natlink.tokens.manifest import as_manifest
    from natlink.tokens.reader import read_token_tables

    cfg = cfg or CaseStudyConfig()
    items = [as_manifest(m) for m in manifests]
    rules = _age_band_rules(items)
    tokens = read_token_tables(spark, items)
    records = _records(tokens, cfg.code_columns).cache()
    evidence, code_counts = record_conditions(records, cfg.code_columns)
    evidence = evidence.cache()

    view = completed_view(spark, tables)  # the last completed run: a run in progress is not seen
    if view is None:
        raise CaseStudyInputError(f"no completed link run under {tables} (run `natlink link` first)")
    clusters = view.table("clusters")
    run_ids = sorted(r[0] for r in clusters.select(C.RUN_ID).groupBy(C.RUN_ID).count().collect())

    parts: list[DataFrame] = []
    cached: list[DataFrame] = [records, evidence]
    try:
        linked_records = _with_person(records, clusters, C.PERSON_ID, "clusters table")
        cached.append(linked_records)
        parts.append(prevalence(persons_from_records(linked_records, evidence, C.PERSON_ID), "linked", cfg.min_conditions))
        unlinked = _unlinked_persons(records, evidence).cache()
        cached.append(unlinked)
        parts.append(prevalence(unlinked, "unlinked", cfg.min_conditions))
        by_dataset = (
            unlinked.groupBy(C.DATASET)
            .agg(
                F.count(F.lit(1)).alias("records"),
                F.sum(F.when(F.col(N_CONDITIONS) >= cfg.min_conditions, 1).otherwise(0)).alias("multimorbid"),
                F.sum(F.when(F.col(N_CONDITIONS) >= 1, 1).otherwise(0)).alias("with_condition"),
            )
            .collect()
        )
        if truth_dir is not None:
            truth_dir = Path(truth_dir)
            truth = spark.read.parquet(str(truth_dir / "truth"))
            true_records = _with_person(records, truth, C.TRUE_PERSON_ID, f"truth table {truth_dir / 'truth'}")
            cached.append(true_records)
            parts.append(
                prevalence(persons_from_records(true_records, evidence, C.TRUE_PERSON_ID), "perfect_linkage", cfg.min_conditions)
            )
            true_persons = _truth_persons(
                spark.read.parquet(str(truth_dir / "truth_persons")),
                spark.read.parquet(str(truth_dir / "truth_conditions")),
                rules,
            )
            parts.append(prevalence(true_persons, "truth", cfg.min_conditions))
        table = parts[0]
        for part in parts[1:]:
            table = table.unionByName(part)
        table = suppress(table, cfg.min_cell_count)
        ordered = table.orderBy("method", "level", C.AGE_BAND, C.REGION)
        rows = [r.asDict() for r in ordered.collect()]
        codes = {f"{r['system']}:{r['outcome']}": int(r["codes"]) for r in code_counts.collect()}
    finally:
        for frame in cached:
            frame.unpersist()

    rows.sort(key=lambda r: (METHODS.index(r["method"]), LEVELS.index(r["level"]), r[C.AGE_BAND], r[C.REGION]))
    overall = {
        r["method"]: {k: r[k] for k in ("persons", "multimorbid", "prevalence", "suppressed")}
        for r in rows
        if r["level"] == "overall"
    }
    summary = {
        "min_conditions": cfg.min_conditions,
        "min_cell_count": cfg.min_cell_count,
        "link_run_ids": run_ids,
        "datasets": sorted(m.dataset for m in items),
        "age_band": rules.model_dump(mode="json"),
        "overall": overall,
        "unlinked_by_dataset": {
            r[C.DATASET]: {"records": int(r["records"]), "multimorbid": int(r["multimorbid"]), "with_condition": int(r["with_condition"])}
            for r in sorted(by_dataset, key=lambda r: r[C.DATASET])
        },
        "codes": codes,
        "ambiguous_prefixes": _code_lists().ambiguous,
    }
    result = CaseStudyResult(rows=rows, summary=summary)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = delta.write(spark.createDataFrame(rows, PREVALENCE_SCHEMA), str(out / "prevalence"), mode="overwrite")
        result.table_path = out / "prevalence"
        summary["prevalence_table_version"] = written.version
        result.summary_path = out / "summary.json"
        result.summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    log.info("case study: %s", "; ".join(result.summary_lines()))
    return result


# ---------------------------------------------------------------------------------------------
# Chart (vega-lite: no plotting dependency; rendered by the libraries bundled with Splink)


def prevalence_chart_spec(rows: Sequence[Mapping[str, Any]], *, title: str = "Multimorbidity by age band") -> dict[str, Any]:
    """A vega-lite spec: prevalence by age band, one line per method (suppressed cells omitted)."""
    values = [
        {"method": r["method"], "age_band": r[C.AGE_BAND], "prevalence": r["prevalence"]}
        for r in rows
        if r["level"] == "age_band" and r["prevalence"] is not None
    ]
    bands = sorted({v["age_band"] for v in values}, key=band_order)
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": 520,
        "height": 300,
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "age_band", "type": "ordinal", "sort": bands, "title": "age band"},
            "y": {"field": "prevalence", "type": "quantitative", "axis": {"format": "%"}, "title": "2+ conditions"},
            "color": {"field": "method", "type": "nominal", "sort": list(METHODS)},
            "tooltip": [{"field": "method"}, {"field": "age_band"}, {"field": "prevalence", "format": ".1%"}],
        },
    }


def band_order(label: str) -> tuple[int, str]:
    lower = label.split("-")[0].rstrip("+")
    return (int(lower), label) if lower.isdigit() else (10**6, label)


def write_chart_html(spec: Mapping[str, Any], path: str | Path) -> Path:
    """A self-contained HTML page of a vega-lite spec (libraries inline: works offline)."""
    from splink.internals.html_utils import chart_html  # splink is pinned; its bundled vega libraries

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(chart_html(dict(spec), inline=True, fullhtml=True), encoding="utf-8")
    return path
