"""The table a multirun ends with (enhanced_tx/sweeps/summary.py), on job folders as run_train.py leaves them."""

from __future__ import annotations

from enhanced_tx.sweeps.summary import MAX_ROWS, sweep_summary

from .test_report import make_job


def _job(sweep, num, overrides, losses=None, error=None):
    folder = make_job(sweep, num, overrides, losses, error=error)
    if error is None:
        (folder / "model.safetensors").write_bytes(b"")  # run=best picks jobs that have weights
    return folder


def test_the_table_lists_every_job_marks_the_best_and_gives_its_commands(tmp_path):
    sweep = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    _job(sweep, 0, {"norm": "rmsnorm", "seed": 0}, [3.0, 2.6])
    best = _job(sweep, 1, {"norm": "layernorm", "seed": 0}, [2.9, 2.4, 2.5])  # best 2.4, not its last value
    _job(sweep, 2, {"norm": "rmsnorm", "seed": 1}, error="model.d_model=30 must be a multiple of model.n_heads=4")
    lines = sweep_summary(sweep)
    assert lines[0] == f"sweep {sweep}: 3 jobs, 1 failed, 2 ok"
    header, *rows = lines[1:5]
    assert header.split() == ["job", "overrides", "val/loss", "status"]
    assert [r.split() for r in rows] == [
        ["0", "norm=rmsnorm,seed=0", "2.6000", "ok"],
        ["1*", "norm=layernorm,seed=0", "2.4000", "ok"],
        ["2", "norm=rmsnorm,seed=1", "-", "failed"],
    ]
    assert lines[5] == f"best: job 1 (norm=layernorm,seed=0) val/loss 2.4000  [{best}]"
    assert lines[6] == f"  report:   python -m enhanced_tx.tracking.report {sweep}"
    assert lines[7].startswith(f"  generate: python run_generate.py run=best sweep={sweep} prompt=")


def test_a_sweep_where_every_job_failed_says_there_is_nothing_to_generate_from(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, {"norm": "rmsnorm"}, error="boom")
    lines = sweep_summary(sweep)
    assert lines[0].endswith("1 jobs, 1 failed") and lines[-1].startswith("no job finished with val/loss")
    assert sweep_summary(tmp_path / "nothing-here") == []


def test_a_long_sweep_shows_its_best_jobs_and_counts_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    for num in range(MAX_ROWS + 3):
        _job(sweep, num, {"optimizer.lr": 0.001 * (num + 1)}, [5.0 - 0.1 * num])
    lines = sweep_summary(sweep)
    table = [line for line in lines if line.startswith("  ") and "optimizer.lr=" in line]
    assert len(table) == MAX_ROWS and table[0].split()[0] == "3"  # jobs 0-2 are the worst: left out
    assert f"  ... and 3 more jobs (the {MAX_ROWS} best are shown)" in lines
    assert lines[-3].startswith(f"best: job {MAX_ROWS + 2} ")
