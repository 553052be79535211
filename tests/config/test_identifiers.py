"""Identifier kinds in the dataset YAML (natlink.config.identifiers): the six built-in identifiers
stay as they were, others are declared with a kind, and bad declarations name the problem."""

from __future__ import annotations

import pytest
import yaml

from natlink import columns as C
from natlink.config import DatasetConfig, load_dataset, project_root
from natlink.config import identifiers as ids
from natlink.errors import ConfigError
from natlink.tokens import encode

ROOT = project_root()
UK = ["gp", "hes", "prescriptions", "registry"]


def febrl_raw() -> dict:
    return yaml.safe_load((ROOT / "conf/datasets/febrl/febrl3.yaml").read_text())


def validate(raw: dict) -> DatasetConfig:
    return DatasetConfig.model_validate(raw)


@pytest.mark.parametrize("name", UK)
def test_uk_configs_load_unchanged_with_the_six_builtin_identifiers(name):
    cfg = load_dataset(ROOT / f"conf/datasets/{name}.yaml")
    assert cfg.identifiers == {} and cfg.declared_identifiers == {}
    assert cfg.identifier_kinds == ids.BUILTIN
    assert list(cfg.identifier_kinds) == list(C.IDENTIFIERS)
    # Their token specs are exactly the built-in ones (golden tests pin those).
    assert encode.token_specs(cfg.identifier_kinds) == encode.TOKEN_SPECS


def test_builtin_token_names_are_the_token_specs():
    assert ids.BUILTIN_TOKEN_NAMES == {s.name for s in encode.TOKEN_SPECS}


@pytest.mark.parametrize("name", ["febrl3", "febrl4a", "febrl4b"])
def test_febrl_maps_every_column_without_pretending_an_nhs_number(name):
    cfg = load_dataset(ROOT / f"conf/datasets/febrl/{name}.yaml")
    assert set(cfg.columns.values()) == {"given_name", "surname", "street_number", "address_1", "address_2", "suburb",
                                         "postcode", "state", "date_of_birth", "soc_sec_id"}
    assert C.NHS_NUMBER not in cfg.columns
    kinds = cfg.identifier_kinds
    assert (kinds["soc_sec_id"].kind, kinds["soc_sec_id"].check_digit_rule) == ("person_id", "none")
    assert kinds["postcode"].postcode_format == "free" and kinds[C.NHS_NUMBER] == ids.BUILTIN[C.NHS_NUMBER]
    assert [kinds[n].kind for n in ("street_number", "address_1", "address_2", "suburb", "state")] == ["address"] * 4 + ["category"]
    # Token names by kind: the model's comparisons name these.
    names = {s.name: s.purpose for s in encode.token_specs(kinds)}
    assert names["address_1_nysiis"] == "id:address:address_1_nysiis"
    assert names["soc_sec_id"] == "id:person_id:soc_sec_id" and names["state"] == "id:category:state"
    assert len(names) == len(encode.TOKEN_SPECS) + 1 + 3 * 4 + 1


def test_declared_date_and_uk_postcode_yield_their_variants():
    kinds = {"visit_date": ids.IdentifierKind(kind="date"), "work_postcode": ids.IdentifierKind(kind="postcode")}
    specs = {s.name: s.purpose for s in encode.token_specs(ids.resolve(kinds))}
    # The swapped date is keyed as the date itself, so the two compare.
    assert specs["visit_date_swapped"] == specs["visit_date"] == "id:date:visit_date"
    assert {"visit_date_year", "visit_date_month", "visit_date_day", "work_postcode_sector", "work_postcode_district"} <= set(specs)


@pytest.mark.parametrize(("identifiers", "columns", "message"), [
    ({}, {"soc_sec_id": "soc_sec_id"}, "unknown identifiers ['soc_sec_id']"),
    ({"given_initial": {"kind": "category"}}, {}, "tk_given_initial is a built-in token name"),
    ({"middle": {"kind": "given_name"}}, {}, "declared identifiers are of kinds"),
    ({"nhs_number": {"check_digit": "none"}}, {}, "always checked by modulus 11"),
    ({"postcode": {"kind": "address"}}, {}, "is of kind postcode, not address"),
    ({"street": {"kind": "address"}, "street_soundex": {"kind": "category"}}, {}, "also a token of street"),
    ({"state": {"kind": "category", "format": "free"}}, {}, "'format' applies to kind postcode only"),
    ({"record_id": {"kind": "category"}}, {}, "natlink's own column names"),
    ({"ward__x": {"kind": "category"}}, {}, "single '_'"),
    ({"state": {}}, {}, "give its kind"),
    ({"state": {"kind": "category", "colour": "red"}}, {}, "unknown key"),
])
def test_bad_declarations_are_refused_naming_the_problem(tmp_path, identifiers, columns, message):
    raw = febrl_raw()
    raw["identifiers"] = identifiers
    raw["columns"] = {"given_name": "given_name", **columns}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="identifiers|columns") as err:
        load_dataset(path)
    assert message in str(err.value)


def test_a_declared_identifier_not_mapped_is_null_and_may_be_allowed_unusable():
    raw = febrl_raw()
    del raw["columns"]["address_2"]
    raw["schema_checks"] = {"allow_unusable": ["address_2", "soc_sec_id"]}
    cfg = validate(raw)
    assert "address_2" in cfg.declared_identifiers and "address_2" not in cfg.columns
    raw["schema_checks"] = {"allow_unusable": ["shoe_size"]}
    with pytest.raises(ValueError, match="not identifiers: \\['shoe_size'\\]"):
        validate(raw)


def test_event_columns_cannot_take_a_declared_identifier_s_name():
    raw = febrl_raw()
    raw["event_columns"] = {"suburb": "suburb_copy"}
    with pytest.raises(ValueError, match="clash with natlink's own output columns"):
        validate(raw)
