"""`precision=auto`: fp32 or bf16 autocast, whichever trains this model's shapes faster on this machine.

Whether bf16 pays on a CPU is not told by its flags: on an AMD EPYC (AVX512_BF16) the tiny training step ran
1.5x faster under bf16 autocast, on an Intel Xeon with AVX512_BF16 0.79x (slower). So on a CPU this times
a forward + backward of every distinct weight shape of the model (x [128, K] @ W[N, K]^T, weighted by how
many weights have that shape), fp32 against bf16 autocast, alternating, best of 3; bf16 must win by 3%
(fp32 is the reference numerics). The shapes are timed from the cheapest up, and the timing stops once
bf16 has taken `SCREEN` times fp32's seconds so far: on a CPU without bf16 hardware (an AVX2-only AMD EPYC)
bf16 ran 19x slower on the tiny model's shapes and 32x on small's, whose full timing took 106 s; the screen
decides there in 0.5 s. On CUDA the documented hardware rule holds: bf16 where
`torch.cuda.is_bf16_supported()`, else fp32 (nothing measured).

A CPU's measurement is kept per machine (CPU model, vector extensions, torch version, threads: the key of
`linear_backend=auto`) and shape class in `precision.json` beside linear_backend.json in the cache folder
(`enhanced_tx.model.linear_choice`'s mechanism), so a later run on the same machine measures nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from enhanced_tx.model import linear_choice
from enhanced_tx.runtime.contention import Contention

CACHE_FILE = "precision.json"
ROWS, REPEATS = 128, 3
MARGIN = 1.03  # bf16 replaces fp32 only when this much faster
# Stop once bf16 has taken this many times fp32's seconds. A rule of thumb, not a bound: bf16 that far behind on
# the cheapest shapes means emulated bf16 (19-32x on the AVX2-only EPYC), where no larger shape wins it back.
SCREEN = 3.0
CANDIDATES = {"fp32": None, "bf16": torch.bfloat16}  # name -> autocast dtype (None: no autocast)


@dataclass(frozen=True)
class Choice:
    name: str  # "fp32" | "bf16"
    ratio: float | None  # fp32 seconds / bf16 seconds (above 1: bf16 faster); None where nothing was timed
    how: str  # "measured now", "cached", or the rule that decided


def weight_shapes(model: nn.Module) -> Counter[tuple[int, int]]:
    """(N, K) of every 2-D floating weight (linears, the tied embedding/head) and how many share it."""
    return Counter(tuple(p.shape) for p in model.parameters() if p.dim() == 2 and p.is_floating_point())


def shape_class(shapes: Counter[tuple[int, int]]) -> str:
    return " ".join(f"{n}x{k}*{count}" for (n, k), count in sorted(shapes.items()))


def time_once(dtype: torch.dtype | None, x: torch.Tensor, weight: torch.Tensor) -> float:
    """Seconds of one forward + backward of x @ weight^T, under `dtype` autocast (None: fp32)."""
    start = time.perf_counter()
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        y = x @ weight.t()
    y.backward(torch.ones_like(y))
    return time.perf_counter() - start


@dataclass(frozen=True)
class Measurement:
    seconds: dict[str, float]  # best seconds per candidate, summed over the shapes timed (weighted by count)
    timed: int  # shapes timed, cheapest first
    shapes: int  # distinct shapes of the model


def measure(shapes: Counter[tuple[int, int]], device: torch.device) -> Measurement:
    """Best seconds per candidate summed over the shapes (each weighted by its count), timed alternately,
    cheapest shape first, stopping early where bf16 has already lost by `SCREEN`."""
    generator = torch.Generator().manual_seed(0)  # private: the run's RNG (dropout, data order) is untouched
    total = dict.fromkeys(CANDIDATES, 0.0)
    ordered = sorted(shapes.items(), key=lambda item: (item[0][0] * item[0][1], item[0]))
    timed = 0
    with torch.inference_mode(False), torch.enable_grad():
        for (n, k), count in ordered:
            x = torch.randn(ROWS, k, generator=generator).to(device).requires_grad_()
            weight = torch.randn(n, k, generator=generator).to(device).requires_grad_()
            best = dict.fromkeys(CANDIDATES, float("inf"))
            for dtype in CANDIDATES.values():
                time_once(dtype, x, weight)  # warm-up: kernel selection, allocator
            for _ in range(REPEATS):
                for name, dtype in CANDIDATES.items():
                    best[name] = min(best[name], time_once(dtype, x, weight))
            for name in CANDIDATES:
                total[name] += count * best[name]
            timed += 1
            if total["bf16"] > SCREEN * total["fp32"]:
                break
    return Measurement(total, timed, len(ordered))


def pick(seconds: dict[str, float]) -> str:
    return "bf16" if seconds["bf16"] * MARGIN < seconds["fp32"] else "fp32"


def choose(model: nn.Module, device: torch.device) -> Choice:
    """fp32 or bf16 for training `model` on `device`: the CUDA rule, the machine's cached measurement, or a
    measurement now (then cached)."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return Choice("bf16" if supported else "fp32", None, f"CUDA rule: bf16 supported = {supported}")
    shapes = weight_shapes(model)
    shape = f"{device.type} autocast {shape_class(shapes)}"
    saved = linear_choice.remembered(CACHE_FILE, shape)
    if saved is not None and saved.get("choice") in CANDIDATES:
        seconds, how = saved.get("seconds") or {}, "cached"
        choice = saved["choice"]
    else:
        with Contention() as contention:
            measured = measure(shapes, device)
        seconds, how = measured.seconds, "measured now"
        if measured.timed < measured.shapes:
            how += f", stopped after {measured.timed} of {measured.shapes} shapes"
        choice = pick(seconds)
        if not linear_choice.remember(CACHE_FILE, shape, choice, seconds, contention.other_cpus):
            how += f", not saved for later runs: other processes kept {contention.other_cpus:.1f} CPUs busy"
    ratio = seconds["fp32"] / seconds["bf16"] if seconds.get("bf16") and "fp32" in seconds else None
    return Choice(choice, ratio, how)
