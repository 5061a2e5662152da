"""run_eval.py end to end in a subprocess: Hydra entry point, printed report, files, no stray run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from enhanced_tx.cli import guarded
from enhanced_tx.tasks.evaluate import evaluate
from enhanced_tx.tasks.train import train

from .conftest import TINY_TRAIN, compose_train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_pairs_run(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"source": f"w{i % 5} x", "target": f"W{i % 5} X"}) + "\n" for i in range(30)))
    overrides = [o for o in TINY_TRAIN if not o.startswith("data.")]
    train(
        compose_train(
            tmp_path, *overrides, "data=pairs", f"data.path={pairs}", "data.max_src_len=16", "data.max_tgt_len=16"
        )
    )
    torch.set_num_threads(before)
    return tmp_path / "run", pairs


@pytest.mark.slow  # ~12 s: a fresh interpreter imports torch, transformers and Hydra
def test_run_eval_end_to_end_in_a_subprocess(tiny_pairs_run, tmp_path):
    run_dir, pairs = tiny_pairs_run
    test_file = tmp_path / "newstest.tsv"
    test_file.write_text("source\ttarget\nw1 x\tW1 X\nw2 x\tW2 X\nw3 x\tW3 X\n")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_eval.py"),
            "run=latest",
            f"runs_root=[{tmp_path}]",
            f"data.path={test_file}",
            "sampler=beam",
            "sampler.num_beams=2",
            "max_new_tokens=8",
            "progress_bar=false",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "BLEU = " in done.stdout and "sacrebleu signatures: BLEU nrefs:1|case:mixed" in done.stdout
    assert "exact match" in done.stdout and "tokens/s" in done.stdout
    record = json.loads((run_dir / "eval" / "newstest.json").read_text())
    assert record["count"] == 3 and record["max_new_tokens"] == 8
    assert record["sampler"]["_target_"].endswith("BeamSearch") and record["sampler"]["num_beams"] == 2
    rows = [json.loads(line) for line in (run_dir / "eval" / "newstest.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == ["W1 X", "W2 X", "W3 X"]
    assert list(workdir.iterdir()) == []  # no outputs/, .hydra/ or log file: run=latest still finds the run


def test_run_eval_errors_are_one_line(tmp_path, capsys):
    cfg = compose_train(tmp_path, f"run={tmp_path / 'missing'}", "data.path=x.jsonl", config_name="eval")
    workdir = Path(cfg.paths.output_dir)  # Hydra's output folder of run_eval.py: the working directory
    workdir.mkdir(parents=True)
    (workdir / "FAILED.json").write_text('{"error": "a training run that failed here"}')
    with pytest.raises(SystemExit) as exit_info:
        guarded(evaluate)(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run=") and "is not a training run folder" in err[0]
    # evaluation neither clears nor writes failure markers in the folder it was started from
    assert json.loads((workdir / "FAILED.json").read_text()) == {"error": "a training run that failed here"}


@pytest.mark.parametrize("setting", ["max_new_tokens=0", "max_new_tokens=-3", "batch_size=0"])
def test_impossible_numbers_are_one_line_before_the_run_is_loaded(setting, tmp_path, capsys):
    """Zero or negative is an error naming the key (as in run_generate.py), never a silent default; it comes
    before the run is looked up (the run here does not exist)."""
    cfg = compose_train(tmp_path, f"run={tmp_path / 'missing'}", "data.path=x.jsonl", setting, config_name="eval")
    with pytest.raises(SystemExit) as exit_info:
        guarded(evaluate)(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    key, value = setting.split("=")
    assert len(err) == 1 and f"{key}={value} must be a whole number >= 1" in err[0]


def test_more_new_tokens_than_the_model_has_positions_is_one_line(tiny_pairs_run, tmp_path, capsys):
    run_dir, pairs = tiny_pairs_run
    cfg = compose_train(tmp_path, f"run={run_dir}", f"data.path={pairs}", "max_new_tokens=100000", config_name="eval")
    with pytest.raises(SystemExit):
        guarded(evaluate)(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert "max_new_tokens=100000 exceeds model.max_seq_len=" in err[-1]
    assert not (run_dir / "eval").exists()  # nothing written
