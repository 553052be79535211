import pytest

from natlink.outputs import evaluate
from natlink.errors import ReconciliationError

CLUSTER_SCHEMA = "dataset string, record_id string, person_id string"
TRUTH_SCHEMA = "dataset string, record_id string, true_person_id string"


def test_pairwise_metrics_hand_computed(spark):
    # Predicted: P1={a1,a2,a3}, P2={b1} -> 3 predicted pairs.
    # Truth:     T1={a1,a2}, T2={a3,b1}  -> 2 true pairs; only (a1,a2) is both -> TP=1.
    clusters = spark.createDataFrame(
        [("d", "a1", "P1"), ("d", "a2", "P1"), ("d", "a3", "P1"), ("e", "b1", "P2")], CLUSTER_SCHEMA
    )
    truth = spark.createDataFrame(
        [("d", "a1", "T1"), ("d", "a2", "T1"), ("d", "a3", "T2"), ("e", "b1", "T2")], TRUTH_SCHEMA
    )
    m = evaluate.pairwise(clusters, truth)
    assert (m.true_positive_pairs, m.predicted_pairs, m.true_pairs, m.records) == (1, 3, 2, 4)
    assert m.precision == pytest.approx(1 / 3)
    assert m.recall == pytest.approx(1 / 2)
    assert m.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_missing_truth_rows_are_refused(spark):
    clusters = spark.createDataFrame([("d", "a1", "P1"), ("d", "zz", "P1")], CLUSTER_SCHEMA)
    truth = spark.createDataFrame([("d", "a1", "T1")], TRUTH_SCHEMA)
    with pytest.raises(ReconciliationError, match="1 clustered records"):
        evaluate.pairwise(clusters, truth)
