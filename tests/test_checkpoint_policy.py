"""The retention policy (issue 17, disk): trainer.checkpoint=auto|full|weights, keep_last=auto, weights-only
states stored as safetensors so model.safetensors is a hard link of the last one, and a full best.pt rewritten
weights-only once its step file is pruned. The bytes of a sweep job are pinned against its weights' size."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

from enhanced_tx.checkpoint import CheckpointError, CheckpointManager, load_checkpoint, load_model_weights
from enhanced_tx.checkpoint.lean import is_weights_checkpoint, save_weights_checkpoint
from enhanced_tx.checkpoint.policy import FULL_KEEP_LAST, Retention, retention
from enhanced_tx.errors import ConfigError, EnhancedTxError
from enhanced_tx.generation.loading import load_run
from enhanced_tx.sweeps.summary import job_prompt, sweep_summary
from enhanced_tx.tasks.train import train

from .conftest import TINY_TRAIN, compose_train
from .test_training import quiet_trainer


def _distinct_bytes(*paths: Path) -> int:
    """Bytes of `paths` (folders recursively), a hard-linked file counted once: what `du` reports."""
    seen: dict[tuple[int, int], int] = {}
    files = [p for p in paths if p.is_file()]
    files += [Path(r) / n for p in paths if p.is_dir() for r, _, names in os.walk(p) for n in names]
    for path in files:
        st = path.stat()
        seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


# ----------------------------------------------------------------------------- the policy
def test_auto_keeps_weights_only_in_a_multirun_and_full_state_in_a_single_run():
    assert retention("auto", "auto", multirun=True) == Retention(weights_only=True, keep_last=0)
    assert retention("auto", "auto", multirun=False) == Retention(weights_only=False, keep_last=FULL_KEEP_LAST)
    assert retention("full", 5, multirun=True) == Retention(False, 5)  # explicit settings win over auto
    assert retention("weights", None, multirun=False) == Retention(True, None)
    assert retention("auto", "auto", save_optimizer=False, multirun=False).weights_only  # the older spelling
    with pytest.raises(ConfigError, match=r"trainer.checkpoint=lean must be one of auto \| full \| weights"):
        retention("lean")
    with pytest.raises(EnhancedTxError, match="trainer.keep_last=-1 must be a whole number >= 0, auto, or null"):
        quiet_trainer(keep_last=-1)


def test_a_weights_only_state_round_trips_with_tied_weights_and_its_plain_entries(tmp_path):
    shared = torch.randn(8, 4)
    state = {"model": {"embed.weight": shared, "head.weight": shared, "b": torch.arange(3)}, "step": 7,
             "optimizer": {"state": {}}, "rng": {"cpu": torch.zeros(3, dtype=torch.uint8)},
             "train_state": {"step": 7, "best_val_loss": float("inf")}, "config": {"model": {}}}  # fmt: skip
    path = tmp_path / "step_7.pt"
    save_weights_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert is_weights_checkpoint(path) and loaded["step"] == 7 and loaded["optimizer"] is None
    assert "rng" not in loaded and loaded["train_state"] == {"step": 7, "best_val_loss": float("inf")}
    assert torch.equal(loaded["model"]["head.weight"], shared) and torch.equal(loaded["model"]["b"], torch.arange(3))
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a flipped bit in a tensor's bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_a_full_best_becomes_weights_only_when_its_step_file_is_pruned(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1)
    full = {"model": {"w": torch.ones(16, 16)}, "optimizer": {"state": {0: {"m": torch.ones(16, 16)}}}}
    manager.save({**full, "step": 1}, step=1, is_best=True)
    assert os.path.samefile(manager.best, manager.step_path(1))  # shared while the step file is kept
    manager.save({**full, "step": 2}, step=2)
    assert not manager.step_path(1).exists() and is_weights_checkpoint(manager.best)
    best = load_checkpoint(manager.best)
    assert best["step"] == 1 and best["optimizer"] is None and torch.equal(best["model"]["w"], torch.ones(16, 16))
    assert load_checkpoint(manager.last)["optimizer"] is not None  # the last stays resumable


# ----------------------------------------------------------------------------- a sweep job, end to end
@pytest.fixture(scope="module")
def sweep_job(tmp_path_factory) -> Path:
    """A tiny job as a multirun writes it (trainer.checkpoint=weights is what auto picks there)."""
    tmp = tmp_path_factory.mktemp("sweep")
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(f"The quick brown fox jumps over the lazy dog {i}." for i in range(300)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train(tmp, *TINY_TRAIN, "data=text", f"data.path={corpus}", "trainer.checkpoint=weights",
                            "sample_prompts=[a fox, a dog]"))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return tmp / "run"


def test_a_sweep_job_costs_about_one_copy_of_its_weights(sweep_job):
    weights = (sweep_job / "model.safetensors").stat().st_size
    checkpoints = sweep_job / "checkpoints"
    # model.safetensors, last's step file and best.pt are one file (this short run's last is its best)
    assert os.path.samefile(sweep_job / "model.safetensors", checkpoints / "best.pt")
    assert _distinct_bytes(checkpoints, sweep_job / "model.safetensors") <= weights + 1024  # + the pointer
    assert _distinct_bytes(sweep_job) <= 1.6 * weights, sorted(p.name for p in checkpoints.iterdir())


def test_a_sweep_jobs_checkpoints_load_for_generation(sweep_job):
    last = load_run(sweep_job, "last")
    for spec in ("best", "auto", "model.safetensors", "checkpoints/step_6.pt"):
        other = load_run(sweep_job, spec)
        for name, value in other.model.state_dict().items():
            torch.testing.assert_close(value, last.model.state_dict()[name], rtol=0, atol=0, msg=f"{spec}: {name}")
    fresh = load_run(sweep_job, "last").model
    torch.nn.init.zeros_(fresh.embed.weight)
    load_model_weights(fresh, sweep_job / "checkpoints" / "best.pt")  # the weights loader reads it too
    assert torch.equal(fresh.embed.weight, last.model.embed.weight)


def test_a_sweep_job_refuses_a_resume_in_one_line(sweep_job):
    from enhanced_tx.training.resume import RunRefused

    from .test_training import copy_parts

    parts = copy_parts(sweep_job.parent / "lean")
    quiet_trainer(checkpoint="weights").fit(parts)
    with pytest.raises(RunRefused, match=r"holds weights only \(trainer.checkpoint=weights") as refused:
        quiet_trainer(resume="auto").fit(copy_parts(sweep_job.parent / "lean"))
    assert "\n" not in str(refused.value) and "trainer.init_from=" in str(refused.value)


def test_the_sweep_summary_generates_with_the_jobs_own_first_prompt(sweep_job, tmp_path):
    assert job_prompt(sweep_job) == "a fox"  # the sample_prompts= override
    no_override = tmp_path / "job"
    (no_override / "checkpoints").mkdir(parents=True)
    (no_override / "config.resolved.yaml").write_text("sample_prompts: null\n")
    (no_override / "tables.jsonl").write_text(
        '{"step": 3, "key": "val/samples", "columns": ["prompt", "continuation"], "rows": [["it\'s a\\nline", "x"]]}\n'
    )
    assert job_prompt(no_override) == "it's a\nline"  # the first validation source, as the job sampled it
    from .test_sweep_summary import _job

    sweep = tmp_path / "sweep"
    best = _job(sweep, 0, {"seed": 0}, [2.0])
    (best / "tables.jsonl").write_text((no_override / "tables.jsonl").read_text())
    word = shlex.split(sweep_summary(sweep)[-1])[-1]  # as the shell passes it; newlines folded to one line
    assert OverridesParser.create().parse_override(word).value() == "it's a line", word


def test_only_states_without_an_optimizer_anywhere_are_refused_for_resuming():
    """A sharded checkpoint's `.pt` has no "optimizer" key (its DCP folder holds it): it stays resumable, as a
    full state does; a weights-only state does not (the slow FSDP resume test runs the sharded case for real)."""
    from enhanced_tx.checkpoint import sharded
    from enhanced_tx.training.resume import holds_optimizer

    full = {"model": {"w": torch.zeros(2)}, "optimizer": {"state": {}, "param_groups": []}, "train_state": {}}
    assert holds_optimizer(full)
    assert holds_optimizer(sharded.reference(full, "dcp/step_3"))
    assert "optimizer" not in sharded.reference(full, "dcp/step_3")
    assert not holds_optimizer({**full, "optimizer": None})
    assert not holds_optimizer({"model": full["model"], "train_state": {}})
