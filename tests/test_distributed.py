"""Distributed training: strategies, torchrun plumbing, DDP/FSDP against one process, sharded checkpoints.

The slow tests launch `torchrun --standalone --nproc_per_node=2 run_train.py ...` on CPU (gloo) and compare
with one process at the same global batch. Tolerance: per logged step, |distributed - single| <= 1e-5 *
|single| for train/loss and val/loss (measured: <= 6e-7 absolute, i.e. ~1e-7 relative; only the reduction
order differs), and grad norms within 1e-5 relative.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file

from enhanced_tx.data.sampling import EpochBatchSampler
from enhanced_tx.errors import ConfigError
from enhanced_tx.launch import prepare_argv, torchrun_overrides, translate_group_aliases
from enhanced_tx.training.distributed import DDPStrategy, SingleProcess, rescale_position
from enhanced_tx.training.fsdp import FSDPStrategy

from .conftest import CONF_DIR, TINY_TRAIN, compose_train

ROOT = Path(__file__).resolve().parent.parent
REL_TOL = 1e-5
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A transformer maps a source sequence to a target sequence.",
    "Attention lets every position look at every other position.",
    "Checkpoints hold the full training state for an exact resume.",
]


# ---------------------------------------------------------------------------------------------- fast
@pytest.mark.parametrize(
    "option, expected",
    [("single", SingleProcess), ("ddp", DDPStrategy), ("fsdp", FSDPStrategy), ("auto", SingleProcess)],
)
def test_every_strategy_option_is_a_class_under_trainer_strategy(option, expected, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    first_line = (Path(CONF_DIR) / "trainer" / "strategy" / f"{option}.yaml").read_text().splitlines()[0]
    assert first_line == "# @package trainer.strategy"
    cfg = compose_train(tmp_path, f"trainer/strategy={option}")
    assert "strategy" not in cfg
    trainer = instantiate(cfg.trainer)
    assert type(trainer.strategy) is expected
    assert (trainer.rank, trainer.world_size, trainer.is_main) == (0, 1, True)


def test_default_is_auto_which_picks_ddp_only_under_a_multi_process_launch(tmp_path, monkeypatch):
    cfg = compose_train(tmp_path)
    assert cfg.trainer.strategy._target_.endswith("auto_strategy")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, DDPStrategy) and (strategy.rank, strategy.world_size) == (1, 2)
    assert not strategy.is_main
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert type(instantiate(cfg.trainer.strategy)) is SingleProcess


def test_single_refuses_to_run_in_a_multi_process_launch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="trainer.strategy=ddp"):
        SingleProcess().setup(torch.device("cpu"))


def test_strategy_alias_selects_the_group_option():
    argv = ["run_train.py", "trainer.strategy=fsdp", "trainer.strategy.backend=gloo", "x.strategy=ddp"]
    assert translate_group_aliases(argv) == [
        "run_train.py",
        "trainer/strategy=fsdp",
        "trainer.strategy.backend=gloo",
        "x.strategy=ddp",
    ]
    assert translate_group_aliases(["r", "trainer.strategy=single,ddp"])[1] == "trainer/strategy=single,ddp"


def test_torchrun_ranks_share_a_folder_named_by_the_rendezvous_id_and_only_rank_0_writes_hydra():
    env = {"TORCHELASTIC_RUN_ID": "job42", "WORLD_SIZE": "2"}
    assert torchrun_overrides(["r"], {**env, "RANK": "0"}) == ["hydra.run.dir=outputs/torchrun/job42"]
    assert torchrun_overrides(["r"], {**env, "RANK": "1"}) == [
        "hydra.run.dir=outputs/torchrun/job42",
        "hydra.output_subdir=null",
        "hydra/job_logging=stdout",
    ]
    assert torchrun_overrides(["r", "-m"], {**env, "RANK": "0"}) == [
        "hydra.run.dir=outputs/torchrun/job42",
        "hydra.sweep.dir=multirun/torchrun/job42",
    ]
    assert torchrun_overrides(["r", "a=1"], {}) == []  # not under torchrun: nothing changes
    assert prepare_argv(["r", "trainer.strategy=ddp"], env={}) == ["r", "trainer/strategy=ddp"]


def test_torchrun_without_a_rendezvous_id_is_a_clear_error_unless_the_folder_is_given():
    env = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "4", "RANK": "0"}
    with pytest.raises(SystemExit, match="--standalone.*--rdzv-id"):
        torchrun_overrides(["r"], env)
    assert torchrun_overrides(["r", "hydra.run.dir=/shared/run"], env) == []


@pytest.mark.parametrize("bucketing", [False, True])
def test_a_resume_at_another_world_size_continues_after_the_consumed_batches(bucketing):
    lengths = np.random.default_rng(0).integers(4, 30, size=203)
    data = lengths if bucketing else len(lengths)
    done = 5  # batches each of 2 ranks consumed
    consumed = {
        i
        for r in range(2)
        for b in EpochBatchSampler(data, 4, seed=3, rank=r, world_size=2).rank_batches(0)[:done]
        for i in b
    }
    for world_size in (1, 3):
        start = rescale_position(done, 2, 4, world_size, 4)
        resumed = [
            EpochBatchSampler(data, 4, seed=3, start_batch=start, rank=r, world_size=world_size)
            for r in range(world_size)
        ]
        first = {i for sampler in resumed for i in next(iter(sampler))}
        assert len(first & consumed) < 4 * world_size  # at most part of one global batch is seen again
        assert consumed | {i for s in resumed for b in s for i in b} == set(range(len(lengths)))  # none skipped
    if not bucketing:  # another per-rank batch size (same global batch): exact, item for item
        single = EpochBatchSampler(data, 8, seed=3, start_batch=rescale_position(done, 2, 4, 1, 8))
        assert set(next(iter(single))) == set(EpochBatchSampler(data, 8, seed=3).rank_batches(0)[done])


# ---------------------------------------------------------------------------------------------- slow
def _corpus(folder: Path) -> Path:
    path = folder / "corpus.txt"
    path.write_text("\n".join(SENTENCES[i % 4] + f" Line {i}." for i in range(400)))
    return path


def _overrides(folder: Path, corpus: Path, *extra: str) -> list[str]:
    return [
        *TINY_TRAIN,
        "data=text",
        f"data.path={corpus}",
        f"paths.cache_dir={folder / 'cache'}",
        "trainer.length_bucketing=false",  # the global batch then holds the same items at any world size
        *extra,
    ]


def _torchrun(cwd: Path, *overrides: str, nproc: int = 2, timeout: float = 120) -> str:
    """Run a torchrun job to the end (its ranks are killed if it does not finish); returns its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    job = subprocess.Popen(
        [*command, str(ROOT / "run_train.py"), *overrides],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = job.communicate(timeout=timeout)
    finally:
        job.kill()
        _kill_ranks(next(o for o in overrides if o.startswith("paths.cache_dir=")))
    assert job.returncode == 0, output[-5000:]
    return output


def _kill_ranks(argument: str) -> None:
    """Never leave ranks behind: one stuck in a collective outlives torchrun and ignores a first SIGTERM."""
    import signal

    for pid in _worker_pids(argument) if Path("/proc/self/environ").exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _curve(run_dir: Path, key: str) -> dict[int, float]:
    return {m["step"]: m[key] for m in _metrics(run_dir) if key in m}


def _assert_same_curve(run_dir: Path, reference: Path, keys=("train/loss", "val/loss", "train/grad_norm")):
    for key in keys:
        got, expected = _curve(run_dir, key), _curve(reference, key)
        assert got.keys() == expected.keys() and expected, key
        for step, value in expected.items():
            assert got[step] == pytest.approx(value, rel=REL_TOL), (key, step)


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory) -> tuple[Path, Path]:
    """The reference: one process, batch 8 (the global batch of 2 ranks x 4)."""
    from enhanced_tx.tasks.train import train

    folder = tmp_path_factory.mktemp("single")
    corpus = _corpus(folder)
    train(compose_train(folder, *_overrides(folder, corpus, "trainer.batch_size=8")))
    return folder / "run", corpus


@pytest.mark.slow
def test_ddp_with_two_ranks_of_batch_4_follows_one_process_of_batch_8(single_process_run, tmp_path):
    reference, corpus = single_process_run
    run_dir = tmp_path / "ddp"
    _torchrun(
        tmp_path,
        *_overrides(tmp_path, corpus, "trainer.batch_size=4", "trainer.strategy=ddp", f"hydra.run.dir={run_dir}"),
    )
    _assert_same_curve(run_dir, reference)
    assert set(_curve(run_dir, "perf/global_batch").values()) == {8}
    assert _curve(run_dir, "perf/tokens") == _curve(reference, "perf/tokens")  # every item counted once


@pytest.mark.slow
def test_fsdp_trains_like_one_process_and_its_checkpoint_resumes_in_one_process(single_process_run, tmp_path):
    from enhanced_tx.tasks.train import train
    from enhanced_tx.training.convert import convert

    reference, corpus = single_process_run
    run_dir = tmp_path / "fsdp"
    _torchrun(
        tmp_path,
        *_overrides(tmp_path, corpus, "trainer.batch_size=4", "trainer.strategy=fsdp", f"hydra.run.dir={run_dir}"),
    )
    _assert_same_curve(run_dir, reference)
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in (checkpoints / "dcp").iterdir()) == ["step_3", "step_6"]
    assert len(list((checkpoints / "dcp" / "step_6").glob("*.distcp"))) == 2  # one shard per rank

    # the sharded checkpoint, loaded in one process, holds exactly the weights the run ended with
    final = load_file(run_dir / "model.safetensors")
    converted = load_file(convert(run_dir, "last"))
    assert final.keys() == converted.keys() and all(torch.equal(final[k], converted[k]) for k in final)
    # generation loads the sharded checkpoint directly, in one process
    from enhanced_tx.generation.loading import load_run

    loaded = load_run(run_dir, "last").model.state_dict()
    assert all(torch.equal(loaded[k], final[k]) for k in final)

    # resume step 3 of the 2-rank run in one process (batch 8): it continues on the same curve
    resumed = tmp_path / "resumed"
    cfg = compose_train(
        resumed, *_overrides(resumed, corpus, "trainer.batch_size=8", f"trainer.resume={checkpoints / 'step_3.pt'}")
    )
    train(cfg)
    assert min(_curve(resumed / "run", "train/loss")) == 4
    assert _curve(resumed / "run", "val/loss")[6] == pytest.approx(_curve(run_dir, "val/loss")[6], rel=REL_TOL)
    assert _curve(resumed / "run", "train/loss")[6] == pytest.approx(_curve(run_dir, "train/loss")[6], rel=REL_TOL)
    after = load_file(resumed / "run" / "model.safetensors")
    assert all(torch.allclose(after[k], final[k], atol=1e-5) for k in final)


@pytest.mark.slow
def test_a_torchrun_job_makes_one_run_folder_and_one_wandb_run(tmp_path):
    corpus = _corpus(tmp_path)
    _torchrun(
        tmp_path,
        *_overrides(
            tmp_path, corpus, "trainer.batch_size=4", "trainer.max_steps=2", "trainer.eval_every=2", "logger=wandb"
        ),
    )
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["torchrun"]  # no clock-named folder of a rank
    runs = list((tmp_path / "outputs" / "torchrun").iterdir())
    assert len(runs) == 1
    run_dir = runs[0]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "tokenizer" / "tokenizer.json").is_file()
    assert len(list(run_dir.glob("*.log"))) == 1
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert [m["step"] for m in _metrics(run_dir) if "train/loss" in m] == [2]  # logged once, by rank 0


def _worker_pids(argument: str, rank: int | None = None) -> list[int]:
    """The ranks (or one rank) of a torchrun job with this command-line argument, from /proc (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in cmdline and (rank is None or f"RANK={rank}".encode() in environ):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step_with_a_checkpoint(tmp_path):
    import signal
    import time

    from enhanced_tx.checkpoint import read_checkpoint_step

    corpus, run_dir = _corpus(tmp_path), tmp_path / "run"
    overrides = _overrides(
        tmp_path, corpus, "trainer.batch_size=4", "trainer.max_steps=5000", "trainer.eval_every=5000"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    job = subprocess.Popen(
        [*command, str(ROOT / "run_train.py"), *overrides, "trainer.strategy=ddp", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # training (and its signal handling) has started
            if (run_dir / "metrics.jsonl").exists() and "train/loss" in (run_dir / "metrics.jsonl").read_text():
                break
            time.sleep(0.2)
        pids = _worker_pids(f"hydra.run.dir={run_dir}", rank=1)
        assert len(pids) == 1, "rank 1 not found"
        os.kill(pids[0], signal.SIGTERM)  # a preemption notice that reaches one rank only
        output, _ = job.communicate(timeout=90)
    finally:  # never leave ranks behind (a rank stuck in a collective ignores a first SIGTERM)
        job.kill()
        _kill_ranks(f"hydra.run.dir={run_dir}")
    step = read_checkpoint_step(run_dir / "checkpoints" / "last.pt")
    assert 2 <= step < 5000
    assert output.count(f"SIGTERM at step {step}: checkpoint saved") == 2, output[-3000:]  # both ranks, same step
