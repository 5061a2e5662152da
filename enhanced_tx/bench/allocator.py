"""glibc malloc settings for CPU training, measured as an A/B of whole processes.

By default glibc serves every allocation above 128 KiB-32 MiB with a fresh `mmap` and returns it to the
OS on `free`, and trims the heap top above the trim threshold. A training step frees and reallocates the
same large activations, gradients and logits every step, so each step touches fresh pages: the first
write to each 4 KiB page is a minor page fault that the kernel has to zero (measured: 33,000 faults per
tiny step, 115,000-190,000 per small step). `MALLOC_MMAP_MAX_=0` (never `mmap`; large blocks come from the
heap) with a high `MALLOC_TRIM_THRESHOLD_` (never give the heap back) keeps those pages mapped from one
step to the next. The arithmetic is untouched (same losses, bit for bit); the process keeps its peak
memory instead of returning it between steps.

The settings act when the process starts, so the A/B alternates child processes, each timing our
model's training step (best of N) with and without them. `python -m enhanced_tx.bench.allocator SIZE
DTYPE STEPS` is one such child: it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import torch

KEEP_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}
_MALLOC_VARS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def _child(
    size: str, dtype: str, steps: int, linear_backend: str, optimizer: str, wait_quiet: float
) -> dict[str, float]:
    from enhanced_tx.bench.batch import make_batch
    from enhanced_tx.bench.peers import build_ours
    from enhanced_tx.bench.shapes import SHAPES
    from enhanced_tx.bench.timing import QUIET, time_once
    from enhanced_tx.bench.training import TrainOptions, TrainStep

    QUIET.max_wait_s = wait_quiet
    torch.manual_seed(0)
    shape = SHAPES[size]
    device = torch.device("cpu")
    step = TrainStep(build_ours(shape, linear_backend=linear_backend), dtype, make_batch(shape, device),
                     TrainOptions(optimizer=optimizer))  # fmt: skip
    for _ in range(2):  # warm-up: optimizer state, and the heap grows to the step's high-water mark
        step()
    best, faults = float("inf"), float("inf")
    for _ in range(steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        best = min(best, time_once(step, device))
        faults = min(faults, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"step_s": best, "faults": faults, "loss": float(step.last_loss)}


def run_child(
    size: str,
    dtype: str,
    steps: int,
    keep_memory: bool,
    linear_backend: str = "onednn",
    optimizer: str = "fused",
    wait_quiet: float = 0.0,
) -> dict[str, float]:
    """One child process: our training step with (`keep_memory`) or without the malloc settings."""
    env = {k: v for k, v in os.environ.items() if k not in _MALLOC_VARS}
    if keep_memory:
        env.update(KEEP_MEMORY_ENV)
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    args = [size, dtype, str(steps), linear_backend, optimizer, str(wait_quiet)]
    out = subprocess.run(
        [sys.executable, "-m", "enhanced_tx.bench.allocator", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def allocator_ab(
    size: str, dtype: str, steps: int, repeats: int, linear_backend: str, optimizer: str, wait_quiet: float
) -> tuple[dict[str, float], dict[str, float]]:
    """(kept memory, glibc default): best step and fewest faults over `repeats` alternating process pairs."""
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for _ in range(repeats):
        for keep in (False, True):
            runs[keep].append(run_child(size, dtype, steps, keep, linear_backend, optimizer, wait_quiet))

    def best(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: min(r[key] for r in rows) for key in ("step_s", "faults")} | {"loss": rows[-1]["loss"]}

    return best(runs[True]), best(runs[False])


if __name__ == "__main__":
    size, dtype, steps, backend, optimizer, wait = sys.argv[1:7]
    print(json.dumps(_child(size, dtype, int(steps), backend, optimizer, float(wait))))
