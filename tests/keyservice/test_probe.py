"""Discover probes in federated mode: a provider without the master key makes the block key that
`natlink discover --token-column tk_nhs_number --token ...` looks a person up by, through the
key service, and it is the block key its federated tokenise wrote."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from natlink import cli, commands
from natlink import columns as C
from natlink.config import ModelConfig, load, project_root
from natlink.errors import EncodingSpecError
from natlink.keyservice.spark import ServiceInnerTokens, service_encoding_key
from natlink.tokens import keys
from natlink.tokens.salted import SaltedScheme, encode

from test_spark_tokens import KEEP, SCHEMA, rows

MODEL_PATH = project_root() / "conf" / "model.yaml"  # the block-salted default
SCHEME = SaltedScheme.from_model(load(MODEL_PATH, ModelConfig))
NHS_RULE = SCHEME.rules.index(("nhs_number",))


def test_a_federated_probe_finds_the_federated_block_key(spark, keyservice, tmp_path):
    client_path = tmp_path / "keyservice_client.yaml"
    client_path.write_text(keyservice.client_configs["gp"].read_text().replace("http://127.0.0.1:1", keyservice.url))
    cfg = keyservice.client_config("gp")
    table = {r[C.RECORD_ID]: r for r in encode(spark.createDataFrame(rows("gp"), SCHEMA), service_encoding_key(keys.resolve(keyservice.encoding_key), cfg),
                                                SCHEME, keep=KEEP, inner_source=ServiceInnerTokens(cfg)).collect()}
    before = len(keyservice.audit_lines())
    block = SCHEME.block_column(NHS_RULE)
    probe = commands.probe("tk_nhs_number", "9434765919", keyservice.encoding_key, model_config=MODEL_PATH, keyservice=client_path)
    # Records a and b hold NHS number 9434765919, c another one, d none.
    assert probe == table["a"][block] == table["b"][block] != table["c"][block]
    # One audited evaluation of the NHS-number purpose, nothing else.
    assert [(r["purpose"], r["count"], r["outcome"]) for r in keyservice.audit_lines()[before:]] == [("salted:inner/field:nhs_number", 1, "ok")]
    # The centralised probe under the same encoding key is another token: it finds nothing here.
    local = commands.probe("tk_nhs_number", "9434765919", keyservice.encoding_key, model_config=MODEL_PATH)
    assert local not in {r[block] for r in table.values()}
    # The command line takes the value on standard input, never as an argument.
    result = CliRunner().invoke(cli.app, ["probe", "--key", keyservice.encoding_key, "--keyservice", str(client_path),
                                          "--model", str(MODEL_PATH)], input="9434765919\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == probe
    with pytest.raises(EncodingSpecError, match="tk_family_name"):
        commands.probe("tk_family_name", "SMITH", keyservice.encoding_key, model_config=MODEL_PATH, keyservice=client_path)
