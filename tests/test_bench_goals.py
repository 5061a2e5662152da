"""The bench's greedy rows of the compiled decode step: their goals, and the generate section that measures them."""

from __future__ import annotations

import json

import pytest

from enhanced_tx.bench.__main__ import main
from enhanced_tx.bench.generation import OURS_COMPILED, GenResult
from enhanced_tx.bench.goals import evaluate
from enhanced_tx.bench.runner import Results


def test_the_greedy_goals_cover_the_compiled_step_only_when_the_run_measured_it():
    rows = [
        GenResult("tiny", 1, "fp32", "ours", 150.0, 1.0, 1.0),
        GenResult("tiny", 1, "fp32", "bart", 100.0, 1.0, 1.0),
    ]
    names = [g.name for g, _ in evaluate(Results(config={}, machine={}, generate=rows)) if "tiny B1" in g.name]
    assert names == ["generate tiny B1 fp32 vs BART fp32"]
    rows.append(GenResult("tiny", 1, "fp32", OURS_COMPILED, 250.0, 1.0, 1.0))
    checks = {g.name: v for g, v in evaluate(Results(config={}, machine={}, generate=rows)) if "tiny B1" in g.name}
    assert checks == {
        "generate tiny B1 fp32 vs BART fp32": 1.5,
        f"generate tiny B1 fp32 {OURS_COMPILED} vs BART fp32": 2.5,
    }


@pytest.mark.slow  # compiles the tiny step (~20 s)
def test_the_generate_section_measures_the_compiled_step_and_quick_runs_skip_it(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--sizes", "tiny", "--dtypes", "fp32", "--models", "ours,bart", "--sections", "generate"]
    args += ["--gen-batches", "1", "--new-tokens", "6", "--repeats", "1", "--json", str(out)]
    assert main(args) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["generate"]}
    assert set(rows) == {"ours", "bart", OURS_COMPILED}
    assert rows[OURS_COMPILED]["dtype"] == "fp32" and rows[OURS_COMPILED]["tokens_per_s"] > 0
    assert main([*args, "--quick"]) == 0
    assert {r["model"] for r in json.loads(out.read_text())["generate"]} == {"ours", "bart"}
