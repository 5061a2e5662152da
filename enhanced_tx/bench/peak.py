"""Matrix-multiply peaks measured in the same run: the denominators of MFU.

On CPUs fp32 has two GEMM libraries behind PyTorch: MKL (`torch.matmul`) and oneDNN
(`torch.ops.mkldnn._linear_pointwise`); the peak of a dtype is the best backend, so MFU is never flattered
by a slow reference. bf16/fp16 matmuls already go through oneDNN on CPUs and cuBLAS on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from enhanced_tx.bench.timing import Samples, time_once


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
    samples = Samples()
    for _ in range(repeats):
        samples.add(time_once(fn, device))
    return 2.0 * size**3 / samples.best


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
