"""Short and budget runs: evaluated a few times whatever eval_every says, and a progress bar that follows the
limit that ends the run."""

from __future__ import annotations

import json

import pytest

from enhanced_tx.training.budget import Budget
from enhanced_tx.training.eval_schedule import EvalSchedule
from enhanced_tx.training.progress_bar import ProgressBar
from enhanced_tx.training.state import TrainingState

from .conftest import TINY_TRAIN
from .test_cli import run_cli


def _evaluated_steps(schedule: EvalSchedule, budget: Budget, last: int) -> list[int]:
    return [s for s in range(1, last + 1) if schedule.due(s, budget.progress(s, 0, 0, 0.0))]


def test_a_run_shorter_than_eval_every_is_still_evaluated_at_each_quarter():
    budget = Budget(max_steps=30)
    assert _evaluated_steps(EvalSchedule(100, budget, 0.0), budget, 30) == [8, 15, 23]  # + the end, by the loop


def test_a_long_enough_run_keeps_exactly_its_eval_every():
    budget = Budget(max_steps=400)
    assert _evaluated_steps(EvalSchedule(100, budget, 0.0), budget, 400) == [100, 200, 300, 400]


def test_a_resumed_run_keeps_only_the_marks_ahead_of_it():
    budget = Budget(max_steps=30)
    assert EvalSchedule(100, budget, progress=15 / 30).marks == [0.75]


def test_a_budget_run_is_evaluated_at_quarters_of_its_budget():
    budget = Budget(max_steps=1_000_000, minutes=10)
    schedule = EvalSchedule(10_000, budget, 0.0)
    due = [m for m in range(1, 11) if schedule.due(m, budget.progress(m, 0, 0, 60.0 * m))]
    assert due == [3, 5, 8]  # minutes 2.5, 5 and 7.5 passed; the end (10) is the loop's


def test_the_bar_of_a_budget_run_shows_the_fraction_of_the_limit_that_ends_it(capsys):
    state = TrainingState()
    bar = ProgressBar(Budget(max_steps=1_000_000, minutes=10), state, enabled=True)
    state.step, state.train_seconds = 50, 150.0  # 2.5 of 10 minutes, 50 of a million steps
    bar.advance(state)
    assert not bar.steps_only and bar._bar.n == pytest.approx(25.0) and bar._bar.total == 100.0
    assert bar._bar.desc == "train (minutes)"
    bar.set_postfix(loss="1.0")
    bar.close()
    shown = capsys.readouterr().err
    assert "25%" in shown and "step=50" in shown and "1000000" not in shown


def test_the_bar_of_a_step_run_counts_steps(capsys):
    state = TrainingState(step=10)  # a resumed run starts where it stopped
    bar = ProgressBar(Budget(max_steps=40), state, enabled=True)
    state.step = 13
    bar.advance(state)
    assert bar.steps_only and bar._bar.total == 40 and bar._bar.n == 13
    bar.close()
    assert "13/40" in capsys.readouterr().err


def test_a_short_run_logs_validation_points_across_the_run(tmp_path):
    run = tmp_path / "run"
    args = [*TINY_TRAIN, "trainer.max_steps=6", "trainer.eval_every=100", f"hydra.run.dir={run}"]
    result = run_cli("run_train.py", *args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val/loss" in r] == [2, 3, 5, 6]  # quarters (1.5, 3, 4.5) and the end
