"""Our contender in the quality bench: `run_train.py` with the project's defaults, as a user runs it.

The bench adds only what the task fixes (the data files, batches of 64 pairs, the precision, the number
of steps or the wall-clock budget, evaluation on the whole validation set) plus any ablation overrides;
everything else is whatever `data=pairs` gives a user. Test scores come from `run_eval.py` (greedy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import enhanced_tx
from enhanced_tx.bench.quality_result import Curve, Point, QualitySpec
from enhanced_tx.data.catalog_pairs import CatalogPairs

ROOT = Path(enhanced_tx.__file__).resolve().parents[1]


def train_command(
    data: CatalogPairs,
    run_dir: Path,
    spec: QualitySpec,
    steps: int,
    seconds: float | None,
    precision: str,
    overrides: Sequence[str] = (),
) -> list[str]:
    limits = [f"trainer.max_steps={steps}"]
    if seconds is not None:  # the schedule spans the budget; max_steps only caps it
        limits = [f"trainer.max_steps={10**9}", f"trainer.budget.minutes={seconds / 60:.6f}"]
    return [
        sys.executable,
        str(ROOT / "run_train.py"),
        "data=pairs",
        f"data.path={data.train}",
        f"data.val_path={data.val}",
        f"data.max_src_len={spec.max_len}",
        f"data.max_tgt_len={spec.max_len}",
        f"precision={precision}",
        "logger=none",
        f"seed={spec.seed}",
        f"trainer.batch_size={spec.batch_size}",
        f"trainer.eval_every={spec.eval_every}",
        "trainer.eval_batches=100000",  # the whole validation set, as for BART
        "trainer.progress_bar=false",
        "trainer.sample_max_new_tokens=1",  # in-training samples are not part of the comparison
        f"hydra.run.dir={run_dir}",
        *limits,
        *overrides,
    ]


def eval_command(
    data: CatalogPairs, run_dir: Path, spec: QualitySpec, precision: str, test: Path | None = None
) -> list[str]:
    """run_eval.py over `test` (the pairs BART is scored on), by default the whole test split."""
    return [
        sys.executable,
        str(ROOT / "run_eval.py"),
        f"run={run_dir}",
        "data=pairs",
        f"data.path={test or data.test}",
        "checkpoint=last",
        f"precision={precision}",
        f"batch_size={spec.batch_size}",
        f"max_new_tokens={spec.max_new_tokens}",
        "log_to_run=false",
        "progress_bar=false",
        "name=test",
    ]


def read_curve(run_dir: Path, name: str) -> Curve:
    """Validation points of metrics.jsonl, each with the training time logged at the same step."""
    minutes: dict[int, float] = {}
    val: dict[int, float] = {}
    tokens = 0
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        step = record.get("step")
        if "perf/train_minutes" in record:
            minutes[step] = record["perf/train_minutes"]
            tokens = max(tokens, int(record.get("perf/tokens", 0)))
        if "val/loss" in record:
            val[step] = record["val/loss"]
    curve = Curve(name=name)
    for step in sorted(val):
        known = [s for s in minutes if s <= step]
        seconds = 60 * minutes[max(known)] if known else 0.0
        curve.points.append(Point(step, seconds, val[step]))
    curve.tokens = tokens
    curve.train_seconds = 60 * max(minutes.values(), default=0.0)
    return curve


def run_ours(
    data: CatalogPairs,
    run_dir: Path,
    spec: QualitySpec,
    steps: int,
    seconds: float | None,
    precision: str,
    overrides: Sequence[str] = (),
    threads: int = 1,
    test: Path | None = None,
) -> tuple[Curve, dict]:
    """Train and score one run (on `test`, default the whole test split); returns its curve and run_eval's scores."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "disabled"}
    log = run_dir.parent / f"{run_dir.name}.log"  # not with_suffix: names of overrides hold dots
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        for command in (
            train_command(data, run_dir, spec, steps, seconds, precision, overrides),
            eval_command(data, run_dir, spec, precision, test),
        ):
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode:
                raise RuntimeError(f"{' '.join(command[1:3])} failed (exit {done.returncode}); see {log}")
    scores = json.loads((run_dir / "eval" / "test.json").read_text(encoding="utf-8"))
    name = " ".join(["ours", *overrides])
    return read_curve(run_dir, name), scores
