"""The seed project's `--flags` become Hydra overrides that compose."""

from __future__ import annotations

import pytest

from enhanced_tx.cli import translate_legacy_flags

from .conftest import compose_train


def _translate(*args: str) -> list[str]:
    return translate_legacy_flags(["run_train.py", *args])[1:]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--batch_size", "8"], ["trainer.batch_size=8"]),
        (["--batch_size=8", "--lr", "3e-4"], ["trainer.batch_size=8", "optimizer.lr=3e-4"]),
        (["--mixed_precision", "bf16", "model=small"], ["precision=bf16", "model=small"]),
        (["--model_size", "tiny", "--model_size=small"], ["model=tiny", "model=small"]),
        (["--gradient_checkpointing"], ["trainer.gradient_checkpointing=true"]),
        (["--gradient_checkpointing", "false", "--seed", "3"], ["trainer.gradient_checkpointing=false", "seed=3"]),
        (["--gradient_checkpointing=False"], ["trainer.gradient_checkpointing=false"]),
        (["--use_rotary_embeddings", "--device", "cpu"], ["positional=rope", "device=cpu"]),
        (["--use_rotary_embeddings", "false"], ["positional=sinusoidal"]),
        (["--epochs", "10"], ["trainer.epochs=10", "trainer.max_steps=null"]),
        (["--epochs", "10", "--max_steps", "50"], ["trainer.epochs=10", "trainer.max_steps=50"]),
        (["--epochs=2", "trainer.max_steps=50"], ["trainer.epochs=2", "trainer.max_steps=50"]),
        (["trainer.epochs=3"], ["trainer.epochs=3"]),  # a plain override keeps the documented "smaller wins"
    ],
)
def test_flags_become_overrides(args, expected):
    assert _translate(*args) == expected


@pytest.mark.parametrize(
    "args", [["--mixed_precision"], ["--mixed_precision", "--batch_size", "8"], ["--lr"], ["--model_size"]]
)
def test_a_flag_without_its_value_is_a_one_line_error(args):
    with pytest.raises(SystemExit, match=f"error: {args[0]} needs a value, e.g. {args[0]} "):
        _translate(*args)


def test_a_switch_with_a_non_boolean_value_is_a_one_line_error():
    with pytest.raises(SystemExit, match="--gradient_checkpointing=maybe: expected true or false"):
        _translate("--gradient_checkpointing=maybe")


def test_translated_flags_compose_and_epochs_are_not_capped_by_the_default_max_steps(tmp_path):
    flags = ["--epochs", "3", "--batch_size", "4", "--gradient_checkpointing", "--use_rotary_embeddings"]
    overrides = _translate(*flags, "--model_size", "small")
    cfg = compose_train(tmp_path, *overrides)
    assert cfg.model.d_model == 768  # conf/model/small.yaml
    assert cfg.trainer.epochs == 3 and cfg.trainer.max_steps is None and cfg.trainer.batch_size == 4
    assert cfg.trainer.gradient_checkpointing is True
    assert cfg.model.positional._target_.endswith("RotaryEmbedding")
