"""benchmarks/compiled_decode.py (docs/benchmarks.md, "Compiled decode step") runs end to end at a tiny shape:
it checks the compiled beams against the eager ones itself and prints one row. Compiling takes ~20 s: slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_script_prints_a_row_per_size_and_batch():
    args = ["--sizes", "tiny", "--batches", "1", "--new-tokens", "4", "--repeats", "1"]
    proc = subprocess.run([sys.executable, "benchmarks/compiled_decode.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("tiny")]
    assert len(rows) == 1 and rows[0][1] == "B1"
    assert all(float(value.rstrip("x")) > 0 for value in rows[0][2:7])
