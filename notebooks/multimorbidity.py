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
# # Multimorbidity with and without linkage
#
# How common is multimorbidity (two or more long-term conditions) by age band and region, when a
# researcher (1) links GP, hospital, prescription and death records into persons, (2) counts each
# record on its own, or (3) knows the truth? On synthetic data all three can be compared, plus
# (4) *perfect linkage*: the same records pooled by the generator's true person id, which
# separates linkage error (linked vs perfect linkage) from under-recording (perfect linkage vs truth).
#
# Condition codes (ICD-10 diagnoses, BNF prescription codes, causes of death) and a 10-year age
# band are kept through tokenise as non-identifying columns; dates of birth never leave the provider.
# All the work is in `natlink.outputs.case_study`; this notebook only runs it and draws the result.
#
# Environment variables (all optional):
#
# * `NATLINK_NB_OUT`: output folder (default `output/notebooks/multimorbidity`);
# * `NATLINK_NB_PERSONS`: synthetic persons when the pipeline is run here (default 3000);
# * `NATLINK_CASE_STUDY_DIR`: an existing `natlink demo --config conf/demo_multimorbidity.yaml`
#   output folder (tokens/, tables/, truth tables): used instead of running the pipeline;
# * `NATLINK_NB_DRIVER_MEMORY`: Spark driver memory (default 2g).

# %%
import json
import os
import time
from pathlib import Path

import pandas as pd

from natlink.config.case_study import load_config as load_case_study_config
from natlink.outputs import case_study
from natlink import config as cfgmod
from natlink.config import DemoConfig
from natlink.commands import demo as run_demo
from natlink.spark.session import get_spark
from natlink.tokens import signing

OUT = Path(os.environ.get("NATLINK_NB_OUT", "output/notebooks/multimorbidity")).resolve()
PERSONS = int(os.environ.get("NATLINK_NB_PERSONS", "3000"))
EXISTING = os.environ.get("NATLINK_CASE_STUDY_DIR")
OUT.mkdir(parents=True, exist_ok=True)
T0 = time.perf_counter()


def elapsed() -> str:
    return f"[{time.perf_counter() - T0:.0f} s]"


spark = get_spark(
    "natlink-notebook-multimorbidity",
    master="local[2]",
    conf={
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "2",
        "spark.driver.memory": os.environ.get("NATLINK_NB_DRIVER_MEMORY", "2g"),
    },
    checkpoint_dir=OUT / "_checkpoints",
)

# %% [markdown]
# ## Linked data
#
# Either an existing pipeline output, or a fresh one: synthesise, standardise, tokenise (a random
# demo key file under the output folder), train the demo model and link, as `natlink demo` does
# with `conf/demo_multimorbidity.yaml`.

# %%
root = cfgmod.project_root()
if EXISTING:
    data = Path(EXISTING).resolve()
    print(f"using the pipeline output in {data}")
else:
    data = OUT / "pipeline"
    base = cfgmod.load("conf/demo_multimorbidity.yaml", DemoConfig, base_dir=root)
    demo_cfg = base.model_copy(update={"persons": PERSONS, "output_dir": str(data), "model_dir": str(data / "models")})
    demo = run_demo(demo_cfg, root=root, spark=spark, progress=print)
    print(demo.summary_line())
    print(elapsed(), "step seconds:", demo.timings)

manifests = sorted((data / "tokens").glob("*.manifest.json"))
# The manifests are signed; unless NATLINK_TRUSTED_SIGNERS names the signers to trust, trust the
# demo's own signer (the registry it wrote beside its keys).
os.environ.setdefault(signing.TRUSTED_SIGNERS_ENV, str(data / "keys" / "providers.yaml"))
truth_dir = data if (data / "truth_conditions").exists() else None
print([m.name for m in manifests], "truth:", truth_dir is not None)

# %% [markdown]
# ## Prevalence four ways

# %%
result = case_study.run(
    spark,
    tables=data / "tables",
    manifests=manifests,
    truth_dir=truth_dir,
    out=OUT / "case_study",
    cfg=load_case_study_config("conf/case_study.yaml"),
)
print(elapsed(), "case study done")
for line in result.summary_lines():
    print(line)

table = pd.DataFrame(result.rows)
overall = table[table.level == "overall"].set_index("method")[["persons", "multimorbid", "prevalence"]]
overall

# %% [markdown]
# By age band (cells with counts under `min_cell_count` are withheld and show as NaN):

# %%
by_band = table[table.level == "age_band"].pivot(index="age_band", columns="method", values="prevalence")
by_band = by_band.reindex(sorted(by_band.index, key=case_study.band_order))
by_band

# %%
by_region = table[table.level == "region"].pivot(index="region", columns="method", values="prevalence")
by_region

# %% [markdown]
# What the codes contributed: matched to a long-term condition, ambiguous (a BNF section shared by
# several conditions: counted conservatively), or unmatched (acute codes).

# %%
print(json.dumps(result.summary["codes"], indent=1, sort_keys=True))
print(json.dumps(result.summary["unlinked_by_dataset"], indent=1, sort_keys=True))

# %% [markdown]
# ## Chart
#
# A vega-lite chart written as a self-contained HTML page (libraries inline, works offline).

# %%
spec = case_study.prevalence_chart_spec(result.rows, title="Multimorbidity (2+ conditions) by age band")
(OUT / "multimorbidity_by_age_band.vl.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
chart = case_study.write_chart_html(spec, OUT / "multimorbidity_by_age_band.html")
print(f"{elapsed()} chart: {chart}")
