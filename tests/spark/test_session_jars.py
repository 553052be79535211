"""The local session's jars work on this Spark line: Splink's similarity UDFs and delta-spark."""

from __future__ import annotations

from pyspark.sql import types as T


def test_splinks_similarity_jar_scores_on_this_spark(spark):
    # MARTHA / MARHTA is the textbook Jaro-Winkler example: Jaro 0.944, Winkler 0.961 (prefix 3, p 0.1).
    spark.udf.registerJavaFunction("jaro_winkler", "uk.gov.moj.dash.linkage.JaroWinklerSimilarity", T.DoubleType())
    spark.udf.registerJavaFunction("jaro_sim", "uk.gov.moj.dash.linkage.JaroSimilarity", T.DoubleType())
    row = spark.sql("SELECT jaro_winkler('MARTHA', 'MARHTA') AS jw, jaro_sim('MARTHA', 'MARHTA') AS j").first()
    assert round(row.jw, 3) == 0.961 and round(row.j, 3) == 0.944


def test_delta_sql_extension_is_on(spark):
    # MERGE, OPTIMIZE and VACUUM are SQL of Delta's extension; the catalog makes delta.`path` work.
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert spark.conf.get("spark.sql.catalog.spark_catalog") == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
