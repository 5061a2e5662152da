"""``python -m enhanced_tx.runs`` (list, show, diff, compare, best) and ``run=best`` on hand-made run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from enhanced_tx.errors import ConfigError
from enhanced_tx.runs import best_run, newest_sweep
from enhanced_tx.runs.cli import main
from enhanced_tx.tracking import report
from tests.test_report import make_job

ROOT = Path(__file__).resolve().parents[1]


def with_config(folder: Path, monitor: str = "val/loss", weights: bool = True, **trainer) -> Path:
    """Give a job folder a fuller resolved config (and weights, as a finished run has)."""
    config = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    config["trainer"] = {"monitor": monitor, "max_steps": 4, **trainer}
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    if weights:
        (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def bleu_job(sweep: Path, num: int, bleu: float) -> Path:
    folder = with_config(make_job(sweep, num, {"norm": f"n{num}"}, [3.0, 2.0]), monitor="val/bleu")
    with (folder / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "val/bleu": bleu}) + "\n")
    return folder


@pytest.fixture
def runs(tmp_path) -> Path:
    sweep = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    with_config(make_job(sweep, 0, {"norm": "rmsnorm"}, [3.0, 2.5]))
    with_config(make_job(sweep, 1, {"norm": "layernorm"}, [2.9, 2.1]), max_steps=8)
    with_config(make_job(sweep, 2, {"norm": "scalenorm"}, [2.0, 1.5]), weights=False)  # best loss, no weights
    make_job(sweep, 3, {"norm": "broken"}, error="ConfigError: norm=broken is not a norm")
    single = tmp_path / "outputs" / "2025-01-02" / "09-00-00"
    with_config(make_job(single.parent, 0, {}, [4.0, 3.5, 3.2]))
    (single.parent / "0_").rename(single)
    hydra = single / ".hydra" / "hydra.yaml"
    hydra.write_text(yaml.safe_dump({"hydra": {"job": {}, "runtime": {"choices": {"model": "tiny"}}}}))
    return tmp_path


def test_list_shows_failed_runs_as_failed_in_a_subprocess(runs):
    result = subprocess.run(
        [sys.executable, "-m", "enhanced_tx.runs", "list", "multirun", "outputs"],
        cwd=runs,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("failed")]
    assert len(failed) == 1 and "norm=broken" in failed[0]
    assert "error: ConfigError: norm=broken is not a norm" in result.stdout
    assert "None" not in result.stdout
    assert any("outputs/2025-01-02/09-00-00" in line and "3.2000" in line for line in lines)
    assert lines[-1] == "5 runs: 4 ok, 1 failed"


def test_the_report_of_single_runs_names_them_by_folder(runs, capsys):
    # outputs/DATE holds single runs: no job numbers (this crashed with "job None" and a TypeError)
    assert report.main([str(runs / "outputs" / "2025-01-02"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "09-00-00" in out and "None" not in out
    assert "None" not in (runs / "outputs" / "2025-01-02" / "report.md").read_text()


def test_show_and_diff(runs, capsys):
    sweep = runs / "multirun" / "2025-01-01" / "12-00-00"
    first, second = sorted(sweep.glob("0_*"))[0], sorted(sweep.glob("1_*"))[0]
    assert main(["show", str(second)]) == 0
    shown = capsys.readouterr().out
    assert "status:    ok" in shown and "overrides: norm=layernorm" in shown and "best:      2.1000" in shown
    assert "weights:   model.safetensors" in shown
    assert main(["diff", str(first), str(second)]) == 0
    lines = capsys.readouterr().out.splitlines()
    differing = [line.split() for line in lines if line.startswith("trainer.max_steps")]
    assert differing == [["trainer.max_steps", "4", "8"]]
    assert not any(line.startswith("trainer.monitor") for line in lines)  # equal keys are not listed
    best = next(line.split() for line in lines if line.startswith("best"))
    assert best == ["best", "2.5000", "2.1000"]
    assert main(["show", str(sweep)]) == 1
    assert "is not a run folder (it holds 4 runs" in capsys.readouterr().err


def test_compare_writes_one_report_over_several_folders(runs, tmp_path, capsys):
    other = runs / "multirun" / "2025-01-03" / "08-00-00"
    with_config(make_job(other, 0, {"norm": "deepnorm"}, [2.6, 2.4]))
    out = tmp_path / "cmp"
    folders = [str(runs / "multirun" / "2025-01-01"), str(other)]
    assert main(["compare", *folders, "--out", str(out), "--no-plots"]) == 0
    with (out / "report.csv").open() as f:
        rows = list(__import__("csv").DictReader(f))
    assert {r["norm"] for r in rows} == {"rmsnorm", "layernorm", "scalenorm", "broken", "deepnorm"}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert "5 jobs (1 failed)" in capsys.readouterr().out


def test_best_is_the_best_job_with_weights_of_the_newest_sweep(runs, capsys):
    old = runs / "multirun" / "2025-01-01" / "12-00-00"
    pick = best_run([runs / "multirun"], sweep=old)
    assert pick.job.job_dir.name.startswith("1_") and pick.value == 2.1 and pick.candidates == 2
    newer = runs / "multirun" / "2025-01-01" / "13-00-00"
    for num, bleu in enumerate((20.0, 31.0, 25.0)):
        bleu_job(newer, num, bleu)
    for metrics in old.glob("*/metrics.jsonl"):  # the first sweep wrote long ago
        os.utime(metrics, (1_000_000, 1_000_000))
    assert newest_sweep([runs / "multirun", runs / "outputs"]) == newer
    pick = best_run([runs / "multirun"])
    assert pick.metric == "val/bleu" and pick.value == 31.0  # higher is better for BLEU
    assert main(["best", "--sweep", str(old)]) == 0
    assert "job 1 (norm=layernorm) with val/loss 2.1000" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="run=best found no sweep"):
        best_run([runs / "outputs"])


def test_run_best_in_generation_prints_what_it_picked(runs, capsys):
    from enhanced_tx.generation.loading import resolve_run_dir

    sweep = runs / "multirun" / "2025-01-01" / "12-00-00"
    run_dir = resolve_run_dir("best", [runs / "multirun"], sweep=sweep)
    assert run_dir.name.startswith("1_norm=layernorm")
    assert "run=best: job 1 (norm=layernorm) with val/loss 2.1000, best of 2" in capsys.readouterr().err
