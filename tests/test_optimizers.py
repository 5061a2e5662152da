"""The optimizer group (adamw, adafactor, muon): each learns, each resumes bit-identically, and Muon
takes exactly the hidden matrices while AdamW takes embeddings, the tied head and the norm gains."""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from enhanced_tx.checkpoint import load_checkpoint
from enhanced_tx.data.collate import Collator
from enhanced_tx.errors import ConfigError
from enhanced_tx.tracking.logger import MetricLogger
from enhanced_tx.training import Precision, TrainingParts, WarmupCosine
from enhanced_tx.training.optim import build_optimizer
from enhanced_tx.training.optimizers import MuonWithAdamW
from enhanced_tx.training.preemption import TrainingInterrupted

from .conftest import CONF_DIR, make_model
from .test_training import CopyTask, SignalAtStep, quiet_trainer

OPTIMIZERS = ["adamw", "adafactor", "muon"]


def _factory(name: str):  # noqa: ANN202
    """The shipped conf/optimizer/<name>.yaml, instantiated as run_train does (a partial awaiting parameters)."""
    return instantiate(OmegaConf.load(Path(CONF_DIR) / "optimizer" / f"{name}.yaml"))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_reduces_the_loss_on_a_fixed_tiny_batch(name):
    model = make_model("rope").train()
    optimizer = build_optimizer(_factory(name), model)
    generator = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, 97, (4, 8), generator=generator), torch.randint(4, 97, (4, 8), generator=generator)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def _parts(run_dir: Path, name: str, logger=None, seed: int = 0) -> TrainingParts:  # noqa: ANN001
    model = make_model("learned", vocab_size=40, d_model=64, seed=seed)
    logger = logger or MetricLogger()
    logger.start(run_dir)
    return TrainingParts(
        model=model,
        optimizer_factory=_factory(name),
        schedule=WarmupCosine(warmup=0.1),
        precision=Precision(),
        train_set=CopyTask(64, seed=0),
        val_set=CopyTask(8, seed=1),
        collator=Collator(pad_id=0, bos_id=1),
        logger=logger,
        run_dir=run_dir,
        device=torch.device("cpu"),
    )


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_after_n_steps_is_bit_identical_to_a_straight_run(name, tmp_path):
    trainer = partial(quiet_trainer, max_steps=6, eval_every=3, eval_batches=1)
    straight = _parts(tmp_path / "straight", name)
    trainer().fit(straight)

    first = _parts(tmp_path / "resumed", name, logger=SignalAtStep(step=3))
    with pytest.raises(TrainingInterrupted):  # SIGTERM at step 3, as a preemption
        trainer().fit(first)
    saved = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert saved["train_state"]["step"] == 3 and saved["optimizer"]["state"]  # optimizer moments on disk

    resumed = _parts(tmp_path / "resumed", name, seed=123)  # other init: weights must come from the checkpoint
    trainer(resume="auto").fit(resumed)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = make_model("learned").train()
    optimizer = build_optimizer(_factory("muon"), model)
    src, tgt = torch.randint(4, 97, (2, 6)), torch.randint(4, 97, (2, 6))
    F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten()).backward()
    optimizer.step()
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    for name, param in model.named_parameters():
        kind = set(optimizer.state[param])
        if id(param) in linear_weights:
            assert kind == {"momentum_buffer"}, name  # Muon's only state
        else:  # embeddings + tied head, the learned position table, norm gains
            assert kind == {"step", "exp_avg", "exp_avg_sq"}, name
    assert len(optimizer.state) == len(list(model.parameters()))


def test_muon_state_dict_round_trip_continues_exactly():
    """Load a copy's state into a fresh MuonWithAdamW: the next steps match the original's bit for bit."""
    src, tgt = torch.randint(4, 97, (2, 6)), torch.randint(4, 97, (2, 6))

    def step(model, optimizer):  # noqa: ANN001, ANN202
        optimizer.zero_grad()
        F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten()).backward()
        optimizer.step()

    model, twin = make_model("rope").train(), make_model("rope", seed=5).train()
    optimizer = build_optimizer(_factory("muon"), model)
    for _ in range(2):
        step(model, optimizer)
    twin.load_state_dict(model.state_dict())
    twin_optimizer = build_optimizer(_factory("muon"), twin)
    saved = io.BytesIO()  # through bytes, as a checkpoint does (an in-memory state dict shares its tensors)
    torch.save(optimizer.state_dict(), saved)
    saved.seek(0)
    twin_optimizer.load_state_dict(torch.load(saved, weights_only=True))
    for group in twin_optimizer.param_groups:
        group["lr"] *= 0.5  # a schedule edits the shared groups: both halves must see it
    for group in optimizer.param_groups:
        group["lr"] *= 0.5
    for _ in range(2):
        step(model, optimizer)
        step(twin, twin_optimizer)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_muon_without_hidden_matrix_groups_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="no parameter group of kind 'hidden_matrices'") as error:
        MuonWithAdamW([{"params": [torch.nn.Parameter(torch.zeros(3, 3))]}])
    assert "\n" not in str(error.value)
