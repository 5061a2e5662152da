"""`prompt=` values as Hydra parses them become the text the user typed, or a one-line error."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from enhanced_tx.errors import ConfigError
from enhanced_tx.generation.prompts import prompt_list


def test_scalars_hydra_parses_as_numbers_or_booleans_are_text():
    cfg = OmegaConf.create({"year": 1984, "ratio": 0.5, "flag": True, "text": "Once upon"})
    assert [prompt_list(cfg[k]) for k in ("year", "ratio", "flag", "text")] == [
        ["1984"],
        ["0.5"],
        ["true"],
        ["Once upon"],
    ]


def test_a_list_is_one_batch_of_prompts():
    assert prompt_list(OmegaConf.create({"p": ["a b", 7]}).p) == ["a b", "7"]


@pytest.mark.parametrize("value", [None, {"k": 1}, []])
def test_other_values_are_a_one_line_config_error(value):
    with pytest.raises(ConfigError, match="prompt=") as error:
        prompt_list(OmegaConf.create({"p": value}).p)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("typed", ["3.10", "1e3", "1_000"])
def test_numbers_keep_the_text_the_user_typed(typed):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"prompt={typed}"])[0].value()
    assert not isinstance(parsed, str)  # Hydra read a number
    assert prompt_list(parsed, typed) == [typed]
