"""Matrix-multiply peaks measured in the same run: the denominators of MFU (training's and `make bench`'s).

On CPUs fp32 has two GEMM libraries behind PyTorch: MKL (`torch.matmul`) and oneDNN
(`torch.ops.mkldnn._linear_pointwise`); the peak of a dtype is the best backend, so MFU is never flattered
by a slow reference. bf16/fp16 matmuls already go through oneDNN on CPUs and cuBLAS on GPUs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class Peak:
    dtype: str
    backend: str
    size: int
    flops: float  # FLOP/s, best of the repeats


def _matmul_peak(dtype: torch.dtype, device: torch.device, size: int, repeats: int, onednn: bool) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    if onednn:

        def fn() -> object:
            return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")

    else:

        def fn() -> object:
            return a @ b

    fn()  # warm-up: kernel selection, page faults
    return 2.0 * size**3 / min(_seconds(fn, device) for _ in range(repeats))


def _seconds(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure_peaks(dtypes: list[str], device: torch.device, size: int | None = None, repeats: int = 5) -> list[Peak]:
    size = size or (8192 if device.type == "cuda" else 2048)
    peaks = []
    for name in dtypes:
        dtype = DTYPES[name]
        peaks.append(Peak(name, "torch.matmul", size, _matmul_peak(dtype, device, size, repeats, onednn=False)))
        if device.type == "cpu" and name == "fp32" and torch.backends.mkldnn.is_available():
            peaks.append(Peak(name, "oneDNN", size, _matmul_peak(dtype, device, size, repeats, onednn=True)))
    return peaks


def best_peak(peaks: list[Peak], dtype: str) -> float | None:
    values = [p.flops for p in peaks if p.dtype == dtype]
    return max(values) if values else None


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Best achieved FLOP/s of a square matmul on `device` in `dtype` over every GEMM backend PyTorch offers,
    on random matrices from a forked RNG: the training RNG (dropout) is the same whether the peak is measured
    or set, so a resumed run stays bit-identical."""
    name = next(k for k, v in DTYPES.items() if v == dtype)
    size = size or (4096 if device.type == "cuda" else 1024)  # a second at most at the start of a run
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        return best_peak(measure_peaks([name], device, size, repeats), name)
