"""Checkpoint retention (issue 17, disk): last.pt and best.pt point to a step file instead of copying it;
keep_last=0 keeps only what they name; the bytes a run's checkpoints take are pinned."""

import torch

from enhanced_tx.checkpoint import CheckpointManager, load_checkpoint, save_checkpoint

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
