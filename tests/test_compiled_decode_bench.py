"""benchmarks/compiled_decode.py (docs/benchmarks.md, "Compiled decode step"): the compiled step's beams equal
the eager ones, and the script runs end to end at a tiny shape. Compiling takes 10-40 s: slow."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from enhanced_tx.bench.beam import BEAM_SETTINGS
from enhanced_tx.bench.generation import ours_generator
from enhanced_tx.generation import BeamSearch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compiled_decode import compiled_runner  # noqa: E402

from .conftest import make_model  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_the_compiled_step_finds_the_eager_beams(batch):
    model = make_model()  # vocabulary 97, padded to 128: the mask is in the compiled region
    src = torch.randint(4, 97, (batch, 7), generator=torch.Generator().manual_seed(1))
    eager = ours_generator(model, BeamSearch(**BEAM_SETTINGS))(src, 12)
    compiled = compiled_runner(copy.deepcopy(model), backend="aot_eager")(src, 12)
    assert compiled.shape == (batch, 12)
    assert torch.equal(compiled, eager)


@pytest.mark.slow
def test_the_script_prints_a_row_per_size_and_batch():
    args = ["--sizes", "tiny", "--batches", "1", "--new-tokens", "4", "--repeats", "1", "--backend", "aot_eager"]
    proc = subprocess.run([sys.executable, "benchmarks/compiled_decode.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("tiny")]
    assert len(rows) == 1 and rows[0][1] == "B1"
    assert all(float(value.rstrip("x")) > 0 for value in rows[0][2:7])
