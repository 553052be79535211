# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tuning the linkage model
#
# Train a Splink model on a sample of token tables with `natlink.linkage.train`, look at its match
# weights and m/u parameters, compare clustering thresholds against truth with
# `natlink.outputs.evaluate`, and save the model JSON (with its sidecar) for `natlink link`.
#
# Environment variables (all optional):
#
# * `NATLINK_NB_OUT`: output folder (default `output/notebooks/model_tuning`);
# * `NATLINK_NB_PERSONS`: synthetic persons when the token tables are made here (default 2000);
# * `NATLINK_TOKENS`: a folder of token tables with their `*.manifest.json`, used instead of
#   synthesising; with `NATLINK_TRUTH` (Parquet: dataset, record_id, true_person_id) the sweep is
#   judged against truth, otherwise against NHS-number agreement (pseudo-truth);
# * `NATLINK_NB_MODEL_CONFIG`: model settings YAML (default `conf/model_deterministic.yaml`: this
#   notebook tunes models over deterministic tokens, whose columns Splink's charts and comparison
#   viewer read directly; the default block-salted `conf/model.yaml` is trained by `natlink train`);
# * `NATLINK_NB_DRIVER_MEMORY`: Spark driver memory (default 2g).
#
# Charts are written to HTML files in the output folder rather than displayed, so the notebook
# runs unchanged as a script (CI runs it on a small sample: `tests/jobs/test_notebooks.py`).

# %%
import json
import os
import time
from pathlib import Path

import pandas as pd

from natlink import config as cfgmod
from natlink.config import LinkConfig
from natlink.outputs import evaluate
from natlink.linkage import model_store
from natlink.linkage import train
from natlink.synth import generate as synth
from natlink.tokens.keys import KeyMaterial
from natlink.commands import tokenise_delivery
from natlink.spark.session import get_spark
from natlink.tokens import reader, signing

OUT = Path(os.environ.get("NATLINK_NB_OUT", "output/notebooks/model_tuning")).resolve()
PERSONS = int(os.environ.get("NATLINK_NB_PERSONS", "2000"))
TOKENS = os.environ.get("NATLINK_TOKENS")
TRUTH = os.environ.get("NATLINK_TRUTH")
MODEL_CONFIG = os.environ.get("NATLINK_NB_MODEL_CONFIG", "conf/model_deterministic.yaml")
OUT.mkdir(parents=True, exist_ok=True)
T0 = time.perf_counter()


def elapsed() -> str:
    return f"[{time.perf_counter() - T0:.0f} s]"


spark = get_spark(
    "natlink-notebook-model-tuning",
    master="local[2]",
    conf={
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "2",
        "spark.driver.memory": os.environ.get("NATLINK_NB_DRIVER_MEMORY", "2g"),
    },
    checkpoint_dir=OUT / "_checkpoints",
)
root = cfgmod.project_root()

# %% [markdown]
# ## Token tables
#
# Without `NATLINK_TOKENS`, a small synthetic population (GP and hospital episodes) is
# tokenised here under an obviously fake key, labelled as such: never use it for real data.

# %%
if TOKENS:
    manifests = sorted(Path(TOKENS).glob("*.manifest.json"))
    truth = spark.read.parquet(TRUTH) if TRUTH else None
else:
    # FAKE, NOT SECRET: a notebook demonstration key (32 bytes, labelled in its id and value).
    key = KeyMaterial("notebook:fake-not-secret", b"test-key-not-secret-notebook-000")
    # Manifests are signed: by NATLINK_SIGNING_KEY when set, else by a key made here; unless
    # NATLINK_TRUSTED_SIGNERS names the signers to trust, the notebook trusts its own signer.
    signer, trusted = signing.demo_signer(OUT / "keys")
    os.environ.setdefault(signing.TRUSTED_SIGNERS_ENV, str(trusted))
    data = OUT / "data"
    generated = synth.generate(spark, data, persons=PERSONS, seed=42, datasets=["gp", "hes"])
    manifests = []
    for name in ("gp", "hes"):
        ds = cfgmod.load(f"conf/datasets/{name}.yaml", cfgmod.DatasetConfig, base_dir=root)
        model = cfgmod.load(MODEL_CONFIG, cfgmod.ModelConfig, base_dir=root)  # tokens made for the model tuned below
        manifests.append(tokenise_delivery(spark, ds, key, data_dir=str(data), out=data, run_id="notebook", signer=signer, model=model).path)
    truth = spark.read.parquet(generated.truth)
tokens, fingerprint = reader.load_tokens(spark, manifests)
tokens = tokens.cache()
print(f"{elapsed()} {tokens.count()} records from {[Path(m).name for m in manifests]}; key fingerprint {fingerprint}")

# %% [markdown]
# ## Train
#
# lambda from deterministic rules, u by random sampling, m by EM over several blocking rules
# (the model YAML, section `training`).

# %%
model_cfg = cfgmod.load(MODEL_CONFIG, cfgmod.ModelConfig, base_dir=root)
trained = train.train(tokens, model_cfg)
parameters = pd.DataFrame(model_store.parameter_table(trained.settings))
print(elapsed(), json.dumps({k: round(v, 2) for k, v in trained.diagnostics["timings"].items()}))
parameters

# %% [markdown]
# ## Charts
#
# Splink's match weights chart and m/u parameters chart, saved as self-contained HTML pages.

# %%
linker = train.make_linker(tokens, trained.settings)
charts = {
    "match_weights": linker.visualisations.match_weights_chart(),
    "m_u_parameters": linker.visualisations.m_u_parameters_chart(),
}
for name, chart in charts.items():
    chart.save(str(OUT / f"{name}.html"), inline=True)
    print(f"{elapsed()} {name}: {OUT / f'{name}.html'}")

# %% [markdown]
# ## Save the model
#
# The model JSON and its sidecar (Splink version, key fingerprint, training data, fit
# diagnostics). The sidecar pins the key fingerprint: the model is refused for other keys.

# %%
training_manifest = {"tables": [str(m) for m in manifests], "notebook": "model_tuning"}
model_path = model_store.save(
    trained, OUT / "model.json", key_fingerprint=fingerprint, training_manifest=training_manifest, overwrite=True
)
print(f"model: {model_path}")

# %% [markdown]
# ## Thresholds
#
# Predict once at the lowest threshold, then cluster and judge at each one: pairwise and
# cluster-level precision, recall and F1.

# %%
thresholds = [0.5, 0.8, 0.9, 0.95, 0.99]
sweep_cfg = LinkConfig(evaluation_thresholds=thresholds)
sweep = pd.DataFrame(evaluate.sweep_job(spark, manifests=manifests, model_path=model_path, link_cfg=sweep_cfg, truth=truth))
sweep.to_csv(OUT / "threshold_sweep.csv", index=False)
best = sweep.loc[sweep["pair_f1"].idxmax()]
print(f"{elapsed()} best pairwise F1 {best['pair_f1']:.4f} at match probability >= {best['threshold']}"
      + ("" if truth is not None else " (against NHS-number pseudo-truth)"))
sweep[["threshold", "pair_precision", "pair_recall", "pair_f1", "cluster_precision", "cluster_recall", "cluster_f1"]]
