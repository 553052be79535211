"""Kept (event) columns are checked by value for identifiers before anything is written, and the
centre's reader checks every row of a token table (issue 15: plaintext NHS numbers and names
reached a token table through event columns; the reader sampled only the first 10,000 rows)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from natlink.config.datasets import DatasetConfig
from natlink.errors import IdentifierInEventColumnError, NotTokenTableError
from natlink.store import delta
from natlink.tokens.encode import SCHEMA_VERSION
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.manifest import MANIFEST_KIND, TokenManifest
from natlink.tokens.plaintext import check_kept_columns, is_nhs_number, is_postcode
from natlink.tokens.reader import read_token_tables
from natlink.tokens.tokenise import tokenise_dataset

# Obviously fake test key: never use outside tests.
KEY = KeyMaterial("test:not-secret", b"test-key-not-secret-plaintext-00")

SCHEMA = (
    "dataset string, record_id string, region string, nhs_number string, given_name string, family_name string, "
    "date_of_birth string, sex string, postcode string, event_date string, code string"
)
# Hand-checked NHS numbers: 943 476 5919 (9*10+4*9+3*8+4*7+7*6+6*5+5*4+9*3+1*2 = 299, 299 % 11 = 2,
# 11 - 2 = 9: valid); 401 023 2137 is valid, 401 023 2138 is not.
ROWS = [
    ("gp", "1", "LONDON", "9434765919", "ANN", "LEE", "1980-03-07", "F", "SW1A 1AA", "2020-01-01", "E119"),
    ("gp", "2", "LONDON", "4010232137", "BOB", "KAY", "1971-11-30", "M", "M1 1AE", "2021-05-05", "I10X"),
]


def frame(spark, rows=ROWS):
    return spark.createDataFrame(rows, SCHEMA).withColumn("date_of_birth", F.to_date("date_of_birth"))


def test_identifier_shapes(spark):
    values = ["943 476 5919", "9434765919", "4010232137", "4010232138", "401-023-2137", "12345", None]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    got = [(r[0], r[1]) for r in df.select(is_nhs_number(F.col("v")), is_postcode(F.col("v"))).collect()]
    assert [g[0] for g in got] == [True, True, True, False, True, False, None]
    codes = ["SW1A 1AA", "m11ae", "EC1A1BB", "E119", "0601023AC", "I10X", "2020-01-01"]
    df = spark.createDataFrame([(v,) for v in codes], "v string")
    assert [r[0] for r in df.select(is_postcode(F.col("v"))).collect()] == [True, True, True, False, False, False, False]


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("code", ["943 476 5919", "4010232137"], r"column 'code': 2 valid NHS numbers among its 2 ten-digit values"),
        ("code", ["SW1A 1AA", "E119"], r"column 'code': 1 full postcodes"),
        ("event_date", ["1980-03-07", "30/11/1971"], r"column 'event_date': the record's own date of birth in 2 of 2 rows"),
        ("code", ["ann", "KAY "], r"column 'code': the record's own given name in 1 of 2 rows, the record's own family name in 1 of 2 rows"),
        ("code", ["9434765919", None], r"the record's own NHS number in 1 rows"),
    ],
)
def test_kept_columns_holding_identifiers_are_refused_without_values(spark, column, values, expected):
    index = SCHEMA.split(", ").index(f"{column} string")
    rows = [tuple(v if i == index else r[i] for i in range(len(r))) for r, v in zip(ROWS, values)]
    with pytest.raises(IdentifierInEventColumnError, match=expected) as err:
        check_kept_columns(frame(spark, rows), ["record_id", column])
    for v in values:
        if v:
            assert v.strip() not in str(err.value)


def test_code_columns_that_merely_resemble_identifiers_pass(spark):
    # Ten-digit codes: 1 in 11 pass the NHS check digit by chance, far below half of them.
    codes = [f"{1_000_000_000 + 7919 * i}" for i in range(200)]
    rows = [("gp", str(i), "LONDON", "9434765919", "ANN", "LEE", "1980-03-07", "F", "SW1A 1AA", "2020-01-01", c) for i, c in enumerate(codes)]
    df = frame(spark, rows)
    valid = df.where(is_nhs_number(F.col("code"))).count()
    assert 0 < valid < 0.2 * len(codes)  # some do pass the check digit ...
    check_kept_columns(df, ["record_id", "code", "event_date"])  # ... and the column is accepted
    # A newborn's admission on the day of birth, once among many: not a date-of-birth column.
    rows[0] = rows[0][:9] + ("1980-03-07",) + rows[0][10:]
    check_kept_columns(frame(spark, rows), ["event_date"])


def test_tokenise_refuses_before_writing(spark, tmp_path):
    df = frame(spark).withColumn("event_date", F.col("nhs_number"))
    with pytest.raises(IdentifierInEventColumnError, match="column 'event_date'.*Nothing was written"):
        tokenise_dataset(spark, df, KEY, dataset="gp", out_dir=tmp_path, event_columns=["event_date"])
    assert list(tmp_path.iterdir()) == []


def test_tokenise_checks_kept_columns_over_every_row_whatever_its_quarantine_reason(spark, tmp_path):
    # Rows tokenise quarantines count too. Record 1 twice (both rows quarantined as duplicates),
    # record 2 once: all three rows hold the record's own date of birth.
    rows = [*ROWS, ROWS[0]]
    df = frame(spark, rows).withColumn("event_date", F.date_format("date_of_birth", "dd/MM/yyyy"))
    with pytest.raises(IdentifierInEventColumnError, match=r"column 'event_date': the record's own date of birth in 3 of 3 rows"):
        tokenise_dataset(spark, df, KEY, dataset="gp", out_dir=tmp_path, event_columns=["event_date"])
    assert list(tmp_path.iterdir()) == []


def test_config_cannot_map_an_identifier_source_column_as_an_event():
    base = {"name": "gp", "source": {"path": "x"}, "record_id": "ref", "columns": {"nhs_number": "nhs_no", "given_name": "forename"}}
    with pytest.raises(ValueError, match=r"event columns read identifier source columns: \['ltc <- nhs_no \(mapped as nhs_number\)'\]"):
        DatasetConfig.model_validate({**base, "event_columns": {"ltc": "nhs_no"}})
    with pytest.raises(ValueError, match="record id column is mapped as nhs_number"):
        DatasetConfig.model_validate({**base, "record_id": "nhs_no"})
    assert DatasetConfig.model_validate({**base, "event_columns": {"ltc": "ltc_codes"}}).kept_columns() == ["ltc"]


def test_the_reader_checks_every_row_not_a_sample(spark, tmp_path, manifest_signer):
    # 20,000 well-formed tokens, then one plaintext value in row 15,001 (past the old 10,000-row sample).
    token = F.sha2(F.col("id").cast("string"), 256)
    df = spark.range(20_000).select(
        F.lit("gp").alias("dataset"), F.col("id").cast("string").alias("record_id"), F.lit("LONDON").alias("region"),
        F.when(F.col("id") == 15_000, F.lit("ANN")).otherwise(token).alias("tk_given_name"),
    ).coalesce(1)
    written = delta.write(df, str(tmp_path / "gp"), mode="overwrite", partition_by=("region",))
    data = {
        "kind": MANIFEST_KIND, "manifest_version": 1, "schema_version": SCHEMA_VERSION, "dataset": "gp",
        "key_fingerprint": "f" * 32, "rows": written.rows, "table": "gp", "delta_version": written.version,
        "columns": {"keep": ["dataset", "record_id", "region"], "tokens": {"tk_given_name": "field:given_name"}, "blooms": {}},
    }
    manifest = TokenManifest(data).save(tmp_path / "gp.manifest.json", signer=manifest_signer)
    with pytest.raises(NotTokenTableError, match="1 values in token columns are not hex tokens"):
        read_token_tables(spark, [manifest])
    # NHS numbers carried as a kept column are refused at the centre too.
    even = F.col("record_id").cast("int") % 2 == 0
    leaked = df.withColumn("tk_given_name", F.sha2(F.col("record_id"), 256)).withColumn(
        "record_id", F.when(even, F.lit("9434765919")).otherwise(F.lit("4010232137"))
    )
    written = delta.write(leaked, str(tmp_path / "gp"), mode="overwrite", partition_by=("region",))
    manifest = TokenManifest({**data, "delta_version": written.version}).save(tmp_path / "gp.manifest.json", signer=manifest_signer)
    with pytest.raises(IdentifierInEventColumnError, match="column 'record_id': 20000 valid NHS numbers"):
        read_token_tables(spark, [manifest])


def test_the_token_scan_refuses_every_kind_of_non_token_and_counts_values(spark):
    """Two tokens in one value, an empty string, upper case or a wrong length is refused, NULLs
    pass, and the message counts values."""
    from natlink.tokens.plaintext import scan_token_table

    t16, t32, t64 = "0123456789abcdef", "0123456789abcdef" * 2, "0123456789abcdef" * 4
    good = [(t16, t32, t64), (None, None, None), (t16, None, t64), (None, t16, None)]
    for row in good:
        scan_token_table(spark.createDataFrame([row], "a string, b string, c string"), tokens=["a", "b", "c"], kept=[], where="t")
    bad = [
        (f"{t16},{t16}", None, None),  # two tokens in one value
        (f"{t16},{t16}", t16, t16),
        ("", None, None),
        (t16.upper(), None, None),
        (t16 + "0", None, None),
        (t16, "ANN", t64),
    ]
    for row in bad:
        with pytest.raises(NotTokenTableError, match="1 values in token columns are not hex tokens"):
            scan_token_table(spark.createDataFrame([row], "a string, b string, c string"), tokens=["a", "b", "c"], kept=[], where="t")
    with pytest.raises(NotTokenTableError, match="3 values in token columns are not hex tokens"):
        scan_token_table(spark.createDataFrame([("x", "y", t16), (t16, None, "z"), good[0]], "a string, b string, c string"),
                         tokens=["a", "b", "c"], kept=[], where="t")
