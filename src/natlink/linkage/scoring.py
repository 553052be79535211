"""Score candidate pairs with a trained Splink model, as native Spark expressions.

The model JSON is turned into Splink's own SQL pieces (level conditions, level match weights,
term-frequency adjustments, the prior and the weight-to-probability formula), assembled into
one match-weight part per comparison, transpiled to Spark SQL and applied with ``selectExpr``
inside natlink's plan. The scores are therefore
Splink's scores (a test checks equality with ``linker.inference.predict``), without Splink's
per-step materialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink.errors import ModelError

LINK_TYPES = ("dedupe_only", "link_only", "link_and_dedupe")  # link_and_dedupe: every pair, as dedupe_only


@dataclass(frozen=True)
class CompiledModel:
    part_exprs: list[str]  # one match-weight part per comparison, TF adjustment included
    match_weight_expr: str
    match_probability_expr: str
    columns: list[str]  # input columns the expressions read (without _l/_r)
    tf_columns: list[str]  # columns needing term-frequency lookups
    link_type: str

    @property
    def cross_source(self) -> bool:
        """Only pairs of records from different datasets are scored (``link_only``)."""
        return self.link_type == "link_only"

    @property
    def pair_columns(self) -> list[str]:
        """What each side of a pair must carry to be scored: the input columns and ``tf_<column>``s."""
        return [*self.columns, *[f"tf_{c}" for c in self.tf_columns]]


def _spark_sql(expr: str) -> str:
    import splink.internals.spark.database_api  # noqa: F401  registers the 'customspark' dialect

    return sqlglot.transpile(f"SELECT {expr}", read="spark", write="customspark")[0][len("SELECT "):]


def _part_sql(cc: Any) -> str:
    """One comparison's match weight straight from its level conditions (Splink's SQL pieces).

    Splink computes a gamma column (which level) and then weights by gamma. Spark inlines the
    gamma CASE into every branch that tests it, and pushes the threshold filter into the join,
    so the per-pair expression grows with levels squared (with TF on, 1M records predicted 4-5x
    slower). Here each level's own condition selects its weight, and its TF adjustment, once.
    """
    gamma = cc._gamma_column_name
    whens = []
    for level in cc.comparison_levels:
        weight = f"cast({level._match_weight} as float8)"
        # Splink's TF SQL is "WHEN <gamma> = <value> THEN <adjustment>": keep the adjustment.
        tf_sql = " ".join(level._tf_adjustment_sql(gamma, cc.comparison_levels).split())
        head = f"WHEN {gamma} = {level.comparison_vector_value} THEN "
        if not tf_sql.startswith(head):
            raise ModelError(f"comparison {cc.output_column_name}: unexpected Splink TF SQL shape")
        tf_body = tf_sql[len(head):]
        value = weight if tf_body.lower() == "cast(0 as float8)" else f"{weight} + ({tf_body})"
        if level._is_else_level:
            whens.append(f"ELSE {value}")
        else:
            whens.append(f"WHEN {level.sql_condition} THEN {value}")
    return "CASE " + " ".join(whens) + f" END AS {cc._mw_column_name}"


def compile_model(settings: dict[str, Any]) -> CompiledModel:
    from splink.internals.predict import _combine_prior_and_mws
    from splink.internals.settings_creator import SettingsCreator

    try:
        st = SettingsCreator.from_path_or_dict(settings).get_settings("spark")
    except Exception as err:  # noqa: BLE001 - surface as a named error
        raise ModelError(f"model settings cannot be read by Splink: {type(err).__name__}") from None
    if st._link_type not in LINK_TYPES:
        raise ModelError(f"model settings: link_type must be one of {LINK_TYPES}, not {st._link_type!r}")
    comparisons = st.core_model_settings.comparisons
    parts = [_part_sql(cc) for cc in comparisons]
    mw, mp = _combine_prior_and_mws(
        st.core_model_settings.probability_two_random_records_match, [cc._mw_column_name for cc in comparisons], None
    )
    columns: list[str] = []
    tf_columns: list[str] = []
    for cc in comparisons:
        for col in cc._input_columns_used_by_case_statement:
            columns.append(col.unquote().name)
        for level in cc.comparison_levels:
            if level._has_tf_adjustments:
                tf_columns.append(level._tf_adjustment_input_column.unquote().name)
    return CompiledModel(
        part_exprs=[_spark_sql(e) for e in parts],
        match_weight_expr=_spark_sql(mw),
        match_probability_expr=_spark_sql(mp),
        columns=list(dict.fromkeys(columns)),
        tf_columns=list(dict.fromkeys(tf_columns)),
        link_type=st._link_type,
    )


def term_frequencies(records: DataFrame, column: str, total: int) -> DataFrame:
    """Relative frequency of each value of ``column`` among its ``total`` non-null values (Splink's tf_ table).

    The total is a literal: joining a one-row total onto the counts cost more than the counts
    themselves (measured, 100k records).
    """
    share = F.count(F.lit(1)).cast("double") / F.lit(float(max(int(total), 1)))
    return records.where(F.col(column).isNotNull()).groupBy(column).agg(share.alias(f"tf_{column}"))


def frequency_tables(records: DataFrame, model: CompiledModel) -> dict[str, DataFrame]:
    """One frequency table per TF-adjusted column of ``model`` (one job for all the totals)."""
    if not model.tf_columns:
        return {}
    totals = records.agg(*[F.count(F.col(c)).alias(c) for c in model.tf_columns]).first().asDict()
    return {column: term_frequencies(records, column, totals[column]) for column in model.tf_columns}


def with_term_frequencies(records: DataFrame, model: CompiledModel, tables: dict[str, DataFrame] | None = None) -> DataFrame:
    """``records`` with a ``tf_<column>`` for each TF-adjusted column.

    ``tables`` defaults to :func:`frequency_tables` of ``records``: the frequencies are of the
    population being scored and are computed here, where it is scored; natlink never writes them
    out (tests check model files and output tables).
    """
    for column, table in (frequency_tables(records, model) if tables is None else tables).items():
        records = records.join(table, on=column, how="left")
    return records


def score(pairs: DataFrame, model: CompiledModel, *, keep: list[str], threshold_match_weight: float | None = None) -> DataFrame:
    """Add ``match_weight`` and ``match_probability`` to pairs holding ``<col>_l``/``<col>_r`` columns."""
    parts = pairs.selectExpr(*keep, *model.part_exprs)
    scored = parts.selectExpr(*keep, f"{model.match_weight_expr} AS match_weight", f"{model.match_probability_expr} AS match_probability")
    if threshold_match_weight is not None:
        scored = scored.where(F.col("match_weight") >= threshold_match_weight)
    return scored


def probability_to_weight(p: float) -> float:
    import math

    return math.log2(p / (1 - p))
