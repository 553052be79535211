"""conf/synth.yaml is the generator's default configuration, and strict."""

from __future__ import annotations

import pytest

from natlink.config import project_root
from natlink.config.synth import FieldErrors, SynthConfig, load_synth_config
from natlink.errors import ConfigError


def test_conf_synth_yaml_is_the_default_and_strict(tmp_path):
    assert load_synth_config(project_root() / "conf" / "synth.yaml") == SynthConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("persons_per_file: 5000\nsurprise: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="surprise"):
        load_synth_config(bad)
    with pytest.raises(ValueError, match="given"):
        FieldErrors(given_missing=0.6, given_typo=0.5)
    with pytest.raises(ValueError, match="listed before"):
        SynthConfig(conditions=[{"name": "diabetes", "prevalence": [0.1] * 5, "depends_on": {"hypertension": 2}}])
