"""benchmarks/gpu_check.sh --dry-run: the prepared GPU script's whole path (every part, the report, the
results files) runs on a CPU at a tiny shape without an error. About 50 s on 2 shared cores: slow."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from enhanced_tx.training.precision import cpu_has_bf16_kernels

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    not cpu_has_bf16_kernels(),
    reason="bf16 is emulated on this CPU (no AVX-512 or AMX): the dry run's bf16 parts ran past 10 minutes "
    "on an AVX2-only AMD EPYC (2026-12-08), against about 50 s where bf16 has kernels",
)
def test_the_dry_run_runs_every_part_and_writes_its_results(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out["errors"] == {} and out["skipped"] == [] and out["dry_run"] is True
    for part in ("peaks", "flash", "recompiles", "decode", "train ours bf16 compiled per block", "memory bart"):
        assert part in out, part
    assert out["recompiles"]["unique_graphs"] <= 4 and out["recompiles"]["finite"]
    assert out["train ours bf16 compiled per block"]["mfu"] > 0
    reports = list(tmp_path.glob("*-cpu-dry-run.md"))
    assert len(reports) == 1 and "greedy decode" in reports[0].read_text()
    assert not list((ROOT / "benchmarks" / "results").glob("*cpu-dry-run*"))  # a dry run leaves results/ alone
