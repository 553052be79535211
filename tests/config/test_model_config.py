"""The model YAML is documented in full (docs/model.md: every key and its default, as the code has
them; dataset keys in docs/datasets.md) and validated with errors that name the key."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from natlink.config import DatasetConfig, ModelConfig, load, project_root
from natlink.errors import ConfigError

ROOT = project_root()
VALID = yaml.safe_load((ROOT / "conf" / "model_deterministic.yaml").read_text())


def _keys(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Every key path of a config model (``comparisons[].levels[].exact``) -> its field."""
    out = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        out[path] = field
        inner, suffix = _nested(field.annotation)
        if inner is not None:
            out.update(_keys(inner, f"{path}{suffix}."))
    return out


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin = get_origin(annotation)
    for arg in get_args(annotation):
        inner, suffix = _nested(arg)
        if inner is not None:
            return inner, ("[]" + suffix if origin is list else suffix)
    return None, ""


def _documented(doc: str) -> dict[str, str]:
    """Key path -> the default cell of every table row ``| `key` | default | meaning |``."""
    rows = re.findall(r"^\| `([a-z_\[\].]+)` \| ([^|]*) \|", doc, re.M)
    return {key: default.strip() for key, default in rows}


@pytest.mark.parametrize(("model", "doc", "prefix_of"), [
    (ModelConfig, "model.md", lambda key: key.replace("comparisons[].levels[]", "levels[]")),
    (DatasetConfig, "datasets.md", lambda key: key),
])
def test_every_key_is_documented_with_the_code_s_default(model, doc, prefix_of):
    documented = _documented((ROOT / "docs" / doc).read_text(encoding="utf-8"))
    keys = _keys(model)
    assert [key for key in keys if prefix_of(key) not in documented] == []
    for key, field in keys.items():
        cell, default = documented[prefix_of(key)], field.default
        if default is PydanticUndefined or isinstance(default, (list, dict, BaseModel)):
            continue  # required, or a collection / section documented in words
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if default is None:
            assert literal is None or yaml.safe_load(literal.group(1)) is None, f"{key}: documented {cell}, the code has None"
            continue
        assert literal, f"{key}: default documented as {cell!r}, the code has {default!r}"
        assert yaml.safe_load(literal.group(1)) == default, f"{key}: documented {literal.group(1)!r}, the code has {default!r}"


def test_documented_keys_exist():
    """No documented key the code does not know (a renamed key leaves no stale row behind)."""
    for model, doc, rename in ((ModelConfig, "model.md", "levels[]"), (DatasetConfig, "datasets.md", None)):
        keys = set(_keys(model))
        if rename:
            keys |= {k.replace("comparisons[].levels[]", rename) for k in keys}
        documented = {k for k in _documented((ROOT / "docs" / doc).read_text(encoding="utf-8")) if not k.startswith("fit.")}
        sidecar = {"splink_version", "natlink_version", "key_fingerprint", "training_data", "settings_hash"}
        assert documented - keys - sidecar == set(), doc


def _write(tmp_path, data) -> Any:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _with(change) -> dict:
    data = yaml.safe_load(yaml.safe_dump(VALID))
    change(data)
    return data


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(comparison=[]), r"comparison: unknown key; allowed here: name, link_type, encoding, comparisons"),
    (lambda d: d["training"].update(em_max_pair=1e6), r"training\.em_max_pair: unknown key; allowed here: seed, u_max_pairs, u_exact"),
    (lambda d: d["comparisons"][3]["levels"][0].update(tf_adjustmnt=True),
     r"comparisons\[3\] \(date_of_birth\)\.levels\[0\]\.tf_adjustmnt: unknown key; allowed here: exact, sql, dice"),
    (lambda d: d["comparisons"][0]["levels"][0].update(sql="tk_nhs_number_l = tk_nhs_number_r"),
     r"comparisons\[0\] \(nhs_number\)\.levels\[0\]: a level needs exactly one of 'exact', 'sql' or 'dice'"),
    (lambda d: d["comparisons"][0]["levels"][0].update(exact="nhs_number"),
     r"comparisons\[0\] \(nhs_number\)\.levels\[0\]\.exact: 'nhs_number' is not a token column"),
    (lambda d: d["comparisons"][3]["levels"][1].update(tf_adjustment=True), r"levels\[1\]: tf_adjustment applies to an 'exact' level only"),
    (lambda d: d["comparisons"][1]["levels"][1].update(label="exact tk_given_name"), r"level labels must be unique, repeated: \['exact tk_given_name'\]"),
    (lambda d: d["training"].update(duckdb_memory_limit="lots"), r"training\.duckdb_memory_limit: 'lots' is not a size DuckDB takes"),
    (lambda d: d["training"].update(em_blocking_rules=[["tk_nhs_number"]]), r"training\.em_blocking_rules: EM needs two or more"),
    (lambda d: d["training"].update(deterministic_rules=[["nhs_number"]]), r"training\.deterministic_rules: rule \[0\]: \['nhs_number'\] are not token columns"),
    (lambda d: d["training"]["allow_unobserved"].update(dob=["all other comparisons"]), r"training\.allow_unobserved\.dob: no comparison named 'dob'"),
    (lambda d: d["training"]["allow_unobserved"].update(sex=["other"]), r"training\.allow_unobserved\.sex: no level labelled \['other'\]; its levels: \['exact tk_sex', 'all other comparisons'\]"),
    (lambda d: d["training"].update(u_max_pairs=0), r"training\.u_max_pairs: Input should be greater than 0"),
    (lambda d: d.update(blocking_rules_for_prediction=["tk_dob = tk_dob"]), r"blocking_rules_for_prediction: rule \[0\] 'tk_dob = tk_dob': SQL must compare"),
])
def test_model_yaml_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load(_write(tmp_path, _with(change)), ModelConfig)
    assert str(caught.value).startswith(str(tmp_path / "model.yaml"))


def test_the_shipped_models_are_valid():
    for path in sorted((ROOT / "conf").glob("model*.yaml")):
        cfg = load(path, ModelConfig)
        if "sex" in [c.name for c in cfg.comparisons]:  # FEBRL's models have no sex
            assert cfg.training.allow_unobserved["sex"] == ["all other comparisons"], path.name


def test_dataset_yaml_unknown_keys_name_the_allowed_ones(tmp_path):
    data = yaml.safe_load((ROOT / "conf" / "datasets" / "gp.yaml").read_text())
    data["schema_checks"]["allow_unuseable"] = ["nhs_number"]
    path = tmp_path / "gp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"schema_checks\.allow_unuseable: unknown key; allowed here: unexpected_columns, ignore_columns, allow_unusable, allow_empty"):
        load(path, DatasetConfig)
