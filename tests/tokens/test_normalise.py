"""Native normalisation before hashing: text, NHS numbers, postcodes and their parts, phonetic codes."""

from __future__ import annotations

from pyspark.sql import functions as F

from natlink.tokens import normalise


def test_text_nhs_numbers_and_postcodes_normalise_natively(spark):
    df = spark.createDataFrame(
        [("\t a  b\u2003", "999 000-0018", "sw1a 1aa"), ("   ", " ", "m11ae"), (None, None, "AB1"), ("x", "1", "")],
        "t string, n string, p string",
    )
    postcode = normalise.normalise_postcode(F.col("p"))
    got = df.select(
        normalise.normalise_text(F.col("t")), normalise.normalise_nhs_number(F.col("n")), postcode,
        normalise.postcode_district(postcode), normalise.postcode_sector(postcode),
    ).collect()
    # By hand: whitespace runs (Unicode spaces too) become one space, trimmed, upper case; blank -> NULL;
    # NHS numbers lose spaces and hyphens; 5-7 alphanumerics are re-spaced OUTWARD INWARD, and only
    # that shape has a district (outward code) and a sector (outward code + first inward character).
    assert [tuple(r) for r in got] == [
        ("A B", "9990000018", "SW1A 1AA", "SW1A", "SW1A 1"),
        (None, None, "M1 1AE", "M1", "M1 1"),
        (None, None, "AB1", None, None),
        ("X", "1", None, None, None),
    ]


def test_phonetic_codes(spark):
    names = ["KATHERINE", "CATHERINE", "PHILIP", "FILIP", "MACDONALD", "MCDONALD", "KNIGHT", "NIGHT", "SMITH", "SMYTHE"]
    df = spark.createDataFrame([(n,) for n in names], "n string")
    got = dict(df.select("n", normalise.nysiis(F.col("n")), normalise.soundex(F.col("n"))).rdd.map(lambda r: (r[0], (r[1], r[2]))).collect())
    # Expected NYSIIS-like codes derived by hand from the rules in normalise.nysiis.
    assert got["KATHERINE"][0] == got["CATHERINE"][0] == "CATARAN"
    assert got["PHILIP"][0] == got["FILIP"][0] == "FALAP"
    assert got["MACDONALD"][0] == got["MCDONALD"][0] == "MCDANALD"
    assert got["KNIGHT"][0] == got["NIGHT"][0] == "NAGT"
    assert got["SMITH"][0] == "SNAT"
    # Soundex (Spark's built-in): SMITH and SMYTHE share S530.
    assert got["SMITH"][1] == got["SMYTHE"][1] == "S530"

