"""The config schema (enhanced_tx/configcheck/): unknown keys get the closest valid one, wrong types name the
key and the expected type, `???` names the key and the fix, all before Hydra creates a run folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from enhanced_tx.configcheck import check_command_line, config_problems

from .test_cli import ROOT, assert_one_line_error, run_cli

CONF = Path(__file__).resolve().parent.parent / "conf"


def build(size: int, mode: Literal["fast", "exact"] = "fast", path: str | Path | None = None) -> None:
    """A target for the schema tests."""


TARGET = f"{__name__}.build"


@pytest.mark.parametrize(
    "node, problem",
    [
        ({"size": "abc"}, "part.size=abc: expected an integer"),
        ({"size": 3, "mode": "slow"}, "part.mode=slow: expected one of fast, exact, e.g. part.mode=fast"),
        ({"size": 3, "siez": 4}, "unknown key part.siez: did you mean part.size?"),
        ({"size": 3, "colour": 4}, "unknown key part.colour: part takes size, mode, path"),
        ({"size": "???"}, "part.size is required: pass part.size=VALUE"),
        ({"size": 3, "path": "???"}, "part.path is required: pass part.path=FILE"),
    ],
)
def test_a_target_node_takes_the_keys_and_types_of_its_signature(node, problem):
    cfg = OmegaConf.create({"part": {"_target_": TARGET, **node}})
    assert config_problems(cfg) == [problem]


def test_values_that_fit_the_signature_pass_and_interpolations_are_resolved_first():
    cfg = OmegaConf.create({"n": 3, "part": {"_target_": TARGET, "size": "${n}", "mode": "exact", "path": None}})
    assert config_problems(cfg) == []
    cfg.n = "three"
    assert config_problems(cfg) == ["part.size=three: expected an integer"]


def test_a_plain_scalar_keeps_the_kind_of_its_yaml_default():
    defaults = OmegaConf.create({"seed": 0, "device": "auto", "rate": 0.5})
    assert config_problems(OmegaConf.create({"seed": 7, "device": "cpu", "rate": 1}), defaults=defaults) == []
    assert config_problems(OmegaConf.create({"seed": None, "device": 3, "rate": 0.1}), defaults=defaults) == []
    problems = config_problems(OmegaConf.create({"seed": "x", "device": "cpu", "rate": "y"}), defaults=defaults)
    assert problems == [
        "seed=x: expected an integer or null, e.g. seed=0",
        "rate=y: expected a number or null, e.g. rate=0.5",
    ]


@pytest.mark.slow  # one composition per option (~40)
def test_every_shipped_option_of_the_training_config_fits_its_schema():
    """The YAML files and the signatures they instantiate agree (a new key needs its parameter, and a type hint
    that admits the YAML's value)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        defaults = compose("train", return_hydra_config=True)
        for group in [g for g in defaults.hydra.runtime.choices if (CONF / g).is_dir()]:
            for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
                overrides = [f"{group}={option}"]
                cfg = compose("train", overrides=overrides, return_hydra_config=True)
                problems = [p for p in config_problems(cfg, defaults=defaults) if " is required" not in p]
                assert problems == [], overrides


@pytest.mark.parametrize(
    "args, message",
    [
        (["trainer.batch_size=abc"], "error: trainer.batch_size=abc: expected an integer, e.g. trainer.batch_size=32"),
        (["trainer.max_step=3"], "error: unknown key trainer.max_step: did you mean trainer.max_steps?"),
        (["+trainer.max_step=3"], "error: unknown key trainer.max_step: did you mean trainer.max_steps?"),
        (
            ["+trainer.budget.minute=3"],
            "error: unknown key trainer.budget.minute: did you mean trainer.budget.minutes?",
        ),
        (["+sed=1"], "error: unknown key sed: did you mean seed?"),
        (["+trainer.max_steps=3"], "error: trainer.max_steps is in the config already: set it without '+'"),
        (["-m", "trainer.eval_every=5,10,x"], "error: trainer.eval_every=x: expected an integer"),
        (["trainer.batch_size=0"], "error: trainer.batch_size=0 must be >= 1"),  # the extra check, unwrapped
    ],
)
def test_a_command_line_that_cannot_run_is_one_line(args, message):
    from enhanced_tx.training.preflight import check_training_config

    with pytest.raises(SystemExit) as exit_:
        check_command_line(CONF, "train", args, check=check_training_config)
    assert str(exit_.value).startswith(message), exit_.value


def test_help_and_printing_flags_skip_the_check_and_good_sweeps_pass():
    check_command_line(CONF, "train", ["--help", "trainer.batch_size=abc"])
    check_command_line(CONF, "train", ["--cfg", "job", "+trainer.max_step=3"])
    check_command_line(CONF, "train", ["-m", "norm=rmsnorm,layernorm", "trainer.eval_every=5,10", "seed=1"])


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["data=text"], ["data.path is required for data=text: pass data.path=FILE"]),
        (["+trainer.max_step=3"], ["unknown key trainer.max_step: did you mean trainer.max_steps?"]),
    ],
    ids=["missing-path", "unknown-key"],
)
def test_the_entry_point_refuses_before_any_run_folder_exists(tmp_path, args, fragments):
    result = run_cli("run_train.py", *args, "logger=none", tmp_path=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_a_refused_command_line_imports_neither_transformers_nor_dtensor(tmp_path):
    """The check imports every `_target_` of the config; transformers (3 s on a slow CPU) and
    torch.distributed.tensor (1 s) are for runs that get past it (the error came after 7.0 s with them, 3.9 s
    without, on the AVX2 EPYC)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "ENHANCED_TX_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "run_train.py"), "model.n_heads=5", "logger=none"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    imported = set(re.findall(r"^import time:.*\|\s*([\w.]+)$", result.stderr, flags=re.M))
    assert result.returncode != 0 and "must be a positive multiple of model.n_heads=5" in result.stderr
    assert "omegaconf" in imported  # the import log is there to read
    assert not {"transformers", "torch.distributed.tensor"} & imported
