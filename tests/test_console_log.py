"""The run folder keeps the console its user saw (run_train.log), and W&B's banners go there, not to the user."""

from __future__ import annotations

import io
import sys

from enhanced_tx.tracking.console_log import _Tee, into_log_only, keep_console

from .conftest import TINY_TRAIN
from .test_cli import run_cli


def test_the_log_gets_each_finished_line_as_the_console_last_showed_it():
    console, log = io.StringIO(), io.StringIO()
    tee = _Tee(console, log)
    tee.write("step 1: val/loss 8.1\n")
    tee.write("train:  10%|\x1b[32m#\x1b[0m|")  # a progress bar redrawing its line
    tee.write("\rtrain:  50%|#####|")
    tee.write("\rtrain: 100%|##########|\nlast words")
    tee.end_line()
    assert console.getvalue().startswith("step 1: val/loss 8.1\ntrain:  10%") and console.getvalue().endswith("words")
    assert log.getvalue() == "step 1: val/loss 8.1\ntrain: 100%|##########|\nlast words\n"


def test_keep_console_appends_and_restores_the_streams_and_log_only_hides_from_the_console(tmp_path, capsys):
    path = tmp_path / "run" / "run_train.log"
    path.parent.mkdir()
    path.write_text("earlier\n")
    with keep_console(path):
        print("shown and kept")
        with into_log_only(path):
            print("wandb: 34 lines of banner")
        print("partial", end="", file=sys.stderr)
    assert path.read_text() == "earlier\nshown and kept\nwandb: 34 lines of banner\npartial\n"
    out, err = capsys.readouterr()
    assert out == "shown and kept\n" and err == "partial" and "banner" not in out + err


def test_a_run_keeps_its_console_in_run_train_log_and_wandb_says_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # W&B as a user has it: banners on
    run = tmp_path / "run"
    result = run_cli("run_train.py", *TINY_TRAIN, "logger=wandb", f"hydra.run.dir={run}", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    console = (result.stdout + result.stderr).splitlines()
    (wandb_line,) = [line for line in console if "W&B" in line or "wandb" in line.lower()]
    assert wandb_line.startswith(f"W&B offline run in {run / 'wandb'}") and "wandb sync " in wandb_line
    log = (run / "run_train.log").read_text()
    assert "step 3: val/loss" in log and "step 6: val/loss" in log and f"run dir: {run}" in log
    assert "wandb: Run summary:" in log and wandb_line in log  # W&B's banners: kept, out of the user's way

    failed = tmp_path / "failed"
    result = run_cli(
        "run_train.py", *TINY_TRAIN, "data=text", "data.path=/nonexistent.txt", f"hydra.run.dir={failed}",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: " in (failed / "run_train.log").read_text()  # the line the user saw, in the failed run's log
