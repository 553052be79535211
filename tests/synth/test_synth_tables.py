"""The synth reference tables."""

from __future__ import annotations

import pytest

from natlink.errors import ConfigError
from natlink.synth import tables


def test_a_listed_value_holding_the_separator_is_a_config_error():
    # string arrays are one literal split on \x1f, so a value holding it would become two values
    with pytest.raises(ConfigError, match="separator"):
        tables.literal_array(["ZZ99 3VZ", "ZZ99\x1f3WZ"])
