"""Files behind a table: content ids, whole-file checks, named read failures (issue 19, item 4).

Each case is a real file fault (removed, truncated, overwritten, edited under its .crc) and the
named error that must come out of it: the file's name, what was expected, what to do; never a
raw Py4J traceback, never a data value.
"""

from __future__ import annotations

import os

import pytest

from natlink.commands import tokenise
from natlink.errors import CorruptInputFileError
from natlink.store import delta, files

CANARY = "CANARYVALUE-zq81"  # a data value that must never appear in an error


def _table(spark, path, n=40):
    df = spark.range(n).selectExpr("cast(id as string) as record_id", f"'{CANARY}' as v", "cast(id % 2 as string) as region")
    return delta.write(df, str(path), mode="overwrite", partition_by=("region",))


def test_content_id_follows_the_files_of_a_version(spark, tmp_path):
    first = _table(spark, tmp_path / "t")
    a = files.content_id(spark, tmp_path / "t", first.version)
    assert a.startswith("sha256:") and a == files.content_id(spark, tmp_path / "t", first.version)
    second = _table(spark, tmp_path / "t")  # same rows, new files: a different content id
    assert files.content_id(spark, tmp_path / "t", second.version) != a
    assert files.content_id(spark, tmp_path / "t", first.version) == a  # time travel keeps the old id
    assert files.check_files(spark, tmp_path / "t", second.version, what="t", remedy="r") == len(files.data_files(spark, tmp_path / "t"))


@pytest.mark.parametrize("fault", ["truncated", "removed", "overwritten"])
def test_a_damaged_data_file_is_named_before_any_job(spark, tmp_path, fault):
    _table(spark, tmp_path / "t")
    victim = files.data_files(spark, tmp_path / "t")[0]
    local = victim.split(":", 1)[1] if victim.startswith("file:") else victim
    from pathlib import Path

    p = Path(local)
    if fault == "truncated":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif fault == "removed":
        p.unlink()
    else:
        p.write_bytes(b"not parquet at all, just text")
    with pytest.raises(CorruptInputFileError) as raised:
        files.check_files(spark, tmp_path / "t", what="token table of dataset 'gp'", remedy="re-tokenise the dataset")
    text = str(raised.value)
    assert p.name in text and "token table of dataset 'gp'" in text and "re-tokenise the dataset" in text
    assert ("missing" in text) if fault == "removed" else ("not a whole Parquet file" in text)
    assert CANARY not in text


def test_a_file_removed_or_truncated_during_a_job_becomes_a_named_error(spark, tmp_path):
    from pathlib import Path

    _table(spark, tmp_path / "t")
    frame = spark.read.parquet(*files.data_files(spark, tmp_path / "t"))  # planned while the files were there
    victim = Path(files.data_files(spark, tmp_path / "t")[0].split(":", 1)[1])
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.raises(Exception) as raw:
        frame.selectExpr("count(v)").collect()
    named = files.named_read_failure(raw.value)
    assert isinstance(named, CorruptInputFileError) and victim.name in str(named) and CANARY not in str(named)
    victim.unlink()
    with pytest.raises(Exception) as raw:
        frame.selectExpr("count(v)").collect()
    named = files.named_read_failure(raw.value)
    assert isinstance(named, CorruptInputFileError) and "missing" in str(named) and victim.name in str(named)
    assert files.named_read_failure(ValueError("something else")) is None


def test_tokenise_names_a_source_file_edited_under_its_checksum(spark, tmp_path, monkeypatch):
    """A Spark-written CSV edited by hand keeps a stale .crc: the command names the file, no traceback."""
    monkeypatch.setenv("NATLINK_TEST_FILES_KEY", os.urandom(32).hex())  # a random throwaway test key
    src = tmp_path / "raw" / "gp"
    spark.createDataFrame(
        [("1", "4010232137", "ANNA", "SMITH", "1980-02-01", "F", "LS1 4AP", "")],
        "patient_ref string, nhs_no string, forename string, surname string, birth_date string, gender string, postcode string, ltc_codes string",
    ).coalesce(1).write.option("header", True).csv(str(src))
    part = next(src.glob("part-*.csv"))
    part.write_text(part.read_text() + "2,,BOB,JONES,1970-04-03,M,LS2 9JT,\n")
    with pytest.raises(CorruptInputFileError, match=f"{part.name}.*changed after its checksum file"):
        tokenise("conf/datasets/gp.yaml", "env:NATLINK_TEST_FILES_KEY", tmp_path / "out", data_dir=str(tmp_path), spark=spark)
