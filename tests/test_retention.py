"""Checkpoint retention (issue 17, disk): last.pt and best.pt point to a step file instead of copying it;
keep_last=0 keeps only what they name; the bytes a run's checkpoints take are pinned."""

import pytest
import torch

from enhanced_tx.checkpoint import CheckpointManager, load_checkpoint, save_checkpoint
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.training.resume import RunRefused

from .test_training import copy_parts, quiet_trainer

POINTER_BYTES = 200  # a pointer file is a line of JSON


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((64, 64), float(step))}, "step": step}


def _bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_last_and_best_cost_no_second_copy(tmp_path):
    one = tmp_path / "one.pt"
    save_checkpoint(_state(0), one)
    state_bytes = one.stat().st_size
    one.unlink()
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save(_state(1), step=1, is_best=True)
    manager.save(_state(2), step=2)
    manager.save(_state(3), step=3)
    # steps 2 and 3 are the newest two; best.pt is step 1's bytes under another name; last.pt points to step 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "step_2.pt", "step_3.pt"]
    assert _bytes(tmp_path) <= 3 * state_bytes + POINTER_BYTES
    assert manager.last.stat().st_size < POINTER_BYTES
    assert load_checkpoint(manager.best)["step"] == 1 and load_checkpoint(manager.last)["step"] == 3


def test_keep_last_zero_keeps_only_what_last_and_best_name(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=0)
    for step in (1, 2, 3):
        manager.save(_state(step), step=step, is_best=step == 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "step_3.pt"]
    assert load_checkpoint(manager.last)["step"] == 3 and load_checkpoint(manager.best)["step"] == 2
    assert manager.latest_good() == manager.last


def _distinct_bytes(folder) -> int:
    """Bytes on disk under `folder`, a hard-linked file counted once."""
    files = {(p.stat().st_dev, p.stat().st_ino): p.stat().st_size for p in folder.iterdir() if p.is_file()}
    return sum(files.values())


def test_a_weights_only_job_keeps_one_lean_state_and_refuses_a_resume(tmp_path):
    full, lean = copy_parts(tmp_path / "full"), copy_parts(tmp_path / "lean")
    quiet_trainer(max_steps=8, eval_every=2).fit(full)  # evaluated and saved at steps 2, 4, 6, 8
    quiet_trainer(max_steps=8, eval_every=2, save_optimizer=False, keep_last=0).fit(lean)
    full_dir, lean_dir = RunFolder(tmp_path / "full").checkpoints_dir, RunFolder(tmp_path / "lean").checkpoints_dir
    one_full = RunFolder(tmp_path / "full").checkpoint(8).stat().st_size
    one_lean = RunFolder(tmp_path / "lean").checkpoint(8).stat().st_size
    assert one_lean < 0.5 * one_full  # AdamW's two moments are twice the weights
    # full: step_4, 6, 8 (keep_last=3) and best.pt (a link to one of them, or its own bytes once its step file
    # is pruned), last.pt a pointer; lean: step_8 (what last.pt points to) and best.pt
    assert _distinct_bytes(full_dir) <= 4 * one_full + POINTER_BYTES
    assert _distinct_bytes(lean_dir) <= 2 * one_lean + POINTER_BYTES
    assert sorted(p.name for p in lean_dir.iterdir()) == ["best.pt", "last.pt", "step_8.pt"]
    assert load_checkpoint(RunFolder(tmp_path / "lean").checkpoint("last"))["optimizer"] is None
    with pytest.raises(RunRefused, match="save_optimizer=false"):
        quiet_trainer(max_steps=8, eval_every=4, resume="auto").fit(copy_parts(tmp_path / "lean"))
