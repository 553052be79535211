"""Locate a person's records: which datasets hold them, and how many records each.

The probe is one person's *tokens* (made with the same key, e.g. by ``natlink tokenise`` at a
provider), or a single token value of one column. A token probe is scored against the
population with the linkage model (blocking narrows the candidates first); the best candidate
at or above the threshold gives the person id, and ``person_index`` gives the datasets. The
linkage centre never needs plaintext or the key for this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink.linkage import blocking
from natlink.linkage import scoring
from natlink import columns as C
from natlink.errors import ConfigError, DiscoveryRefusedError, InputDataError
from natlink.store import delta
from natlink.linkage.runs import RunView, completed_view
from natlink.linkage.engine import compact_columns, needed_columns

PROBE_ID = "__probe__"


@dataclass(frozen=True)
class Discovery:
    person_id: str | None
    match_probability: float | None
    datasets: dict[str, int]  # dataset -> record count


def _view(spark, tables: Path) -> RunView:
    """The last completed run's tables (a run in progress is invisible until it completes)."""
    view = completed_view(spark, tables)
    if view is None:
        raise InputDataError(f"no completed link run under {tables}: run `natlink link` first")
    return view


def _index(view: RunView, person_ids: list[str]) -> dict[str, dict[str, int]]:
    index = view.table("person_index").where(F.col(C.PERSON_ID).isin(person_ids))
    out: dict[str, dict[str, int]] = {p: {} for p in person_ids}
    for row in index.collect():
        out[row[C.PERSON_ID]][row[C.DATASET]] = int(row["record_count"])
    return out


def _person_of(view: RunView, unique_ids: DataFrame) -> DataFrame:
    clusters = view.table("clusters").select(C.UNIQUE_ID, C.PERSON_ID)
    return clusters.join(unique_ids, on=C.UNIQUE_ID, how="inner")


def by_token(
    spark,
    *,
    tables: str | Path,
    population: DataFrame,
    column: str,
    value: str,
    allowed_columns: Sequence[str] = ("tk_nhs_number",),
    max_persons: int = 1,
    who: str | None = None,
    scheme: Any = None,
) -> list[Discovery]:
    """The person holding a record whose ``column`` equals the token ``value``, with their datasets.

    Block-salted tables (``scheme``: :class:`natlink.tokens.salted.SaltedScheme`) hold no
    ``tk_nhs_number``: a lookup of a column that is a prediction rule on its own reads that rule's
    block key, so the probe is the value's block key (``natlink.tokens.salted.block_probe``).

    Only ``allowed_columns`` may be looked up, and a token matching more than ``max_persons``
    persons is refused (:class:`~natlink.errors.DiscoveryRefusedError`, a count only): a lookup
    finds a person, it cannot list a group. Every lookup is audited (:func:`audit_rows`).
    """
    tables = Path(tables)
    if column not in allowed_columns:
        _audit(spark, tables, who, "token", column, value, None, "refused: column not allowed")
        raise DiscoveryRefusedError(f"discover: {column!r} is not an allowed lookup column (allowed: {sorted(allowed_columns)})")
    physical = column
    if scheme is not None:
        field = column[len(C.TOKEN_PREFIX):]
        alone = [i for i, rule in enumerate(scheme.rules) if rule == (field,)]
        if not alone:
            raise InputDataError(f"{column!r} is not a prediction rule on its own in the salted tables, so no block key answers it")
        physical = scheme.block_column(alone[0])
    if physical not in population.columns or not C.is_token(physical):
        raise InputDataError(f"{column!r} is not a token column of the population")
    hits = population.where(F.col(physical) == F.lit(value)).select(C.UNIQUE_ID)
    view = _view(spark, tables)
    persons = sorted({r[C.PERSON_ID] for r in _person_of(view, hits).collect()})
    if len(persons) > max_persons:
        _audit(spark, tables, who, "token", column, value, len(persons), "refused: token shared by a group")
        raise DiscoveryRefusedError(
            f"discover: the token matches {len(persons)} persons, more than the {max_persons} one lookup may return "
            "(a token shared by a group is not a person's); refused and audited"
        )
    index = _index(view, persons) if persons else {}
    _audit(spark, tables, who, "token", column, value, len(persons), "answered")
    return [Discovery(p, None, index[p]) for p in persons]


AUDIT_TABLE = "discover_audit"
_AUDIT_SCHEMA = (
    "at timestamp, who string, kind string, token_column string, probe_sha256 string, persons int, outcome string"
)


def _audit(spark, tables: Path, who: str | None, kind: str, column: str | None, value: str | None,
           persons: int | None, outcome: str) -> None:
    """One row per lookup in ``TABLES/discover_audit``: when, who, what kind, a hash of the probe
    (never the token itself), how many persons it found and whether it was answered."""
    import getpass
    import hashlib
    from datetime import datetime, timezone

    digest = hashlib.sha256(value.encode()).hexdigest()[:16] if value is not None else None
    user = who or os.environ.get("NATLINK_USER") or getpass.getuser()
    row = [(datetime.now(timezone.utc), user, kind, column, digest, persons, outcome)]
    delta.write(spark.createDataFrame(row, _AUDIT_SCHEMA), str(tables / AUDIT_TABLE), mode="append")


def audit_rows(spark, tables: str | Path) -> list[dict[str, Any]]:
    """The discovery audit of ``tables``, oldest first (empty when nobody has looked anyone up)."""
    path = Path(tables) / AUDIT_TABLE
    if not delta.exists(str(path)):
        return []
    return [r.asDict() for r in delta.read(spark, str(path)).orderBy("at").collect()]


@dataclass
class Population:
    """A population prepared once for any number of probes (cached; :meth:`release` frees it).

    ``records``: unique id, the model's and the blocking rules' columns compacted as for linking,
    and a ``tf_<column>`` per term-frequency column; ``frequencies``: those frequency tables, which
    a probe's tokens are looked up in. Frequencies are the population's own, as in a link run.
    """

    records: DataFrame
    frequencies: dict[str, DataFrame]
    model: scoring.CompiledModel
    rules: list[blocking.Rule]
    needed: list[str]

    def release(self) -> None:
        for frame in [self.records, *self.frequencies.values()]:
            frame.unpersist()


def prepare(population: DataFrame, settings: dict[str, Any]) -> Population:
    """Compact ``population`` (token tables with a unique id) and attach its term frequencies."""
    model = scoring.compile_model(settings)
    rules = blocking.rules_from_settings(settings)
    needed = needed_columns(model, rules)
    compact = population.select(C.UNIQUE_ID, *compact_columns(population, needed))
    frequencies = {column: table.cache() for column, table in scoring.frequency_tables(compact, model).items()}
    pop = scoring.with_term_frequencies(compact, model, frequencies).cache()
    pop.count()
    return Population(pop, frequencies, model, rules, needed)


def by_probe(
    spark,
    *,
    tables: str | Path,
    population: DataFrame | Population,
    probe: DataFrame,
    threshold: float,
    settings: dict[str, Any] | None = None,
) -> Discovery:
    """Score one person's tokens against the population; the best match at/above threshold wins.

    ``population`` is either token tables (prepared for this probe with ``settings``, then
    released) or a :class:`Population` from :func:`prepare`, reused across probes.
    """
    if isinstance(population, Population):
        return _by_probe(spark, Path(tables), population, probe, threshold)
    if settings is None:
        raise ConfigError("discover by probe needs the model settings to prepare a population of token tables")
    prepared = prepare(population, settings)
    try:
        return _by_probe(spark, Path(tables), prepared, probe, threshold)
    finally:
        prepared.release()


def _by_probe(spark, tables: Path, population: Population, probe: DataFrame, threshold: float) -> Discovery:
    model, needed = population.model, population.needed
    probe_row = probe.withColumn(C.UNIQUE_ID, F.lit(PROBE_ID))
    for c in needed:
        if c not in probe_row.columns:
            probe_row = probe_row.withColumn(c, F.lit(None).cast("string"))
    prb = scoring.with_term_frequencies(probe_row.select(C.UNIQUE_ID, *compact_columns(probe_row, needed)), model, population.frequencies)
    pop = population.records
    columns = [C.UNIQUE_ID, *model.pair_columns]
    parts = []
    for rule in population.rules:
        keys = list(rule.keys)
        near = pop.join(prb.select(*keys), on=keys, how="left_semi").select(*columns).alias("r")
        left = prb.select(*columns).alias("l")
        parts.append(left.join(near, on=blocking.agree(rule), how="inner").select(
            *[F.col(f"l.{c}").alias(f"{c}_l") for c in columns], *[F.col(f"r.{c}").alias(f"{c}_r") for c in columns]
        ))
    pairs = reduce(DataFrame.unionByName, parts).dropDuplicates([f"{C.UNIQUE_ID}_r"])
    scored = scoring.score(pairs, model, keep=[f"{C.UNIQUE_ID}_r"], threshold_match_weight=scoring.probability_to_weight(threshold))
    best = scored.orderBy(F.desc("match_weight"), F.asc(f"{C.UNIQUE_ID}_r")).limit(1).collect()
    _audit(spark, tables, None, "probe", None, None, 1 if best else 0, "answered")
    if not best:
        return Discovery(None, None, {})
    uid = best[0][f"{C.UNIQUE_ID}_r"]
    view = _view(spark, tables)
    person = _person_of(view, spark.createDataFrame([(uid,)], f"{C.UNIQUE_ID} string")).collect()
    if not person:
        return Discovery(None, float(best[0]["match_probability"]), {})
    pid = person[0][C.PERSON_ID]
    return Discovery(pid, float(best[0]["match_probability"]), _index(view, [pid])[pid])


def probe_frame(spark, tokens: dict[str, Any]) -> DataFrame:
    """One person's tokens (column -> token or None) as a one-row frame of string columns."""
    from pyspark.sql import types as T

    names = sorted(k for k in tokens if C.is_token(k))
    schema = T.StructType([T.StructField(n, T.StringType(), True) for n in names])
    return spark.createDataFrame([tuple(tokens[n] for n in names)], schema)


def read_probe_file(path: str | Path) -> dict[str, Any] | Path:
    """A probe file, checked before any Spark work: one person's tokens as a JSON object of ``tk_*``
    columns (returned as a dict), or the manifest of a token table of that one person (its path).

    How a probe is made: the provider that holds the person's identifiers tokenises a one-row CSV
    of them with ``natlink tokenise`` (same dataset config shape, same key as the population) and
    sends the manifest and table; or writes the row's ``tk_*`` columns as a JSON object.
    """
    import json

    from natlink.tokens.manifest import MANIFEST_KIND

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"discover: probe file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"discover: probe file {path} is not JSON") from None
    if isinstance(data, dict) and data.get("kind") == MANIFEST_KIND:
        return path
    tokens = {k: v for k, v in data.items() if C.is_token(k)} if isinstance(data, dict) else {}
    if not tokens or not all(v is None or isinstance(v, str) for v in tokens.values()):
        raise ConfigError(
            f"discover: probe file {path} is neither a JSON object of token columns (tk_*: token or null) "
            "nor a token-table manifest (natlink tokenise)"
        )
    return tokens


def probe_from(spark, probe: dict[str, Any] | Path, *, population_fingerprint: str | None = None) -> DataFrame:
    """The probe as a one-row frame: from :func:`read_probe_file`'s tokens, or from a one-record token
    table (read through its signed manifest; refused under another key than the population's)."""
    from natlink.errors import FingerprintMismatchError
    from natlink.tokens.reader import load_tokens

    if isinstance(probe, dict):
        return probe_frame(spark, probe)
    table, fingerprint = load_tokens(spark, [probe])
    if population_fingerprint is not None and fingerprint != population_fingerprint:
        raise FingerprintMismatchError(
            f"discover: probe {probe} was tokenised under key fingerprint {fingerprint}, the population under {population_fingerprint}"
        )
    probe_row = table.select(*[c for c in table.columns if C.is_token(c)])  # the table's own token types
    if probe_row.limit(2).count() != 1:
        raise InputDataError(f"discover: probe {probe} must hold exactly one record (a probe is one person)")
    return probe_row


def load_population(spark, manifests: Sequence[dict[str, Any]]) -> DataFrame:
    from natlink.linkage.run import load_tokens

    tokens, _fingerprint = load_tokens(spark, manifests)
    return tokens
