"""Resume guards: a resume continues the same run or stops in one line; new limits are honoured out loud;
a measured MFU peak leaves the training RNG alone; a fresh run needs a folder of its own; the printed
generate command pastes; a fork starts its own W&B run; an auto-resume reads its checkpoint once."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shlex
import shutil
import signal
from typing import ClassVar

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from transformers import PreTrainedTokenizerFast

from enhanced_tx.checkpoint import CheckpointError, load_checkpoint
from enhanced_tx.checkpoint import format as checkpoint_module
from enhanced_tx.cli import guarded
from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tasks.commands import generate_command
from enhanced_tx.tasks.train import train
from enhanced_tx.tracking.logger import MetricLogger
from enhanced_tx.training.preemption import TrainingInterrupted

from .conftest import TINY_TRAIN, compose_train, make_model
from .test_training import SignalAtStep, copy_parts, quiet_trainer

RESOLVED_CONFIG = RunFolder(".").resolved_config.name

# the run every test starts from: not the default architecture, so a resume without its overrides differs
ORIGINAL = ("norm=layernorm", "positional=sinusoidal")
# a sweep job's folder name: `=` and `,` are Hydra grammar
JOB_FOLDER = "0_data.src_len=16,tokenizer=byte~1f0339ca"


class IdLogger(MetricLogger):
    """A tracker with a run id per run folder; remembers the resume id of every start."""

    resume_ids: ClassVar[list] = []

    @property
    def run_id(self) -> str:
        return f"id-of-{self.run_dir.parent.name}"

    def _backend_start(self, **kwargs) -> None:
        IdLogger.resume_ids.append(kwargs["resume_id"])


def run_cfg(root, corpus, *overrides, run_dir=None):
    """The tiny text run's config with outputs under `root` (the run folder `run_dir`, default root/run)."""
    cfg = compose_train(
        root,
        *TINY_TRAIN,
        "data=text",
        f"data.path={corpus}",
        f"logger._target_={IdLogger.__module__}.IdLogger",
        *overrides,
    )
    if run_dir is not None:  # a folder name Hydra's override grammar would not take unquoted
        cfg.paths.output_dir = str(run_dir)
    return cfg


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 6-step run (LayerNorm, sinusoidal positions) in a sweep-job-like folder, and its output."""
    root = tmp_path_factory.mktemp("finished")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"The quick brown fox jumps over the lazy dog. Line {i}." for i in range(300)))
    run_dir = root / JOB_FOLDER
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        train(run_cfg(root, corpus, *ORIGINAL, run_dir=run_dir))
    return {"root": root, "corpus": corpus, "run": run_dir, "output": output.getvalue()}


def copy_of(finished, tmp_path):
    """The finished run copied to tmp_path/run, for tests that continue it."""
    shutil.copytree(finished["run"], tmp_path / "run")
    return tmp_path / "run"


def one_line_error(capsys, cfg) -> str:
    with pytest.raises(SystemExit) as exit_info:
        guarded(train)(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---------------------------------------------------------------------------------------- A: same config


def test_a_resume_with_another_architecture_fails_in_one_line_naming_the_keys(finished, capsys):
    run = finished["run"]
    before = {name: (run / name).read_text() for name in (RESOLVED_CONFIG, "metrics.jsonl")}
    forgot = run_cfg(finished["root"], finished["corpus"], "trainer.resume=auto", run_dir=run)  # no ORIGINAL
    with pytest.raises(ConfigError) as info:
        train(forgot)
    message = str(info.value)
    assert "\n" not in message
    assert "model.norm._target_: enhanced_tx.model.norm.LayerNorm -> enhanced_tx.model.norm.RMSNorm" in message
    assert "model.positional._target_: enhanced_tx.model.positional.SinusoidalPositions -> " in message
    assert "repeat the run's original overrides" in message
    assert "init_from" not in message  # the weights would not load into this model: no warm-start advice
    assert "trainer." not in message.split("(", 1)[1].split(")")[0]  # runtime keys are not differences
    assert one_line_error(capsys, forgot).startswith("error: trainer.resume=auto: ")
    # nothing of the run was touched: its resolved config still describes its weights
    assert {name: (run / name).read_text() for name in before} == before


def test_a_resume_with_another_width_is_a_config_error_not_a_size_mismatch(finished, capsys):
    overrides = (*ORIGINAL, "model.d_model=64", "trainer.resume=auto")
    wider = run_cfg(finished["root"], finished["corpus"], *overrides, run_dir=finished["run"])
    line = one_line_error(capsys, wider)
    assert "model.d_model: 32 -> 64" in line and "size mismatch" not in line
    assert "model.norm" not in line  # only what differs
    assert "init_from" not in line


def test_a_resume_with_another_optimizer_points_at_a_warm_start(finished, capsys):
    overrides = (*ORIGINAL, "optimizer.lr=0.005", "trainer.resume=auto")
    line = one_line_error(capsys, run_cfg(finished["root"], finished["corpus"], *overrides, run_dir=finished["run"]))
    assert "optimizer.lr: " in line and " -> 0.005" in line
    assert f"start a new run (a new hydra.run.dir) from its weights with trainer.init_from={finished['run']}" in line


def test_a_checkpoint_of_another_shape_is_a_one_line_checkpoint_error(tmp_path):
    """`Trainer.fit` without the run composition (no stored config to compare): the shapes are checked."""
    quiet_trainer(max_steps=2, eval_every=2).fit(copy_parts(tmp_path))  # d_model 64
    narrower = dataclasses.replace(copy_parts(tmp_path), model=make_model("learned", vocab_size=40, d_model=32))
    with pytest.raises(CheckpointError, match=r"from another architecture: .* in the file and \[\d+, 32\] in"):
        quiet_trainer(max_steps=4, resume="auto").fit(narrower)


# ---------------------------------------------------------------------------------------- B: new limits


def test_b_a_longer_max_steps_on_resume_trains_on_and_says_so(finished, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    train(run_cfg(tmp_path, finished["corpus"], *ORIGINAL, "trainer.resume=auto"))  # the same total: nothing to do
    assert "warning" not in capsys.readouterr().out
    assert load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["step"] == 6

    train(run_cfg(tmp_path, finished["corpus"], *ORIGINAL, "trainer.resume=auto", "trainer.max_steps=12"))
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "trainer.max_steps: 6 -> 12" in warnings[0], warnings
    assert "LR schedule now spans it" in warnings[0]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["train_state"]["step"] == 12 and last["budget"]["max_steps"] == 12
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 12


def test_b_a_larger_token_budget_on_resume_trains_on_and_says_so(tmp_path, capsys):
    quiet_trainer(max_steps=None, budget={"tokens": 400}).fit(copy_parts(tmp_path))
    first = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["train_state"]
    capsys.readouterr()
    quiet_trainer(max_steps=None, budget={"tokens": 800}, resume="auto").fit(copy_parts(tmp_path))
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "trainer.budget.tokens: 400 -> 800" in warnings[0], warnings
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["train_state"]
    assert after["step"] > first["step"] and after["tokens"] >= 800 > first["tokens"]


# ---------------------------------------------------------------------------------------- C: RNG


def test_c_resume_with_dropout_and_a_measured_peak_is_bit_identical(tmp_path):
    """trainer.peak_flops unset: the MFU peak is measured on random matrices, after the RNG was restored."""

    def parts(folder, seed=0, logger=None):
        dropout = make_model("learned", vocab_size=40, d_model=64, seed=seed, dropout=0.2)
        return dataclasses.replace(copy_parts(folder, logger=logger, seed=seed), model=dropout)

    settings = dict(max_steps=8, eval_every=4, peak_flops=None)
    straight = parts(tmp_path / "straight")
    quiet_trainer(**settings).fit(straight)
    with pytest.raises(TrainingInterrupted):
        quiet_trainer(**settings).fit(parts(tmp_path / "resumed", logger=SignalAtStep(4, signal.SIGTERM)))
    resumed = parts(tmp_path / "resumed", seed=123)
    quiet_trainer(**settings, resume="auto").fit(resumed)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


# ---------------------------------------------------------------------------------------- D: fresh folders


def test_d_a_fresh_run_in_a_folder_that_holds_a_run_fails_in_one_line(finished, capsys):
    run = finished["run"]
    before = (run / RESOLVED_CONFIG).read_text()
    line = one_line_error(capsys, run_cfg(finished["root"], finished["corpus"], *ORIGINAL, run_dir=run))
    assert line == (
        f"error: {run} already holds a run; pass trainer.resume=auto to continue it or choose a new hydra.run.dir"
    )
    assert (run / RESOLVED_CONFIG).read_text() == before
    assert not (run / "FAILED.json").exists()  # the run that is there did not fail
    (run / "FAILED.json").write_text('{"error": "its own earlier failure"}')
    one_line_error(capsys, run_cfg(finished["root"], finished["corpus"], *ORIGINAL, run_dir=run))
    assert (run / "FAILED.json").read_text() == '{"error": "its own earlier failure"}'  # kept as it was


def test_d_a_fresh_run_ignores_what_a_failed_start_and_hydra_left_and_builds_its_tokenizer(finished, tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "run_train.log").write_text("[INFO] starting\n")
    (run / "metrics.jsonl").touch()  # a start that failed before it logged anything
    shutil.copy(finished["run"] / RESOLVED_CONFIG, run / RESOLVED_CONFIG)
    stale = PreTrainedTokenizerFast.from_pretrained(str(finished["run"] / "tokenizer"))
    stale.add_tokens(["<stale>"])
    stale.save_pretrained(str(run / "tokenizer"))

    train(run_cfg(tmp_path, finished["corpus"], *ORIGINAL))
    built = (run / "tokenizer" / "tokenizer.json").read_text()
    assert built == (finished["run"] / "tokenizer" / "tokenizer.json").read_text()  # tokenizer=byte, not the stale
    assert load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["step"] == 6


# ---------------------------------------------------------------------------------------- E: the printed command


@pytest.mark.parametrize(
    "folder", [JOB_FOLDER, "plain", "with space", "it's", "[1,2]", 'q"uote', "back\\slash\\", "a:b@c+d"]
)
def test_e_the_generate_command_pastes_back_to_the_exact_folder(tmp_path, folder):
    run_dir = tmp_path / folder
    words = shlex.split(generate_command(run_dir))
    (run,) = [w for w in words if w.startswith("run=")]
    (override,) = OverridesParser.create().parse_overrides([run])
    assert override.value() == str(run_dir)
    assert words[:2] == ["python", "run_generate.py"] and "prompt=The transformer architecture is" in words


def test_e_training_prints_a_generate_command_that_pastes(finished):
    (line,) = [line for line in finished["output"].splitlines() if line.startswith("generate: ")]
    (run,) = [w for w in shlex.split(line.removeprefix("generate: ")) if w.startswith("run=")]
    (override,) = OverridesParser.create().parse_overrides([run])
    assert override.value() == str(finished["run"])


# ---------------------------------------------------------------------------------------- F: W&B id, one read


def test_f_a_resume_continues_its_wandb_run_and_reads_its_checkpoint_once(finished, tmp_path, monkeypatch):
    run = copy_of(finished, tmp_path)
    stored = load_checkpoint(run / "checkpoints" / "last.pt")["logger_run_id"]
    assert stored == f"id-of-{finished['root'].name}"
    reads = []
    original = checkpoint_module._read_verified
    monkeypatch.setattr(checkpoint_module, "_read_verified", lambda *a: reads.append(a[0]) or original(*a))
    IdLogger.resume_ids.clear()
    # runtime keys may change on resume: evaluation, logging, kernels, where the cache is
    runtime = ("trainer.eval_every=2", "trainer.log_every=1", "model.linear_backend=default")
    train(run_cfg(tmp_path, finished["corpus"], *ORIGINAL, *runtime, "trainer.resume=auto"))
    assert IdLogger.resume_ids == [stored]
    assert reads == [run / "checkpoints" / "last.pt"]


def test_f_a_fork_from_another_runs_checkpoint_starts_its_own_wandb_run(finished, tmp_path):
    source = finished["run"] / "checkpoints" / "step_3.pt"
    IdLogger.resume_ids.clear()
    train(run_cfg(tmp_path, finished["corpus"], *ORIGINAL, f"trainer.resume='{source}'"))
    assert IdLogger.resume_ids == [None]
    fork = tmp_path / "run"
    assert load_checkpoint(fork / "checkpoints" / "last.pt")["logger_run_id"] == f"id-of-{tmp_path.name}"
    assert min(json.loads(line)["step"] for line in (fork / "metrics.jsonl").read_text().splitlines()) > 3
    # the fork uses the tokenizer its weights were trained with: the source run's
    assert (fork / "tokenizer" / "tokenizer.json").read_text() == (
        finished["run"] / "tokenizer" / "tokenizer.json"
    ).read_text()
