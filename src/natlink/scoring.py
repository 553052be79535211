"""Score candidate pairs with a trained Splink model, as native Spark expressions.

The model JSON is turned into Splink's own SQL for comparison vectors, match-weight parts
(including term-frequency adjustments) and the final match weight / probability, transpiled
to Spark SQL, and applied with ``selectExpr`` inside natlink's plan. The scores are therefore
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


@dataclass(frozen=True)
class CompiledModel:
    gamma_exprs: list[str]  # CASE ... END AS gamma_<comparison>
    weight_exprs: list[str]  # match-weight parts incl. tf adjustments
    match_weight_expr: str
    match_probability_expr: str
    columns: list[str]  # input columns the expressions read (without _l/_r)
    tf_columns: list[str]  # columns needing term-frequency lookups
    link_type: str


def _spark_sql(expr: str) -> str:
    import splink.internals.spark.database_api  # noqa: F401  registers the 'customspark' dialect

    return sqlglot.transpile(f"SELECT {expr}", read="spark", write="customspark")[0][len("SELECT "):]


def compile_model(settings: dict[str, Any]) -> CompiledModel:
    from splink.internals.predict import _combine_prior_and_mws
    from splink.internals.settings import Settings
    from splink.internals.settings_creator import SettingsCreator

    try:
        st = SettingsCreator.from_path_or_dict(settings).get_settings("spark")
    except Exception as err:  # noqa: BLE001 - surface as a named error
        raise ModelError(f"model settings cannot be read by Splink: {type(err).__name__}") from None
    comparisons = st.core_model_settings.comparisons
    gamma = [
        e for e in st._columns_to_select_for_comparison_vector_values if e.strip().upper().startswith("CASE")
    ]
    parts = Settings.columns_to_select_for_match_weight_parts(
        unique_id_input_columns=st.column_info_settings.unique_id_input_columns,
        comparisons=comparisons,
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=[],
    )
    weights = [e for e in parts if e.strip().upper().startswith("CASE")]
    terms: list[str] = []
    for cc in comparisons:
        terms.extend(cc._match_weight_columns_to_sum)
    mw, mp = _combine_prior_and_mws(st.core_model_settings.probability_two_random_records_match, terms, None)
    columns: list[str] = []
    tf_columns: list[str] = []
    for cc in comparisons:
        for col in cc._input_columns_used_by_case_statement:
            columns.append(col.unquote().name)
        for level in cc.comparison_levels:
            if level._has_tf_adjustments:
                tf_columns.append(level._tf_adjustment_input_column.unquote().name)
    return CompiledModel(
        gamma_exprs=[_spark_sql(e) for e in gamma],
        weight_exprs=[_spark_sql(e) for e in weights],
        match_weight_expr=_spark_sql(mw),
        match_probability_expr=_spark_sql(mp),
        columns=list(dict.fromkeys(columns)),
        tf_columns=list(dict.fromkeys(tf_columns)),
        link_type=st._link_type,
    )


def term_frequencies(records: DataFrame, column: str, total: int | None = None) -> DataFrame:
    """Relative frequency of each value of ``column`` among its non-null values (Splink's tf_ table).

    ``total`` (the non-null count) is passed as a literal when known: joining a one-row total
    onto the counts cost more than the counts themselves (measured, 100k records).
    """
    if total is None:
        total = records.agg(F.count(F.col(column))).first()[0]
    share = F.count(F.lit(1)).cast("double") / F.lit(float(max(int(total), 1)))
    return records.where(F.col(column).isNotNull()).groupBy(column).agg(share.alias(f"tf_{column}"))


def with_term_frequencies(records: DataFrame, model: CompiledModel) -> DataFrame:
    """``records`` with a ``tf_<column>`` for each TF-adjusted column (one job for the totals).

    The frequencies are of the population being scored and are computed here, where it is
    scored; natlink never writes them out (tests check model files and output tables).
    """
    if not model.tf_columns:
        return records
    totals = records.agg(*[F.count(F.col(c)).alias(c) for c in model.tf_columns]).first().asDict()
    for column in model.tf_columns:
        records = records.join(term_frequencies(records, column, totals[column]), on=column, how="left")
    return records


def score(pairs: DataFrame, model: CompiledModel, *, keep: list[str], threshold_match_weight: float | None = None) -> DataFrame:
    """Add ``match_weight`` and ``match_probability`` to pairs holding ``<col>_l``/``<col>_r`` columns."""
    vectors = pairs.selectExpr(*keep, *model.gamma_exprs, *[f"tf_{c}_l" for c in model.tf_columns], *[f"tf_{c}_r" for c in model.tf_columns])
    parts = vectors.selectExpr(*keep, *model.weight_exprs)
    scored = parts.selectExpr(*keep, f"{model.match_weight_expr} AS match_weight", f"{model.match_probability_expr} AS match_probability")
    if threshold_match_weight is not None:
        scored = scored.where(F.col("match_weight") >= threshold_match_weight)
    return scored


def probability_to_weight(p: float) -> float:
    import math

    return math.log2(p / (1 - p))
