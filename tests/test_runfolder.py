"""RunFolder: one writer per run folder (an OS lock naming its holder), readers never blocked."""

import os
import subprocess
import sys
import textwrap

import pytest

from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.runfolder import RunFolder, RunFolderLocked


def test_paths_are_inside_the_folder(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.checkpoint("best") == tmp_path / "checkpoints" / "best.pt"
    assert folder.checkpoint(40) == folder.checkpoint("step_40") == tmp_path / "checkpoints" / "step_40.pt"
    assert folder.is_step_checkpoint(folder.checkpoint(3)) and not folder.is_step_checkpoint(folder.checkpoint("last"))
    with pytest.raises(EnhancedTxError, match="not a name"):
        folder.checkpoint("../x")


def test_a_folder_holds_a_run_once_a_run_wrote_results(tmp_path):
    folder = RunFolder(tmp_path)
    folder.tokenizer_dir.mkdir()  # what a run writes before it trains does not count
    folder.resolved_config.write_text("seed: 0\n")
    folder.metrics.write_text("")
    assert folder.exists() and not folder.holds_run()
    folder.metrics.write_text('{"step": 1}\n')
    assert folder.holds_run()
    folder.metrics.unlink()
    folder.checkpoints_dir.mkdir()
    folder.checkpoint(2).write_bytes(b"x")
    assert folder.holds_run()
    folder.checkpoint(2).unlink()
    assert not folder.holds_run()
    folder.weights.write_bytes(b"x")
    assert folder.holds_run()


def test_a_second_writer_is_refused_naming_the_holder_and_readers_still_read(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from enhanced_tx.runfolder import RunFolder
            folder = RunFolder({str(tmp_path)!r}).lock_for_writing()
            print("locked", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        folder = RunFolder(tmp_path)
        with pytest.raises(RunFolderLocked) as refused:
            folder.lock_for_writing()
        message = str(refused.value)
        assert f"process {holder.pid}" in message and "\n" not in message
        assert folder.lock_holder() == holder.pid  # a reader asks without taking anything
        assert folder.lock_holder() == holder.pid
    finally:
        holder.kill()  # a killed writer leaves no stale lock: the kernel releases it
        holder.wait()
    folder = RunFolder(tmp_path).lock_for_writing()
    assert folder.is_locked_by_me and folder.lock_holder() == os.getpid()  # another open file: the lock shows
    folder.unlock()
    assert RunFolder(tmp_path).lock_holder() is None


def test_a_read_only_folder_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run").chmod(0o500)
    try:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        with pytest.raises(EnhancedTxError, match="cannot write into run folder"):
            RunFolder(tmp_path / "run").lock_for_writing()
    finally:
        (tmp_path / "run").chmod(0o700)
