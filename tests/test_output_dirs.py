"""Where a command writes is checked before it works: a file, or a folder that cannot be written, is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from enhanced_tx.errors import ConfigError
from enhanced_tx.sweeps.callbacks import SweepCallback
from enhanced_tx.writable import check_writable_file, check_writable_folder

from .test_generation_inputs import _read_only_folder

ROOT = Path(__file__).resolve().parent.parent


def test_folders_are_created_and_a_file_or_a_read_only_place_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("x")
    assert check_writable_folder(tmp_path / "new" / "run", "k").is_dir()
    cases = {
        tmp_path / "a_file": "is a file, not a folder",
        tmp_path / "a_file" / "run": "cannot be written",
        _read_only_folder(tmp_path) / "run": "cannot be written",
    }
    for path, why in cases.items():
        with pytest.raises(ConfigError, match=rf"^k={path} {why}"):
            check_writable_folder(path, "k")
    with pytest.raises(ConfigError, match="is a folder; pass a file path"):
        check_writable_file(tmp_path, "k")
    (tmp_path / "kept.jsonl").write_text("old\n")
    check_writable_file(tmp_path / "kept.jsonl", "k")
    assert (tmp_path / "kept.jsonl").read_text() == "old\n"  # the check truncates nothing


def test_a_sweep_folder_that_is_a_file_stops_the_multirun_in_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "a_file")}, "sweeper": {}}})
    with pytest.raises(SystemExit) as stopped:
        SweepCallback().on_multirun_start(config)
    assert stopped.value.code == 1
    assert (
        capsys.readouterr().err == f"error: hydra.sweep.dir={tmp_path / 'a_file'} is a file, not a folder; "
        f"pass a folder, e.g. hydra.sweep.dir={tmp_path / 'a_file'}_run\n"
    )


@pytest.mark.slow  # a Python start-up with Hydra: ~5 s alone, 20 s on a busy machine
def test_run_train_with_a_run_folder_that_is_a_file_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "a_file").write_text("x")
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_train.py"), f"hydra.run.dir={tmp_path / 'a_file'}", "logger=none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: hydra.run.dir={tmp_path / 'a_file'} is a file, not a folder; "
        f"pass a folder, e.g. hydra.run.dir={tmp_path / 'a_file'}_run"
    ]
    assert (tmp_path / "a_file").read_text() == "x"
