"""The entry points as a user runs them: one-line errors, non-zero exits, preemption and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from enhanced_tx.data.corpus import sample_corpus_path

from .conftest import TINY_TRAIN

ROOT = Path(__file__).resolve().parent.parent


def seeded_cache(tmp_path: Path) -> Path:
    """A fresh cache folder for one command, holding only the built-in corpus (built once in the test process's
    own cache, tests/conftest.py, and copied): building it takes 3 s a command on a slow CPU, and these tests are
    not about it (test_data.py is)."""
    cache = tmp_path / "cache"
    corpus = sample_corpus_path()
    if not (cache / corpus.name).exists():
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus, cache / corpus.name)
    return cache


def run_cli(script: str, *args: str, tmp_path: Path, **popen) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "HYDRA_FULL_ERROR": "0",
        "ENHANCED_TX_CACHE": str(seeded_cache(tmp_path)),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        **popen,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_group_option_is_one_line_with_the_choices(tmp_path):
    result = run_cli("run_train.py", "norm=batchnorm", tmp_path=tmp_path)
    assert_one_line_error(result, "norm=batchnorm", "layernorm, rmsnorm")


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["data=text", "data.path=/nonexistent/corpus.txt"], ["data.path=/nonexistent/corpus.txt"]),
        (["model.d_model=30"], ["model.d_model=30", "model.n_heads=4"]),
        (["optimizer.lr=-1"], ["optimizer.lr=-1"]),
        (["trainer.batch_size=0"], ["trainer.batch_size=0"]),
        (["data.src_len=100", "model.max_seq_len=64"], ["model.max_seq_len=64"]),
        (["model.linear_backend=mkl"], ["model.linear_backend='mkl'", "auto, default, onednn"]),
    ],
    ids=["missing-file", "heads", "lr", "batch-size", "too-long", "linear-backend"],
)
def test_bad_training_input_is_one_line_and_a_non_zero_exit(tmp_path, text_file, overrides, fragments, request):
    args = [*TINY_TRAIN, "data=text", f"data.path={text_file}", *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli("run_train.py", *args, tmp_path=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing that looks like a result
    if request.node.callspec.id in ("missing-file", "too-long"):  # found while reading the data: a failed run
        assert json.loads((tmp_path / "run" / "FAILED.json").read_text())["error"]
    else:  # found in the config alone: refused before Hydra creates a run folder
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sigterm_mid_run_saves_and_resume_matches_an_uninterrupted_run(tmp_path, text_file):
    common = [
        *TINY_TRAIN,
        "data=text",
        f"data.path={text_file}",
        "model.d_model=64",
        "trainer.max_steps=60",
        "trainer.eval_every=30",
        "trainer.log_every=1",
        "trainer.batch_size=16",
    ]
    straight = run_cli("run_train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}", tmp_path=tmp_path)
    assert straight.returncode == 0, straight.stderr

    run_dir = tmp_path / "interrupted"
    env = {**os.environ, "WANDB_MODE": "offline", "ENHANCED_TX_CACHE": str(seeded_cache(tmp_path))}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_train.py"), *common, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "checkpoint saved" in stderr and "Traceback" not in stderr
    assert not (run_dir / "model.safetensors").exists()  # stopped early: no final weights yet

    resumed = run_cli("run_train.py", *common, f"hydra.run.dir={run_dir}", "trainer.resume=auto", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(run_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key
