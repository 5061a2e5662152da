"""The sweep report on hand-made job folders (no training): reading, sorting, seed groups, failures, files."""

from __future__ import annotations

import csv
import json
import statistics
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from enhanced_tx.sweeps.failures import record_failure
from enhanced_tx.tracking.report import build_report, latest_sweep, main
from enhanced_tx.tracking.report_table import short_value, swept_keys
from enhanced_tx.tracking.sweep_reader import read_sweep

PNG = b"\x89PNG"
START = 1_700_000_000.0  # job start, epoch seconds


def make_job(
    sweep: Path,
    num: int,
    overrides: dict[str, object],
    val_losses: list[float] | None = None,
    error: str | None = None,
    finished: bool = True,
    tokens_per_step: int = 1000,
    seconds_per_step: float = 0.5,
) -> Path:
    """A job folder as run_train.py leaves it: .hydra records, resolved config, metrics, summary, run info."""
    items = [f"{k}={v}" for k, v in overrides.items()]
    folder = sweep / f"{num}_{','.join(sorted(items))}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(items))
    choices = {"model": "tiny", "norm": str(overrides.get("norm", "rmsnorm")), "hydra/launcher": "basic"}
    hydra = {
        "hydra": {"job": {"num": num, "override_dirname": ",".join(sorted(items))}, "runtime": {"choices": choices}}
    }
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump({"seed": int(overrides.get("seed", 0))}))
    started = datetime.fromtimestamp(START + num, tz=timezone.utc).isoformat(timespec="seconds")
    (folder / "run_info.json").write_text(json.dumps({"time": started}))
    lines = []
    for i, loss in enumerate(val_losses or [], start=1):
        step = 2 * i
        lines.append(
            {
                "step": step,
                "time": START + num + step * seconds_per_step,
                "train/loss": loss + 0.1,
                "perf/tokens": step * tokens_per_step,
                "perf/flops": step * tokens_per_step * 6e3,
                "perf/mfu": 0.25,
                "perf/tokens_per_s": 1234.0,
                "perf/train_minutes": step * seconds_per_step / 60,
            }
        )
        lines.append({"step": step, "time": START + num + step * seconds_per_step + 0.1, "val/loss": loss})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = {"params/total": 39136}
    if finished and error is None:
        summary["val/best_loss"] = min(val_losses) if val_losses else None
    (folder / "summary.json").write_text(json.dumps(summary))
    if error is not None:
        record_failure(folder, error, job_num=num, overrides=",".join(items))
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    make_job(root, 0, {"norm": "rmsnorm", "positional": "rope"}, [3.0, 2.5, 2.7])  # best 2.5 (not the last)
    make_job(root, 1, {"norm": "layernorm", "positional": "rope"}, [2.9, 2.1])
    make_job(root, 2, {"norm": "rmsnorm", "positional": "sinusoidal"}, error="model.d_model=30 must be ...")
    make_job(root, 3, {"norm": "layernorm", "positional": "sinusoidal"}, [3.5, 3.3], finished=False)
    return root


def test_rows_are_sorted_by_the_best_value_and_failed_jobs_come_last(sweep):
    report = build_report(sweep, plots=False)
    assert [r.job.num for r in report.rows] == [1, 0, 3, 2]
    assert [r.status for r in report.rows] == ["ok", "ok", "incomplete", "failed"]
    assert report.rows[1].numbers["best"] == 2.5  # the minimum over the evaluations, not the last one
    assert report.rows[1].numbers["final"] == 2.7
    assert report.rows[0].label == "norm=layernorm,positional=rope"  # only the swept overrides

    rows = read_csv(sweep / "report.csv")
    assert [r["job"] for r in rows] == ["1", "0", "3", "2"]
    assert [r["status"] for r in rows] == ["ok", "ok", "incomplete", "failed"]
    assert rows[0]["norm"] == "layernorm" and rows[0]["positional"] == "rope"
    assert float(rows[0]["best_val_loss"]) == 2.1
    assert rows[3]["best_val_loss"] == "" and "d_model=30" in rows[3]["error"]
    assert rows[0]["params"] == "39136.0"
    assert "norm=layernorm" in rows[0]["choices"] and "hydra/launcher" not in rows[0]["choices"]


def test_numbers_come_from_metrics_run_info_and_summary(sweep):
    row = next(r for r in build_report(sweep, plots=False).rows if r.job.num == 1)
    n = row.numbers
    assert n["steps"] == 4 and n["tokens"] == 4000 and n["flops"] == 4000 * 6e3
    assert n["tokens_per_s"] == pytest.approx(4000 / (4 * 0.5))  # whole run: tokens / training seconds
    assert n["mfu"] == pytest.approx(0.25)
    assert n["wall_s"] == pytest.approx(4 * 0.5 + 0.1)  # run_info start to the last metric line
    assert n["max_memory_gb"] is None  # CPU runs log no CUDA memory


def test_markdown_lists_jobs_failures_and_plots(sweep):
    report = build_report(sweep)
    text = (sweep / "report.md").read_text()
    assert "4 (2 ok, 1 failed, 1 incomplete)" in text
    assert "best job: 1 `norm=layernorm,positional=rope`: 2.1000" in text
    assert "## Failed jobs" in text and "model.d_model=30 must be" in text
    images = [f for f in report.files if f.suffix == ".png"]
    assert {f.name for f in images} == {
        "val_loss_vs_step.png",
        "val_loss_vs_tokens.png",
        "val_loss_vs_flops.png",
        "train_loss_vs_step.png",
        "best_val_loss_by_choice.png",
    }
    for image in images:
        assert image.read_bytes()[:4] == PNG
        assert f"]({image.name})" in text
    assert "Seed replicates" not in text and not (sweep / "report_groups.csv").exists()


def test_seed_replicates_are_grouped_with_mean_std_and_n(tmp_path):
    root = tmp_path / "sweep"
    losses = {("a", 0): 2.0, ("a", 1): 2.2, ("a", 2): 2.4, ("b", 0): 3.0, ("b", 1): 3.2}
    for num, ((norm, seed), best) in enumerate(losses.items()):
        make_job(root, num, {"norm": norm, "seed": seed}, [best + 0.5, best])
    make_job(root, 5, {"norm": "b", "seed": 2}, error="RuntimeError: out of memory")

    report = build_report(root)
    by_label = {g.label: g for g in report.groups}
    assert [g.label for g in report.groups] == ["norm=a", "norm=b"]  # best mean first
    a, b = by_label["norm=a"], by_label["norm=b"]
    assert (a.n, a.n_failed, b.n, b.n_failed) == (3, 0, 2, 1)
    assert a.mean["best"] == pytest.approx(2.2) and a.std["best"] == pytest.approx(statistics.stdev([2.0, 2.2, 2.4]))
    assert b.mean["best"] == pytest.approx(3.1) and b.std["best"] == pytest.approx(statistics.stdev([3.0, 3.2]))

    groups = read_csv(root / "report_groups.csv")
    assert [(g["config"], g["n_seeds"], g["n_failed"]) for g in groups] == [("norm=a", "3", "0"), ("norm=b", "2", "1")]
    assert float(groups[0]["best_val_loss_mean"]) == pytest.approx(2.2)
    assert float(groups[0]["best_val_loss_std"]) == pytest.approx(0.2)
    text = (root / "report.md").read_text()
    assert "## Seed replicates" in text and "| `norm=a` | 3 | 0 | 2.2000 ± 0.2000 |" in text
    assert (root / "best_val_loss_by_config.png").read_bytes()[:4] == PNG


def test_a_single_seed_configuration_has_zero_spread(tmp_path):
    make_job(tmp_path, 0, {"norm": "a", "seed": 0}, [2.0])
    make_job(tmp_path, 1, {"norm": "a", "seed": 1}, [2.4])
    make_job(tmp_path, 2, {"norm": "b", "seed": 0}, [3.0])
    groups = {g.label: g for g in build_report(tmp_path, plots=False).groups}
    assert groups["norm=b"].n == 1 and groups["norm=b"].std["best"] == 0.0
    assert groups["norm=a"].mean["best"] == pytest.approx(2.2)


def test_optuna_results_and_a_maximised_metric(tmp_path):
    for num, lr in enumerate(["0.0026512259742974293", "0.00042246380742484593", "0.001"]):
        folder = make_job(tmp_path, num, {"optimizer.lr": lr}, [3.0 - num])
        with (folder / "metrics.jsonl").open("a") as f:
            f.write(json.dumps({"step": 4, "time": START + 10, "val/bleu": 10.0 * (num % 2)}) + "\n")
    (tmp_path / "optimization_results.yaml").write_text(
        yaml.safe_dump({"name": "optuna", "best_params": {"optimizer.lr": 0.001}, "best_value": 1.0})
    )
    report = build_report(tmp_path)
    assert report.rows[0].label == "optimizer.lr=0.001" and report.rows[1].label == "optimizer.lr=0.0004225"
    text = (tmp_path / "report.md").read_text()
    assert "## Optuna" in text and "best value: 1.0" in text and "`optimizer.lr=0.001`" in text
    assert (tmp_path / "optuna_history.png").read_bytes()[:4] == PNG

    by_bleu = build_report(tmp_path, metric="val/bleu", mode="max", plots=False)
    assert [r.job.num for r in by_bleu.rows][0] == 1
    assert "best_val_bleu" in read_csv(tmp_path / "report.csv")[0]


def test_swept_keys_and_short_values(tmp_path):
    for num, overrides in enumerate([{"norm": "a", "lr": "0.1"}, {"norm": "b", "lr": "0.1"}, {"norm": "b"}]):
        make_job(tmp_path, num, overrides, [1.0])
    assert swept_keys(read_sweep(tmp_path).jobs) == ["lr", "norm"]  # missing in one job counts as varying
    assert short_value("0.00042246380742484593") == "0.0004225"
    assert short_value("rope") == "rope" and short_value("32") == "32" and short_value("1e-3") == "0.001"


def test_cli_writes_the_report_and_reports_a_missing_folder(sweep, tmp_path, capsys):
    assert main([str(sweep), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "4 jobs (1 failed)" in out and str(sweep / "report.md") in out
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "error: no sweep folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1


def test_latest_is_the_newest_sweep_folder(tmp_path, monkeypatch):
    for name in ("2025-01-01/09-00-00", "2025-01-02/08-00-00", "2025-01-01/23-00-00"):
        make_job(tmp_path / "multirun" / name, 0, {"norm": "a"}, [1.0])
    monkeypatch.chdir(tmp_path)
    assert latest_sweep() == Path("multirun/2025-01-02/08-00-00")
    assert main(["latest", "--no-plots"]) == 0
    assert (tmp_path / "multirun/2025-01-02/08-00-00/report.md").exists()
    assert not (tmp_path / "multirun/2025-01-01/23-00-00/report.md").exists()
