"""`natlink blocking`: comparisons, largest blocks, recall and marginal recall per prediction rule,
on a constructed population whose every figure is counted by hand (test tokens, no identifiers)."""

from __future__ import annotations

from typer.testing import CliRunner

from natlink.config.link import BlockSplit, LinkConfig
from natlink.outputs import blocking_report

SETTINGS = {"blocking_rules_to_generate_predictions": ["l.tk_nhs_number = r.tk_nhs_number", "l.tk_dob = r.tk_dob AND l.tk_given_name = r.tk_given_name"]}
SPLIT = LinkConfig(split_large_blocks=[BlockSplit(rule=["tk_dob", "tk_given_name"], above=4, by=["tk_postcode_district"])])
# record: NHS token, date, given name, district, true person. Block (D1, G1) holds 5 records: split
# by district into {r0, r2, r3}, {r1}, {r4}. True pairs: T1 (r0, r1), (r0, r2), (r1, r2); T4 (r5, r6).
ROWS = [
    ("r0", "N1", "D1", "G1", "P1", "T1"),
    ("r1", "N1", "D1", "G1", "P2", "T1"),
    ("r2", None, "D1", "G1", "P1", "T1"),
    ("r3", "N2", "D1", "G1", "P1", "T2"),
    ("r4", "N3", "D1", "G1", "P3", "T3"),
    ("r5", "N4", "D2", "G2", "P1", "T4"),
    ("r6", None, "D2", "G3", "P1", "T4"),
]


def _tables(spark):
    tokens = spark.createDataFrame(
        [("d", r, n, dob, g, p) for r, n, dob, g, p, _t in ROWS],
        "dataset string, record_id string, tk_nhs_number string, tk_dob string, tk_given_name string, tk_postcode_district string",
    )
    truth = spark.createDataFrame([("d", r, t) for r, *_x, t in ROWS], "dataset string, record_id string, true_person_id string")
    return tokens, truth


def test_each_rule_s_cost_and_recall_against_truth_counted_by_hand(spark):
    tokens, truth = _tables(spark)
    got = blocking_report.analyse(tokens, SETTINGS, SPLIT, truth=truth)
    assert (got["records"], got["judge"], got["true_pairs"], got["union_recall"]) == (7, "truth", 4, 0.5)
    nhs, dob_given = got["rules"]
    assert nhs == {"rule": "[tk_nhs_number]", "comparisons": 1, "per_record": 1 / 7, "comparisons_unsplit": 1,
                   "largest_blocks": [2, 1, 1, 1], "recall": 0.25, "marginal_recall": 0.25}
    assert dob_given == {"rule": "[tk_dob, tk_given_name]", "comparisons": 3, "per_record": 3 / 7, "comparisons_unsplit": 10,
                         "largest_blocks": [5, 1, 1], "recall": 0.25, "marginal_recall": 0.25}
    assert got["comparisons_per_record"] == 4 / 7
    [split] = got["block_splits"]
    assert (split["blocks_split"], split["records_in_them"], split["pairs_before"], split["pairs_after"], split["pairs_not_compared"]) == (1, 5, 10, 3, 7)
    # Unsplit, the date-and-name rule makes (r0, r1), (r0, r2) and (r1, r2): recall 0.75, the union too.
    whole = blocking_report.analyse(tokens, SETTINGS, LinkConfig(), truth=truth)
    assert (whole["rules"][1]["recall"], whole["rules"][1]["marginal_recall"], whole["union_recall"]) == (0.75, 0.5, 0.75)
    assert whole["block_splits"] == [] and whole["rules"][1]["comparisons"] == 10


def test_without_truth_pairs_sharing_an_nhs_number_judge_and_that_rule_has_no_marginal_recall(spark):
    tokens, _truth = _tables(spark)
    got = blocking_report.analyse(tokens, SETTINGS, SPLIT)
    assert (got["judge"], got["true_pairs"], got["union_recall"]) == ("NHS-number pseudo-truth", 1, 1.0)
    nhs, dob_given = got["rules"]
    assert (nhs["recall"], nhs["marginal_recall"]) == (1.0, None)
    assert (dob_given["recall"], dob_given["marginal_recall"]) == (0.0, 0.0)  # (r0, r1): split apart (districts differ)


def test_the_command_prints_one_row_per_rule_and_the_splits(monkeypatch, tmp_path):
    from natlink import cli, commands

    result = {"records": 7, "judge": "truth", "true_pairs": 4, "union_recall": 0.5, "comparisons_per_record": 4 / 7,
              "rules": [{"rule": "[tk_nhs_number]", "comparisons": 1, "per_record": 1 / 7, "comparisons_unsplit": 1,
                         "largest_blocks": [2, 1], "recall": 0.25, "marginal_recall": None}],
              "block_splits": [{"rule": "[tk_dob, tk_given_name]", "above": 4, "by": ["tk_postcode_district"], "blocks_split": 1,
                                "records_in_them": 5, "pairs_not_compared": 7}]}
    monkeypatch.setattr(commands, "blocking", lambda *a, **k: result)
    model = tmp_path / "model.json"
    model.write_text("{}")
    out = CliRunner().invoke(cli.app, ["blocking", "--manifest", str(model), "--model", str(model)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "[tk_nhs_number]" in out.output and "0.2500" in out.output and "2, 1" in out.output
    assert "[tk_dob, tk_given_name]: 1 blocks of more than 4 records split by tk_postcode_district (5 records): 7 pairs not compared" in out.output
