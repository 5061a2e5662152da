"""`python run_train.py resume=RUN_DIR`: a run folder continues from what it saved, no overrides retyped; an
interrupted run prints that command with its real folder."""

from __future__ import annotations

import json
import shlex
import signal

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from enhanced_tx.cli import guarded
from enhanced_tx.tasks.resume_argv import expand_resume
from enhanced_tx.training.preemption import TrainingInterrupted

from .conftest import TINY_TRAIN
from .test_cli import run_cli


def _run_folder(tmp_path, name="it's a run", overrides=("model.d_model=32", "seed=3", "trainer.resume=auto")):
    folder = tmp_path / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    return folder


def test_resume_becomes_the_runs_own_overrides_then_the_new_ones(tmp_path):
    folder = _run_folder(tmp_path)
    argv = expand_resume(["run_train.py", f"resume={folder}", "seed=4", "trainer.max_steps=9"])
    assert argv[:5] == ["run_train.py", "model.d_model=32", "seed=4", "trainer.max_steps=9", "trainer.resume=auto"]
    (run_dir,) = OverridesParser.create().parse_overrides([argv[5]])  # quoted for Hydra: the folder has a quote
    assert run_dir.key_or_group == "hydra.run.dir" and run_dir.value() == str(folder.resolve()) and len(argv) == 6


def test_a_command_without_resume_is_left_alone_and_a_folder_without_a_run_is_one_line(tmp_path):
    assert expand_resume(["run_train.py", "seed=1"]) == ["run_train.py", "seed=1"]
    with pytest.raises(SystemExit, match=r"error: resume=.*empty: not a run folder \(no .hydra/overrides.yaml\)"):
        expand_resume(["run_train.py", f"resume={tmp_path / 'empty'}"])
    with pytest.raises(SystemExit, match="give it once, without -m"):
        expand_resume(["run_train.py", "-m", f"resume={_run_folder(tmp_path)}"])


def test_an_interrupted_run_prints_the_command_that_continues_its_folder(tmp_path, capsys):
    run_dir = tmp_path / "multirun" / "3_norm=rmsnorm,seed=1"
    cfg = OmegaConf.create({"trainer": {}, "paths": {"output_dir": str(run_dir)}})

    def interrupted(cfg):
        raise TrainingInterrupted(signal.SIGINT, 7)

    with pytest.raises(SystemExit) as exit_:
        guarded(interrupted)(cfg)
    assert exit_.value.code == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "SIGINT at step 7: checkpoint saved" in err and "RUN_DIR" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("continue with: ")]
    words = shlex.split(line.removeprefix("continue with: "))
    assert words[:2] == ["python", "run_train.py"] and len(words) == 3
    (override,) = OverridesParser.create().parse_overrides([words[2]])
    assert (override.key_or_group, override.value()) == ("resume", str(run_dir))


def test_resume_continues_a_finished_run_for_more_steps_with_nothing_retyped(tmp_path):
    run = tmp_path / "run"
    first = run_cli("run_train.py", *TINY_TRAIN, "trainer.max_steps=4", f"hydra.run.dir={run}", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_cli("run_train.py", f"resume={run}", "trainer.max_steps=6", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resumed from {run / 'checkpoints'}" in again.stdout + again.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6 and steps == sorted(steps)  # the same folder, picked up at step 4
