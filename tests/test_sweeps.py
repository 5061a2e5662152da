"""Sweeps: job identity, failed-job value, thread limits, folder names, the end-of-sweep check, presets.

The slow tests run `python run_train.py -m ...` as a user would: W&B offline, everything under tmp.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from enhanced_tx.sweeps import job as sweep_job
from enhanced_tx.sweeps.callbacks import SweepCallback, storage_problem
from enhanced_tx.sweeps.dirnames import MAX_BYTES, short_dirname
from enhanced_tx.sweeps.failures import FAILURE_FILE, find_failures, record_failure
from enhanced_tx.sweeps.job import failed_job_value, run_identity, sweep_group, threads_per_job

from .conftest import CONF_DIR, TINY_TRAIN

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


# --------------------------------------------------------------------------- fast: pieces
def test_short_dirname_keeps_short_names_and_cuts_long_ones_at_an_override():
    assert short_dirname("norm=rmsnorm,positional=rope") == "norm=rmsnorm,positional=rope"
    assert short_dirname("") == ""
    long = ",".join(f"trainer.setting_{i}={i}" for i in range(30))
    short = short_dirname(long)
    assert len(short.encode()) <= MAX_BYTES and len(f"99_{short}".encode()) <= 255
    prefix, digest = short.rsplit("~", 1)
    assert long.startswith(prefix + ",") and len(digest) == 8
    assert short_dirname(long + "1") != short  # jobs differing only after the cut still get their own folder
    assert len(short_dirname("x=" + "é" * 300).encode()) <= MAX_BYTES  # never splits a multi-byte character


@pytest.mark.parametrize(
    "direction, expected",
    [
        (None, math.inf),
        ("minimize", math.inf),
        ("maximize", -math.inf),
        ("Direction.maximize", -math.inf),
        (["minimize", "maximize"], [math.inf, -math.inf]),
    ],
)
def test_a_failed_job_returns_the_worst_value_for_the_direction(direction, expected):
    assert failed_job_value(direction) == expected


def test_optuna_completes_the_failed_value_as_the_worst_trial_but_rejects_nan():
    with warnings.catch_warnings():  # optuna 2.x imports its SQL storage module, deprecated under SQLAlchemy 2
        warnings.simplefilter("ignore")
        import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="minimize")
    good, failed = study.ask(), study.ask()
    study.tell(good, 2.0)
    study.tell(failed, failed_job_value("minimize"))
    assert study.trials[1].state == optuna.trial.TrialState.COMPLETE and study.best_value == 2.0
    with pytest.raises(ValueError, match="nan"):  # what a NaN return runs into inside the Optuna sweeper
        study.tell(study.ask(), math.nan)


@pytest.mark.parametrize(
    "launcher, cpus, expected",
    [
        ({"_target_": JOBLIB, "n_jobs": 2}, 8, 4),
        ({"_target_": JOBLIB, "n_jobs": -1}, 8, 1),
        ({"_target_": JOBLIB, "n_jobs": -3}, 8, 1),  # joblib: all CPUs but two = 6 jobs
        ({"_target_": JOBLIB, "n_jobs": 3}, 2, 1),
        (
            {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 6},
            64,
            6,
        ),
        (
            {
                "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
                "cpus_per_task": None,
            },
            8,
            None,
        ),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, None),
    ],
    ids=["joblib-2", "joblib-all", "joblib-negative", "more-jobs-than-cpus", "slurm", "local-unset", "basic"],
)
def test_threads_per_job(launcher, cpus, expected):
    assert threads_per_job(launcher, cpus) == expected


def test_sweep_group_is_the_sweep_folder_relative_to_the_launch_dir(tmp_path):
    assert sweep_group("multirun/2025-01-01/12-00-00", tmp_path) == "multirun/2025-01-01/12-00-00"
    assert sweep_group(tmp_path / "multirun" / "a", tmp_path) == "multirun/a"
    assert sweep_group("/elsewhere/sweep", tmp_path) == "/elsewhere/sweep"
    assert len(sweep_group("/" + "x" * 300, tmp_path)) == 128


def _fake_hydra(mode: str, override_dirname: str = "", sweep_dir: str = "multirun/d/t"):
    from hydra.types import RunMode

    return OmegaConf.create(
        {
            "mode": RunMode[mode],
            "job": {"override_dirname": override_dirname, "num": 3},
            "sweep": {"dir": sweep_dir},
            "runtime": {"cwd": "/work"},
        }
    )


def test_run_identity_in_a_sweep_and_in_a_single_run(monkeypatch):
    monkeypatch.setattr(sweep_job, "hydra_config", lambda: _fake_hydra("MULTIRUN", "norm=layernorm"))
    assert run_identity(None, None) == ("multirun/d/t", "norm=layernorm")
    assert run_identity("mine", "run-a") == ("mine", "run-a")  # configured values win
    monkeypatch.setattr(sweep_job, "hydra_config", lambda: _fake_hydra("MULTIRUN", ""))
    assert run_identity(None, None) == ("multirun/d/t", "default")
    monkeypatch.setattr(sweep_job, "hydra_config", lambda: _fake_hydra("RUN", "norm=layernorm"))
    assert run_identity(None, None) == (None, "norm=layernorm")
    monkeypatch.setattr(sweep_job, "hydra_config", lambda: None)  # no Hydra (compose API, notebooks)
    assert run_identity(None, None) == (None, None)


def _job_folder(sweep: Path, num: int, overrides: list[str]) -> Path:
    folder = sweep / f"{num}_{','.join(overrides)}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return folder


def test_callback_names_each_failed_job_and_exits_non_zero(tmp_path, capsys):
    _job_folder(tmp_path, 0, ["norm=a"])
    failed = _job_folder(tmp_path, 1, ["norm=b"])
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    SweepCallback().on_multirun_end(config)  # nothing failed: returns quietly
    assert capsys.readouterr().err == ""

    record_failure(failed, "RuntimeError: boom", job_num=1, overrides="norm=b")
    with pytest.raises(SystemExit) as exit_info:
        SweepCallback().on_multirun_end(config)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("FAILED job 1 (norm=b) failed: RuntimeError: boom")
    assert err[1].startswith("1 of 2 jobs failed")
    assert [f.job_num for f in find_failures(tmp_path)] == [1]


def test_an_unreadable_failure_marker_still_counts(tmp_path):
    folder = _job_folder(tmp_path, 0, ["norm=a"])
    (folder / FAILURE_FILE).write_text("{not json")
    (failure,) = find_failures(tmp_path)
    assert "unreadable" in failure.error and failure.job_num is None


def test_persistent_optuna_storage_needs_old_sqlalchemy_and_alembic(monkeypatch):
    from enhanced_tx.sweeps import callbacks

    assert storage_problem(None) is None
    versions = {"sqlalchemy": "2.0.30", "alembic": "1.13.2"}
    monkeypatch.setattr(callbacks.metadata, "version", lambda name: versions[name])
    problem = storage_problem("sqlite:///optuna.db")
    assert "sqlalchemy 2.0.30" in problem and "alembic" not in problem.split("found")[1].split(")")[0]
    assert "optuna-storage" in problem
    versions.update(sqlalchemy="1.4.52")
    assert storage_problem("sqlite:///optuna.db") is None
    with pytest.raises(SystemExit):
        versions.update(alembic="1.14.0")
        SweepCallback().on_multirun_start(OmegaConf.create({"hydra": {"sweeper": {"storage": "sqlite:///x.db"}}}))


# --------------------------------------------------------------------------- fast: the configs
def compose_hydra(*overrides: str):
    """The real config with its `hydra` node, as a multirun would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    "path",
    sorted(Path(CONF_DIR).glob("experiment/*.yaml")) + [Path(CONF_DIR) / "hparams_search" / "optuna.yaml"],
    ids=lambda p: p.stem,
)
def test_presets_are_global_packages(path):
    assert path.read_text().splitlines()[0] == "# @package _global_"


def test_architecture_ablation_is_a_token_budget_grid():
    cfg = compose_hydra("experiment=ablation_arch")
    params = cfg.hydra.sweeper.params
    assert {k: len(v.split(",")) for k, v in params.items()} == {"norm": 2, "positional": 4, "feedforward": 2}
    assert cfg.trainer.max_steps is None and cfg.trainer.budget.tokens > 0
    assert cfg.model.d_model == 256  # tiny


def test_equal_flop_comparison_and_precision_ablation():
    flops = compose_hydra("experiment=compare_equal_flops")
    assert flops.trainer.budget.flops > 0 and flops.trainer.max_steps is None
    assert set(flops.hydra.sweeper.params) == {"model.d_model", "feedforward"}
    precision = compose_hydra("experiment=ablation_precision")
    assert precision.hydra.sweeper.params == {
        "precision": "fp32,bf16,fp16",
        "trainer.gradient_checkpointing": "false,true",
    }


def test_optuna_search_space_and_in_memory_storage():
    cfg = compose_hydra("hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert sweeper.storage is None
    assert set(sweeper.params) == {
        "optimizer.lr",
        "scheduler.warmup",
        "optimizer.weight_decay",
        "model.dropout",
        "trainer.batch_size",
    }
    assert sweeper.sampler.seed == cfg.seed


@pytest.mark.parametrize(
    "launcher, target",
    [("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher"), ("submitit_slurm", "SlurmLauncher")],
)
def test_launchers_compose(launcher, target):
    cfg = compose_hydra(f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.callbacks.sweep._target_ == "enhanced_tx.sweeps.callbacks.SweepCallback"


# --------------------------------------------------------------------------- slow: sweeps as a user runs them
@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One corpus cache for all sweeps of this module (built once, by the first job)."""
    return tmp_path_factory.mktemp("cache")


def run_sweep(tmp_path: Path, cache: Path, *overrides: str, wandb: bool = False) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HYDRA_FULL_ERROR": "0",
        "ENHANCED_TX_CACHE": str(cache),
        "HOME": str(home),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
    }
    for var in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "NETRC"):
        env.pop(var, None)
    args = [
        *TINY_TRAIN,
        *(("logger=wandb",) if wandb else ()),
        f"paths.cache_dir={cache}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *overrides,
    ]
    return subprocess.run(
        [sys.executable, str(ROOT / "run_train.py"), "-m", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p.parent.parent for p in sweep.rglob(".hydra/overrides.yaml")), key=lambda p: int(p.name.split("_")[0])
    )


def wandb_runs(job_dir: Path) -> list[dict]:
    from .test_tracking import _read_offline_run

    return [_read_offline_run(folder) for folder in sorted(job_dir.glob("wandb/offline-run-*"))]


def report_rows(sweep: Path) -> list[dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "enhanced_tx.tracking.report", str(sweep)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with (sweep / "report.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_four_job_sweep_is_four_wandb_runs_in_one_group_and_a_report(tmp_path, shared_cache):
    result = run_sweep(tmp_path, shared_cache, "norm=rmsnorm,layernorm", "positional=rope,sinusoidal", wandb=True)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    # the sweep ends with its table: 4 jobs, the best marked, the commands for the report and for generating
    end = result.stdout[result.stdout.index(f"sweep {sweep}: 4 jobs, 4 ok") :].splitlines()
    assert end[1].split() == ["job", "overrides", "val/loss", "status"] and len(end) == 9
    assert sum(line.split()[0].endswith("*") for line in end[2:6]) == 1 and end[5].endswith("ok")
    assert end[6].startswith("best: job ") and f"run_generate.py run=best sweep={sweep}" in end[-1]
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    names, groups = set(), set()
    for num, folder in enumerate(jobs):
        hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert folder.name == f"{num}_{short_dirname(hydra['job']['override_dirname'])}"  # N_overrides
        (run,) = wandb_runs(folder)
        record = run["run"]
        assert record.job_type == "train" and run["exit_code"] == 0
        assert record.display_name == hydra["job"]["override_dirname"]
        choices = hydra["runtime"]["choices"]
        assert {f"norm={choices['norm']}", f"positional={choices['positional']}"} <= set(record.tags)
        assert run["config"]["choices"]["norm"] == choices["norm"]
        names.add(record.display_name)
        groups.add(record.run_group)
    assert len(names) == 4 and groups == {"sweep"}  # the sweep folder, relative to where it was launched

    rows = report_rows(sweep)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {(r["norm"], r["positional"]) for r in rows} == {
        (n, p) for n in ("rmsnorm", "layernorm") for p in ("rope", "sinusoidal")
    }
    losses = [float(r["best_val_loss"]) for r in rows]
    assert losses == sorted(losses) and all(math.isfinite(v) for v in losses)
    for name in ("val_loss_vs_step", "val_loss_vs_tokens", "val_loss_vs_flops", "best_val_loss_by_choice"):
        assert (sweep / f"{name}.png").read_bytes()[:4] == PNG


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_fails_it_at_the_end(tmp_path, shared_cache):
    # too long for the model: found once the data is read (a config-only error stops the sweep before it starts)
    result = run_sweep(tmp_path, shared_cache, "data.src_len=100,16", wandb=True)
    assert result.returncode == 1, result.stderr[-3000:]
    summary = [line for line in result.stderr.splitlines() if line.startswith("FAILED job")]
    assert len(summary) == 1 and "FAILED job 0 (" in summary[0] and "model.max_seq_len=64" in summary[0]
    assert f"sweep {tmp_path / 'sweep'}: 2 jobs, 1 failed, 1 ok" in result.stdout  # the table comes first
    assert "1 of 2 jobs failed" in result.stderr
    failed, ok = job_dirs(tmp_path / "sweep")
    assert json.loads((failed / FAILURE_FILE).read_text())["job_num"] == 0
    assert not (ok / FAILURE_FILE).exists() and (ok / "model.safetensors").exists()  # the next job still ran
    (run,) = wandb_runs(failed)
    assert run["exit_code"] == 1 and "model.max_seq_len=64" in run["summary"]["error"]
    assert [r["status"] for r in report_rows(tmp_path / "sweep")] == ["ok", "failed"]


@pytest.mark.slow
def test_optuna_sweep_of_three_trials_writes_its_results(tmp_path, shared_cache):
    result = run_sweep(tmp_path, shared_cache, "hparams_search=optuna", "hydra.sweeper.n_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert math.isfinite(results["best_value"])
    # trainer.batch_size is fixed by the tiny overrides, so Optuna searches the other four
    assert set(results["best_params"]) == {
        "optimizer.lr",
        "scheduler.warmup",
        "optimizer.weight_decay",
        "model.dropout",
    }
    rows = report_rows(sweep)
    assert len(rows) == 3 and float(rows[0]["best_val_loss"]) == pytest.approx(results["best_value"])
    assert "## Optuna" in (sweep / "report.md").read_text() and (sweep / "optuna_history.png").exists()


@pytest.mark.slow
def test_optuna_survives_failing_trials(tmp_path, shared_cache):
    result = run_sweep(tmp_path, shared_cache, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "data.src_len=100")
    assert result.returncode == 1, result.stderr[-3000:]  # the end-of-sweep check, not a crash of the sweeper
    assert "Traceback" not in result.stderr and "2 of 2 jobs failed" in result.stderr
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == math.inf


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_with_their_share_of_threads(tmp_path, shared_cache):
    result = run_sweep(
        tmp_path, shared_cache, "norm=rmsnorm,layernorm", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spans = []
    for folder in job_dirs(tmp_path / "sweep"):
        # start: the job's log line written before it builds anything (ms resolution); end: its last metric
        threads = max(1, sweep_job.available_cpus() // 2)
        (line,) = [x for x in (folder / "run_train.log").read_text().splitlines() if "torch threads for this job" in x]
        assert line.endswith(f"torch threads for this job: {threads} (launcher {JOBLIB})")
        start = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        end = max(json.loads(x)["time"] for x in (folder / "metrics.jsonl").read_text().splitlines())
        spans.append((start, end))
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, spans  # each job started before the other one finished
