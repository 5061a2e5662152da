"""The pre-Hydra check of `group=option` arguments: a misspelt option is one line; valid forms pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from enhanced_tx.overrides import check_group_options

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize(
    "argv",
    [
        ["norm=layernorm"],
        ["norm=rmsnorm,layernorm"],  # a sweep
        ["callbacks=[ema]"],
        ["callbacks=[ema,early_stopping]"],
        ["callbacks=[]"],
        ["+experiment=ablation_arch"],
        ["~callbacks", "trainer.max_steps=3", "model.d_model=64"],
    ],
)
def test_valid_group_options_pass(argv: list[str]) -> None:
    check_group_options(CONF, argv)


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (["norm=laynorm"], "norm=laynorm"),
        (["norm=rmsnorm,laynorm"], "norm=laynorm"),
        (["callbacks=[ema,early_stoping]"], "callbacks=early_stoping"),
    ],
)
def test_a_misspelt_option_is_one_line_naming_it_and_the_choices(argv: list[str], bad: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check_group_options(CONF, argv)
    message = str(exit_info.value)
    assert message.startswith(f"error: unknown option {bad};") and "\n" not in message
    assert "available:" in message
