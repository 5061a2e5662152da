"""Hardware peak for model-FLOP utilisation (torchtitan-style efficiency reporting)."""

from __future__ import annotations

import torch


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Best achieved FLOP/s of a square matmul on `device` in `dtype` over every GEMM backend PyTorch offers
    (MKL and oneDNN for fp32 on CPUs): the denominator of MFU, shared with `make bench`."""
    from enhanced_tx.bench.peak import DTYPES, best_peak, measure_peaks

    name = next(k for k, v in DTYPES.items() if v == dtype)
    size = size or (4096 if device.type == "cuda" else 1024)  # a second at most at the start of a run
    return best_peak(measure_peaks([name], device, size, repeats), name)
