"""W&B side of the report, read back from the offline run files: the report run (job type ``report``, the
sweep's group, its tables and images) and every job's summary (final monitored value, group choices)."""

from __future__ import annotations

import pytest
import wandb

from enhanced_tx.tracking import WandbLogger
from enhanced_tx.tracking.report import main
from tests.test_report import make_job
from tests.wandb_records import offline_run


@pytest.fixture(autouse=True)
def quiet_offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_a_job_summary_holds_its_final_value_and_group_choices(tmp_path):
    logger = WandbLogger(mode="offline", settings={"console": "off"})
    choices = {"norm": "layernorm", "feedforward": "swiglu", "hydra/launcher": "basic"}
    logger.start(tmp_path / "run", config={"seed": 0}, choices=choices, group="multirun/x")
    for step, loss in ((10, 3.0), (20, 2.4), (30, 2.6)):
        logger.log({"train/loss": loss + 0.1}, step=step)
        logger.log({"val/loss": loss}, step=step)
    logger.finish()
    wandb.teardown()  # the service writes the run file asynchronously: let it finish before reading
    (folder,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    run = offline_run(folder)
    assert run["run"]["group"] == "multirun/x"
    summary = run["summary"]
    assert summary["final/val/loss"] == 2.6  # the last evaluation, while val/loss summarises the minimum
    assert summary["choice/norm"] == "layernorm" and summary["choice/feedforward"] == "swiglu"
    assert not any(key.startswith("choice/hydra") for key in summary)
    assert "final/train/loss" not in summary


def sweep_with_wandb_jobs(root):
    sweep = root / "multirun" / "2025-01-01" / "12-00-00"
    for num, (norm, seed, final) in enumerate((("a", 0, 2.0), ("a", 1, 2.1), ("b", 0, 1.5), ("b", 1, 1.6))):
        folder = make_job(sweep, num, {"norm": norm, "seed": seed}, [final + 1, final])
        (folder / "wandb").mkdir()  # the jobs logged to W&B
    return sweep


def report_run(sweep, argv):
    assert main(["multirun/2025-01-01/12-00-00", *argv]) == 0
    wandb.teardown()  # the service writes the run file asynchronously: let it finish before reading
    (folder,) = (sweep / "wandb").glob("offline-run-*")
    return offline_run(folder)


def test_the_report_is_one_wandb_run_in_the_sweeps_group_with_its_tables(tmp_path, monkeypatch, capsys):
    sweep = sweep_with_wandb_jobs(tmp_path)
    monkeypatch.chdir(tmp_path)
    run = report_run(sweep, ["--no-plots"])
    out = capsys.readouterr().out
    assert "W&B report run (job_type=report)" in out and "wandb sync" in out
    assert run["run"]["job_type"] == "report"
    assert run["run"]["group"] == "multirun/2025-01-01/12-00-00"  # the group the sweep's jobs used
    jobs = run["tables"]["report/jobs"]
    assert sorted((r["label"], r["final"]) for r in jobs) == [
        ("norm=a,seed=0", 2.0),
        ("norm=a,seed=1", 2.1),
        ("norm=b,seed=0", 1.5),
        ("norm=b,seed=1", 1.6),
    ]
    arms = {r["arm"]: r for r in run["tables"]["report/arms"]}
    assert arms["norm=a"]["verdict"] == "baseline" and arms["norm=b"]["n"] == 2
    assert arms["norm=b"]["diff"] == pytest.approx(-0.5)
    assert main(["multirun/2025-01-01/12-00-00", "--no-plots", "--wandb", "off"]) == 0
    assert len(list((sweep / "wandb").glob("offline-run-*"))) == 1  # off: no second run


@pytest.mark.slow
def test_the_report_run_holds_every_figure(tmp_path, monkeypatch):
    sweep = sweep_with_wandb_jobs(tmp_path)
    monkeypatch.chdir(tmp_path)
    run = report_run(sweep, [])
    images = {k for k, v in run["history"].items() if isinstance(v, dict) and v.get("_type") == "image-file"}
    assert images == {f"report/{png.stem}" for png in sweep.glob("*.png")}
    assert "report/val_loss_forest" in images and "report/val_loss_bands" in images
