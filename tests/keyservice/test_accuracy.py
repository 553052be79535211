"""Accuracy on the generator: the same synthetic population tokenised in centralised mode (local
key) and in federated mode (`natlink tokenise --keyservice`, through commands.tokenise), trained
with the same salted model and linked the same way, gives the same clusters."""

from __future__ import annotations

import os

import pytest

from natlink import commands
from natlink.config import LinkConfig, ModelConfig, load, project_root
from natlink.linkage import run as linkrun
from natlink.linkage import train
from natlink.linkage.runs import completed_view
from natlink.outputs import evaluate
from natlink.synth import generate as synth

ROOT = project_root()
MODEL_PATH = ROOT / "conf" / "model.yaml"  # the block-salted default
LINK = LinkConfig(threshold_match_probability=0.9, engine="spark")


@pytest.mark.slow
def test_federated_tokens_link_as_accurately_as_local_ones(spark, keyservice, tmp_path):
    generated = synth.generate(spark, tmp_path / "synth", persons=1000, seed=11, datasets=["gp", "hes"])
    truth = spark.read.parquet(str(generated.truth))
    client_config = keyservice.client_configs["gp"]
    client_config.write_text(client_config.read_text().replace("http://127.0.0.1:1", keyservice.url))
    os.environ["NATLINK_TEST_ENCODING_KEY"] = (keyservice.root / "gp" / "encoding.key").read_text()  # fake, labelled
    results = {}
    for mode, extra in (("local", {}), ("federated", {"keyservice": client_config})):
        out = tmp_path / mode
        manifests = [
            commands.tokenise(ROOT / "conf" / "datasets" / f"{name}.yaml", "env:NATLINK_TEST_ENCODING_KEY", out / "tokens",
                              data_dir=str(tmp_path / "synth"), model_config=MODEL_PATH, spark=spark, run_id=f"{mode}-{name}", **extra).path
            for name in ("gp", "hes")
        ]
        model = train.train_job(spark, manifests=manifests, cfg=load(MODEL_PATH, ModelConfig), out_path=out / "model.json")
        linkrun.run(spark, manifests=manifests, model_path=model, link_cfg=LINK, tables=out / "tables", run_id="r1")
        clusters = completed_view(spark, out / "tables", "r1").table("clusters", this_run_only=True)
        results[mode] = evaluate.pairwise(clusters, truth)
    local, federated = results["local"], results["federated"]
    assert federated.f1 > 0.97
    assert (federated.precision, federated.recall, federated.f1) == pytest.approx((local.precision, local.recall, local.f1), abs=1e-9)
