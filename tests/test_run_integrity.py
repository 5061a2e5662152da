"""Run-folder integrity (issue 14): one writer, no silent restart over unreadable checkpoints, one history
after a kill, no stale temporary files, the run's own tokenizer on resume, files named for what they are."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from enhanced_tx.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from enhanced_tx.checkpoint.atomic import clean_stale_temporaries
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.runfolder import RunFolder, RunFolderLocked
from enhanced_tx.tasks.train import prepare_tokenizer, train
from enhanced_tx.training.resume import ResumePoint, RunRefused, find_resume_point, rewind_history, start_over

from .conftest import TINY_TRAIN, compose_train


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_training_into_a_locked_folder_is_refused_in_one_line(tmp_path, text_file):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from enhanced_tx.runfolder import RunFolder
            held = RunFolder({str(run)!r}).lock_for_writing()
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderLocked, match=f"in use by process {holder.pid}"):
            train(compose_train(tmp_path, *TINY_TRAIN, "data=text", f"data.path={text_file}"))
        assert not RunFolder(run).metrics.exists()  # nothing written by the refused writer
    finally:
        holder.kill()
        holder.wait()


def test_auto_resume_over_only_unreadable_checkpoints_stops_and_lists_them(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoints_dir.mkdir()
    folder.checkpoint(3).write_text("hello world")
    folder.checkpoint("last").write_bytes(b"")
    with pytest.raises(RunRefused) as refused:
        find_resume_point("auto", tmp_path)
    message = str(refused.value)
    assert "step_3.pt" in message and "last.pt" in message and "trainer.resume=none" in message
    assert "hydra.run.dir" in message and "\n" not in message
    assert find_resume_point("auto", tmp_path / "empty") is None  # nothing saved yet: a fresh start


def test_resume_none_moves_the_old_run_aside(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoints_dir.mkdir()
    folder.checkpoint(3).write_text("x")
    folder.metrics.write_text('{"step": 1}\n')
    aside = start_over(tmp_path)
    assert (aside / "metrics.jsonl").read_text() == '{"step": 1}\n' and (aside / "checkpoints" / "step_3.pt").exists()
    assert not folder.holds_run() and start_over(tmp_path) is None


def test_rewind_history_keeps_every_step_once(tmp_path):
    folder = RunFolder(tmp_path)
    rows = [{"step": s, "train/loss": 1.0 / s} for s in range(1, 11)]
    folder.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 11, "trai')  # cut by a kill
    assert rewind_history(tmp_path, 6) == 5
    kept = [json.loads(line) for line in folder.metrics.read_text().splitlines()]
    assert kept == rows[:6]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / f".best.pt.{_dead_pid()}.0a1b2c3d.tmp"
    live = tmp_path / f".last.pt.{os.getpid()}.0a1b2c3d.tmp"
    other = tmp_path / "notes.tmp"
    for path in (dead, live, other):
        path.write_text("x")
    assert clean_stale_temporaries(tmp_path) == [dead]
    assert live.exists() and other.exists() and not dead.exists()


def test_a_resume_whose_tokenizer_is_gone_is_refused(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.checkpoints_dir.mkdir(parents=True)
    point = ResumePoint(folder.checkpoint("last"), {"train_state": {"step": 3}})
    cfg = compose_train(tmp_path, *TINY_TRAIN)
    with pytest.raises(RunRefused, match=r"tokenizer .*tokenizer is missing.*started with"):
        prepare_tokenizer(cfg, data=None, run_dir=folder.root, resume=point)
    assert not folder.tokenizer_dir.exists()  # no new tokenizer trained in its place


def test_a_read_only_run_folder_is_one_line(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def read_only(path, mode="r", *args, **kwargs):
        if str(path).endswith(".lock") and mode != "r":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(EnhancedTxError, match=r"cannot write into run folder .*Permission denied.*writable"):
        RunFolder(tmp_path).lock_for_writing()


@pytest.mark.parametrize(
    "content, what", [(b"hello world", "plain text ('hello world'"), (b"", "an empty file"), (b"\x00\xff" * 8, "bytes")]
)
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, content, what):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and what in message
    assert "pickled" not in message and "(101)" not in message


def test_the_manager_still_reads_good_checkpoints_beside_bad_ones(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save({"w": torch.ones(2)}, step=2)
    (tmp_path / "step_5.pt").write_text("hello world")
    with pytest.warns(UserWarning, match="plain text"):
        assert manager.latest_good() == manager.last
