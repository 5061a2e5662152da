"""Callbacks: EMA and early stopping change nothing of the straight run's training, resume exactly, and
early stopping ends a run normally with its reason in the summary."""

import dataclasses
import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from enhanced_tx.checkpoint import load_checkpoint
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.training.callbacks import EMA, EarlyStopping
from enhanced_tx.training.monitor import Monitor
from enhanced_tx.training.preemption import TrainingInterrupted

from .test_training import SignalAtStep, copy_parts, quiet_trainer


def with_callbacks(parts, patience=50):
    return dataclasses.replace(parts, callbacks=[EMA(decay=0.9), EarlyStopping(patience=patience)])


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_ema_and_early_stopping_resume_bit_identical(tmp_path):
    straight = with_callbacks(copy_parts(tmp_path / "straight"))
    quiet_trainer(max_steps=10, eval_every=3).fit(straight)

    first = with_callbacks(copy_parts(tmp_path / "resumed", logger=SignalAtStep(step=4, signum=signal.SIGTERM)))
    with pytest.raises(TrainingInterrupted):
        quiet_trainer(max_steps=10, eval_every=3).fit(first)
    resumed = with_callbacks(copy_parts(tmp_path / "resumed", seed=123))
    quiet_trainer(max_steps=10, eval_every=3, resume="auto").fit(resumed)

    a, b = _params(straight.model), _params(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a, ema_b = straight.callbacks[0].shadow, resumed.callbacks[0].shadow
    assert ema_a.keys() == ema_b.keys() and all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert not all(torch.equal(ema_a[k], a[k].float()) for k in ema_a)  # an average, not the weights
    stop_a, stop_b = straight.callbacks[1].state_dict(), resumed.callbacks[1].state_dict()
    assert stop_a == stop_b and stop_a["best"] is not None
    # the EMA weights file holds the average, and the val/ema_loss rows are the same in both runs
    saved = load_file(RunFolder(tmp_path / "resumed").ema_weights)
    assert all(torch.equal(saved[k], ema_b[k]) for k in saved if k in ema_b)
    rows = {
        name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("straight", "resumed")
    }
    ema_losses = {name: {r["step"]: r["val/ema_loss"] for r in rs if "val/ema_loss" in r} for name, rs in rows.items()}
    assert ema_losses["straight"][9] == ema_losses["resumed"][9]


def test_early_stopping_ends_the_run_normally_with_the_reason(tmp_path):
    parts = copy_parts(tmp_path)
    # min_delta larger than any improvement: the second and third evaluations do not count as improving
    parts = dataclasses.replace(parts, callbacks=[EarlyStopping(patience=2, min_delta=100.0)])
    trainer = quiet_trainer(max_steps=40, eval_every=2)
    trainer.fit(parts)
    assert trainer.stop_reason is not None and "did not improve" in trainer.stop_reason
    last = load_checkpoint(RunFolder(tmp_path).checkpoint("last"))
    assert last["train_state"]["step"] == 6  # evaluations at 2 (best), 4 and 6 (no improvement twice)
    assert RunFolder(tmp_path).weights.is_file()  # a normal finish writes the final weights
    summary = json.loads(RunFolder(tmp_path).summary.read_text())
    assert summary["stop_reason"] == trainer.stop_reason and summary["stop_step"] == 6


def test_monitor_direction_and_min_delta():
    loss, bleu = Monitor.named("val/loss"), Monitor.named("val/bleu")
    assert loss.improves(1.0, 2.0) and not loss.improves(2.0, 1.0) and not loss.improves(1.5, 2.0, min_delta=1.0)
    assert bleu.improves(3.0, 2.0) and not bleu.improves(1.0, 2.0) and bleu.improves(1.0, None)
    assert not loss.improves(float("nan"), None) and loss.best_key == "val/best_loss"
    with pytest.raises(ValueError, match="must be one of"):
        Monitor.named("val/acc")
