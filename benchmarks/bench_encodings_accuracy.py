"""What each encoding adds to accuracy: exact tokens only, + fuzzy tokens, + Bloom filters, +/- TF.

    python benchmarks/bench_encodings_accuracy.py [--persons 10000] [--seed 42] [--scenarios demo,heavy]
        [--models exact,fuzzy,bloom,model] [--tf off,on]

Synthetic population from natlink.synth.generate (demo error rates, and a heavier corruption built from
the same generator with higher FieldErrors rates), standardised and tokenised once per scenario
under an obviously fake key; then each model config (conf/model_exact.yaml, model_fuzzy.yaml,
model_bloom.yaml, and ``model``: conf/model_deterministic.yaml, the former default) is trained and linked at the
threshold in conf/link.yaml, with term-frequency adjustments off and on (exact levels of given
name, family name and postcode), and the clusters are judged against the truth table (pairwise
precision / recall / F1). Prints one table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from natlink import columns as C
from natlink import config as cfgmod
from natlink.outputs import evaluate
from natlink.linkage import engine as link
from natlink.config import LinkConfig
from natlink.spark.scratch import Scratch
from natlink.linkage import train
from natlink.synth import generate as synth
from natlink.tokens.keys import KeyMaterial
from natlink.spark.session import get_spark
from natlink.config.synth import FieldErrors, SynthConfig
from natlink.tokens.tokenise import tokenise_configured
from natlink.tokens import reader, signing

FAKE_KEY = KeyMaterial("bench:not-secret", b"test-key-not-secret-bench-accur0")
MODELS = ("exact", "fuzzy", "bloom")
TF_COLUMNS = ("tk_given_name", "tk_family_name", "tk_postcode")
LABEL = {"exact": "exact tokens only", "fuzzy": "+ fuzzy tokens", "bloom": "+ Bloom filters (Dice)", "model": "conf/model_deterministic.yaml"}


def model_path(name: str) -> str:
    return "conf/model_deterministic.yaml" if name == "model" else f"conf/model_{name}.yaml"

# Heavier errors than the demo: several times the typos, swaps, moves and missing NHS numbers,
# so names and dates (not the NHS number) must carry most links.
HEAVY = {
    "gp": FieldErrors(
        given_typo=0.20, family_typo=0.20, given_missing=0.02, family_previous=0.3, dob_swapped=0.06,
        dob_day_error=0.05, dob_missing=0.02, postcode_previous=0.25, postcode_missing=0.05, nhs_missing=0.40,
        nhs_digit=0.03, sex_missing=0.03,
    ),
    "hes": FieldErrors(
        given_typo=0.25, family_typo=0.25, given_missing=0.04, family_previous=0.3, dob_swapped=0.08,
        dob_day_error=0.06, dob_missing=0.03, postcode_previous=0.30, postcode_missing=0.06, nhs_missing=0.50,
        nhs_digit=0.04, sex_missing=0.04,
    ),
}


def heavy_config() -> SynthConfig:
    """The default generator configuration with the heavier error rates on gp and hes."""
    base = SynthConfig()
    datasets = {name: spec.model_copy(update={"errors": HEAVY.get(name, spec.errors)}) for name, spec in base.datasets.items()}
    return base.model_copy(update={"datasets": datasets})


def run_scenario(
    spark, root: Path, work: Path, scenario: str, persons: int, seed: int, threshold: float,
    models=MODELS, tf_modes=("off",), tf_columns=TF_COLUMNS,
) -> list[dict]:
    out = work / scenario
    config = heavy_config() if scenario == "heavy" else SynthConfig()
    truth_path = synth.generate(spark, out, persons=persons, seed=seed, config=config, datasets=["gp", "hes"]).truth
    datasets = [cfgmod.load(p, cfgmod.DatasetConfig, base_dir=root) for p in ("conf/datasets/gp.yaml", "conf/datasets/hes.yaml")]
    signer, trusted = signing.demo_signer(work / "keys")  # this run signs its own manifests and trusts only that
    t0 = time.perf_counter()
    manifests = [tokenise_configured(spark, ds, FAKE_KEY, data_dir=str(out), out_dir=out / "tokens", signer=signer) for ds in datasets]
    tokenise_s = time.perf_counter() - t0
    tokens = reader.with_unique_id(reader.read_token_tables(spark, manifests, trusted=trusted)).cache()
    records = tokens.count()
    truth = spark.read.parquet(truth_path)
    rows = []
    for name, tf in itertools.product(models, tf_modes):
        cfg = cfgmod.load(model_path(name), cfgmod.ModelConfig, base_dir=root)
        cfg = cfg.with_term_frequencies(tf_columns if tf == "on" else ())
        t = time.perf_counter()
        trained = train.train(tokens, cfg)
        with Scratch(spark) as scratch:
            result = link.link(tokens, trained.settings, LinkConfig(threshold_match_probability=threshold), scratch)
            clusters = result.clusters.select(C.DATASET, C.RECORD_ID, F.col(link.CLUSTER_NODE).cast("string").alias(C.PERSON_ID))
            m = evaluate.pairwise(clusters, truth)
        rows.append({
            "scenario": scenario, "model": name, "tf": tf, "records": records, "precision": m.precision,
            "recall": m.recall, "f1": m.f1, "true_pairs": m.true_pairs, "seconds": time.perf_counter() - t,
            "tokenise_s": tokenise_s,
        })
        print(f"  {scenario}/{name}/tf={tf}: P={m.precision:.4f} R={m.recall:.4f} F1={m.f1:.4f}", file=sys.stderr, flush=True)
    tokens.unpersist()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scenarios", default="demo,heavy")
    parser.add_argument("--models", default=",".join(MODELS), help="comma list of exact, fuzzy, bloom, model")
    parser.add_argument("--tf", default="off,on", help="term-frequency adjustments: off, on or off,on")
    parser.add_argument("--tf-columns", default=",".join(TF_COLUMNS), help="exact-level columns TF adjusts when on")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    root = cfgmod.project_root()
    threshold = cfgmod.load("conf/link.yaml", cfgmod.LinkConfig, base_dir=root).threshold_match_probability
    spark = get_spark("natlink-bench-accuracy", master="local[2]", conf={"spark.driver.memory": "6g"})
    work = Path(args.workdir or tempfile.mkdtemp(prefix="natlink-acc-"))
    load = os.getloadavg()
    rows = []
    for scenario in args.scenarios.split(","):
        rows += run_scenario(
            spark, root, work, scenario, args.persons, args.seed, threshold,
            models=args.models.split(","), tf_modes=args.tf.split(","), tf_columns=args.tf_columns.split(","),
        )
    print(f"encodings accuracy: persons={args.persons} seed={args.seed} threshold={threshold} tf_columns={args.tf_columns} "
          f"load(1,5,15)={load[0]:.1f},{load[1]:.1f},{load[2]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'scenario':<9}{'encodings':<24}{'TF':<4}{'records':>8}{'precision':>10}{'recall':>9}{'F1':>8}{'true pairs':>11}{'seconds':>9}")
    for r in rows:
        print(f"{r['scenario']:<9}{LABEL[r['model']]:<24}{r['tf']:<4}{r['records']:>8}{r['precision']:>10.4f}{r['recall']:>9.4f}"
              f"{r['f1']:>8.4f}{r['true_pairs']:>11}{r['seconds']:>9.0f}")


if __name__ == "__main__":
    main()
