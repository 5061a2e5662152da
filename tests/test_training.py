"""Training end to end: the run directory, learning, exact resume, accumulation, precisions."""

from __future__ import annotations

import json
import os
import signal
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from enhanced_tx.checkpoint import load_checkpoint, load_model_weights
from enhanced_tx.data.collate import Collator
from enhanced_tx.tasks.train import train
from enhanced_tx.tracking.logger import MetricLogger
from enhanced_tx.training import BFloat16, Float16, Precision, Trainer, TrainingParts, WarmupCosine
from enhanced_tx.training.preemption import TrainingInterrupted

from .conftest import TINY_TRAIN, compose_train, make_model


class CopyTask(Dataset):
    """Learnable synthetic task: the target is a copy of the source, then EOS (id 2)."""

    def __init__(self, n: int, seed: int, length: int = 8) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.src = torch.randint(4, 40, (n, length), generator=generator)

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"src": self.src[i], "tgt": torch.cat([self.src[i], torch.tensor([2])])}


class SignalAtStep(MetricLogger):
    """A logger that sends the process a signal when a given step is logged (simulated preemption)."""

    def __init__(self, step: int, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.at, self.signum = step, signum

    def log(self, metrics, step):
        super().log(metrics, step)
        if step == self.at:
            os.kill(os.getpid(), self.signum)


def copy_parts(tmp_path: Path, precision=None, logger=None, seed: int = 0) -> TrainingParts:
    # learned absolute positions: a copy needs absolute positions in the encoder (rope alone learns it slowly)
    model = make_model("learned", vocab_size=40, d_model=64, seed=seed)
    logger = logger or MetricLogger()
    logger.start(tmp_path)
    return TrainingParts(
        model=model,
        optimizer_factory=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1),
        schedule=WarmupCosine(warmup=0.1),
        precision=precision or Precision(),
        train_set=CopyTask(256, seed=0),
        val_set=CopyTask(32, seed=1),
        collator=Collator(pad_id=0, bos_id=1),
        logger=logger,
        run_dir=tmp_path,
        device=torch.device("cpu"),
    )


def quiet_trainer(**kwargs) -> Trainer:
    settings = dict(batch_size=8, max_steps=8, eval_every=4, eval_batches=2, log_every=1, peak_flops=1e12)
    settings.update(kwargs)
    return Trainer(progress_bar=False, **settings)


def test_tiny_end_to_end_run_writes_the_whole_run_directory(tmp_path, text_file):
    cfg = compose_train(tmp_path, *TINY_TRAIN, "data=text", f"data.path={text_file}")
    best = train(cfg)
    run = tmp_path / "run"
    for name in ("config.resolved.yaml", "run_info.json", "metrics.jsonl", "model.safetensors"):
        assert (run / name).is_file(), name
    for name in ("last.pt", "best.pt", "step_3.pt", "step_6.pt"):
        assert (run / "checkpoints" / name).is_file(), name
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r["val/loss"] for r in rows if "val/loss" in r]
    assert len(val) == 2 and best == pytest.approx(min(val))
    assert any("perf/tokens_per_s" in r and "train/lr" in r and "train/grad_norm" in r for r in rows)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["train_state"]["step"] == 6 and state["config"]["trainer"]["max_steps"] == 6


def test_loss_falls_by_a_large_margin_on_a_learnable_task(tmp_path):
    parts = copy_parts(tmp_path)
    quiet_trainer(batch_size=16, max_steps=150, eval_every=150, log_every=10).fit(parts)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interrupted_then_resumed_run_is_bit_identical_to_a_straight_run(tmp_path):
    straight = copy_parts(tmp_path / "straight")
    quiet_trainer(max_steps=10, eval_every=5).fit(straight)

    first = copy_parts(tmp_path / "resumed", logger=SignalAtStep(step=4))
    with pytest.raises(TrainingInterrupted) as info:
        quiet_trainer(max_steps=10, eval_every=5).fit(first)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["train_state"]["step"] == 4

    # A fresh process would rebuild everything; a different init seed proves the weights come from disk.
    resumed = copy_parts(tmp_path / "resumed", seed=123)
    quiet_trainer(max_steps=10, eval_every=5, resume="auto").fit(resumed)
    a, b = _params(straight.model), _params(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_gradient_accumulation_equals_one_larger_batch(tmp_path):
    one = copy_parts(tmp_path / "one")
    quiet_trainer(batch_size=8, max_steps=3, length_bucketing=False).fit(one)
    accumulated = copy_parts(tmp_path / "accumulated")
    quiet_trainer(batch_size=4, gradient_accumulation_steps=2, max_steps=3, length_bucketing=False).fit(accumulated)
    a, b = _params(one.model), _params(accumulated.model)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("precision", [BFloat16(), Float16()], ids=["bf16", "fp16"])
def test_mixed_precision_runs_end_with_finite_losses(tmp_path, precision):
    parts = copy_parts(tmp_path, precision=precision)
    with pytest.warns(UserWarning, match="bf16") if precision.name == "fp16" else _no_warning():
        best = quiet_trainer(max_steps=4, eval_every=4).fit(parts)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in rows if "train/loss" in r)
    assert torch.isfinite(torch.tensor(best))


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_weights_only_file_loads_into_a_fresh_model_with_the_same_outputs(tmp_path, half):
    parts = copy_parts(tmp_path)
    quiet_trainer(max_steps=4, eval_every=4, save_half_precision=half).fit(parts)
    fresh = make_model("learned", vocab_size=40, d_model=64, seed=99)
    load_model_weights(fresh, tmp_path / "model.safetensors")
    src = torch.randint(4, 40, (2, 8))
    tgt = torch.randint(4, 40, (2, 5))
    with torch.no_grad():
        expected, got = parts.model.eval()(src, tgt), fresh(src, tgt)
    if half:
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-2)
    else:
        assert torch.equal(got, expected)


def test_nonfinite_losses_stop_the_run_with_a_clear_message(tmp_path):
    from enhanced_tx.training import TrainingDiverged

    parts = copy_parts(tmp_path)
    with torch.no_grad():
        parts.model.embed.weight[5].fill_(float("nan"))  # every batch containing token 5 gives NaN
    with pytest.raises(TrainingDiverged, match="non-finite for 3 steps"):
        quiet_trainer(max_steps=20, max_nonfinite_steps=3).fit(parts)
    assert not (tmp_path / "checkpoints" / "best.pt").exists()  # a NaN model is never saved as best
