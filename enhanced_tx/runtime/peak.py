"""Matrix-multiply peaks measured in the same run: the denominators of MFU (training's and `make bench`'s).

On CPUs fp32 has two GEMM libraries behind PyTorch: MKL (`torch.matmul`) and oneDNN
(`torch.ops.mkldnn._linear_pointwise`); the peak of a dtype is the best backend, so MFU is never flattered
by a slow reference. bf16/fp16 matmuls already go through oneDNN on CPUs and cuBLAS on GPUs.
Training's peak (`measure_matmul_peak`) never reads below the true peak: see its docstring.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

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


CPU_MATMUL_SECONDS = 0.1  # the longest one timed matmul of the start-of-run peak may take on a CPU
PROBE_SIZE = 128


def fitting_size(dtype: torch.dtype, size: int) -> int:
    """`size`, or less where a CPU multiplies `dtype` so slowly that a matmul of `size` would take more than
    `CPU_MATMUL_SECONDS` at the rate of a small probe: bf16 without bf16 hardware (an AVX2-only AMD EPYC,
    0.74 GFLOP/s against fp32's 71) took 53 s over the tries at 1024. A multiple of 64, at least the probe's."""
    a, b = torch.randn(PROBE_SIZE, PROBE_SIZE).to(dtype), torch.randn(PROBE_SIZE, PROBE_SIZE).to(dtype)
    a @ b  # warm-up
    seconds = _seconds(lambda: a @ b, torch.device("cpu"))
    rate = 2.0 * PROBE_SIZE**3 / max(seconds, 1e-9)
    fits = int((CPU_MATMUL_SECONDS * rate / 2.0) ** (1 / 3)) // 64 * 64
    return max(PROBE_SIZE, min(size, fits))


def best_peak(peaks: list[Peak], dtype: str) -> float | None:
    values = [p.flops for p in peaks if p.dtype == dtype]
    return max(values) if values else None


def measure_matmul_peak(
    device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5, tries: int = 3
) -> float:
    """The matmul peak MFU divides by, chosen so that it cannot read below the device's true peak: the largest
    of the datasheet peak (accelerators in DEVICE_PEAKS), the best of `tries` measurements (each the best of
    `repeats`, over every GEMM backend PyTorch offers) and the best this machine ever measured for the same
    device, dtype and thread count (remembered in the cache folder: a run started on a busy machine keeps the
    peak measured when it was quiet). Random matrices come from a forked RNG: the training RNG (dropout) is the
    same whether the peak is measured or set, so a resumed run stays bit-identical."""
    name = next(k for k, v in DTYPES.items() if v == dtype)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        size = size or (4096 if device.type == "cuda" else fitting_size(dtype, 1024))  # a second or two at the start
        measured = max(best_peak(measure_peaks([name], device, size, repeats), name) for _ in range(tries))
    key = machine_key(device, name)
    peak = max(measured, datasheet_peak(key, name) or 0.0, remembered_peaks().get(key, 0.0))
    remember_peak(key, peak)
    return peak


# Dense tensor-core peaks (FLOP/s, no sparsity) from the vendors' datasheets, by a substring of the device name.
# fp32 is left to measurement: whether TF32 is used depends on torch settings.
DEVICE_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4e12, "fp16": 989.4e12},
    "H100 PCIe": {"bf16": 756.0e12, "fp16": 756.0e12},
    "H100": {"bf16": 989.4e12, "fp16": 989.4e12},  # SXM (HBM3)
    "A100": {"bf16": 312.0e12, "fp16": 312.0e12},
}
PEAKS_FILE = "matmul_peaks.json"


def datasheet_peak(key: str, dtype: str) -> float | None:
    """The table's peak of the device named in `key` (first matching name, most specific first), or None."""
    for device_name, peaks in DEVICE_PEAKS.items():
        if device_name in key.split("|")[0]:
            return peaks.get(dtype)
    return None


def machine_key(device: torch.device, dtype: str) -> str:
    """What a remembered peak belongs to: device model, dtype, CPU threads, torch version."""
    model = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    return f"{model}|{dtype}|threads={torch.get_num_threads()}|torch={torch.__version__}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu " + line.partition(":")[2].strip()
    except OSError:
        pass
    return "cpu " + (platform.processor() or platform.machine())


def _peaks_path() -> Path:
    cache = os.environ.get("ENHANCED_TX_CACHE") or str(Path.home() / ".cache" / "enhanced_tx")  # paths.cache_dir
    return Path(cache) / PEAKS_FILE


def remembered_peaks() -> dict[str, float]:
    try:
        data = json.loads(_peaks_path().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)} if isinstance(data, dict) else {}


def remember_peak(key: str, flops: float) -> None:
    """Keep the best peak seen for `key` (atomic replace; a read-only cache folder is left alone)."""
    peaks = remembered_peaks()
    if peaks.get(key, 0.0) >= flops:
        return
    peaks[key] = flops
    path = _peaks_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(peaks, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
