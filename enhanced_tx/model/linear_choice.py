"""`linear_backend=auto` on CPUs: the GEMM backend measured fastest on this machine, for each weight shape.

Which library wins depends on the CPU: on AMD EPYC, MKL takes its AVX2 path and oneDNN's AVX-512 kernels
are 1.3-2x faster; on Intel Xeons MKL has AVX-512 too, and the tiny model's fp32 step was slower with oneDNN
(0.92x HF BART's). So the first training matmul of each weight shape times a forward + backward of that
shape (256 rows) with each candidate, alternating, best of 3, and keeps the faster one; a candidate must
win by 3% to replace PyTorch's default, so "auto" is never measurably slower than `F.linear`.

Inference matmuls inside `packed_weights()` (decoding) are chosen per number of rows too
(`choose_inference`), between `F.linear` and oneDNN with the weight packed: which wins depends on the CPU
and the rows. On an AMD EPYC packed oneDNN is about 2x MKL even for one row; on an Intel Xeon (AVX-512,
AMX) MKL wins at one row (packed 0.7-0.9x) and packed oneDNN at 5-40 rows (1.1-2.3x), while weights under
1 MB take MKL at up to 8 rows. Rows are bucketed to the next power of two (at most 512) and timed at the
bucket's size, forward only, alternately, best of 3 samples of at least 1 ms each; packed oneDNN must win
by the same 3%.

Choices are kept per process and in a JSON file per machine (CPU model, its vector extensions, torch version,
thread count) under the cache directory (`ENHANCED_TX_CACHE`, else ~/.cache/enhanced_tx, as
`paths.cache_dir`; `set_cache_dir` points it elsewhere), so a later run on the same machine measures nothing.
A choice measured while other processes kept more than `BUSY_CPUS` CPUs busy holds for this process only: a
file entry outlives the neighbour that skewed it (one timed so kept MKL for a weight that packed oneDNN, timed
alone, ran 1.3x faster; greedy decoding of the small model was 1.36x BART's speed with it, 1.43x without).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils._python_dispatch import _disable_current_modes

from enhanced_tx.runtime.contention import Contention

Matmul = Callable[[Tensor, Tensor], Tensor]  # (x [M, K], weight [N, K]) -> [M, N], differentiable
MARGIN = 1.03  # a candidate replaces the default only when this much faster
ROWS, REPEATS = 256, 3
MAX_INFERENCE_ROWS = 512
CACHE_FILE = "linear_backend.json"  # `precision=auto` keeps its own file beside it
BUSY_CPUS = 0.5  # other processes' CPUs while measuring, above which a choice is not written to the file
SAMPLE_S = 1e-3  # an inference sample repeats the call until it lasts this long: small matmuls take microseconds

# (K, N, dtype, threads) -> backend, and (K, N, dtype, threads, rows bucket) -> backend for inference
_choices: dict[tuple, str] = {}
_machines: dict[int, str] = {}  # threads -> machine_key()
_cache_dir: Path | None = None


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Where the per-machine file of measured choices lives (None: the default)."""
    global _cache_dir
    _cache_dir = None if path is None else Path(path)
    _choices.clear()


def cache_file(name: str = CACHE_FILE) -> Path:
    """A per-machine file of measured choices (`precision=auto` keeps its own, `precision.json`, here too)."""
    root = _cache_dir or Path(os.environ.get("ENHANCED_TX_CACHE", Path.home() / ".cache" / "enhanced_tx"))
    return root / name


def machine_key() -> str:
    """CPU model, the vector extensions that decide the kernels, torch version and threads."""
    threads = torch.get_num_threads()
    if threads not in _machines:
        _machines[threads] = _describe_machine(threads)
    return _machines[threads]


def _describe_machine(threads: int) -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    isa = "+".join(f for f in wanted if f in flags)
    return f"{model}|{isa}|torch {torch.__version__}|{threads} threads"


def _time(matmul: Matmul, x: Tensor, weight: Tensor) -> float:
    start = time.perf_counter()
    y = matmul(x, weight)
    y.backward(torch.ones_like(y))
    return time.perf_counter() - start


def measure(k: int, n: int, dtype: torch.dtype, candidates: dict[str, Matmul]) -> dict[str, float]:
    """Best seconds of one forward + backward per candidate, all timed alternately on the same tensors."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, k, generator=generator).to(dtype).requires_grad_()
    weight = torch.randn(n, k, generator=generator).to(dtype).requires_grad_()
    best = {name: float("inf") for name in candidates}
    for matmul in candidates.values():
        _time(matmul, x, weight)  # warm-up: kernel selection, allocator
    for _ in range(REPEATS):
        for name, matmul in candidates.items():
            best[name] = min(best[name], _time(matmul, x, weight))
    return best


def pick(seconds: dict[str, float], default: str = "default") -> str:
    """The fastest candidate, if it beats `default` by MARGIN; else `default`."""
    fastest = min(seconds, key=seconds.__getitem__)
    return fastest if seconds[fastest] * MARGIN < seconds[default] else default


def _read(name: str = CACHE_FILE) -> dict:
    try:
        return json.loads(cache_file(name).read_text())
    except (OSError, ValueError):
        return {}


def remembered(name: str, shape: str) -> dict | None:
    """This machine's saved {"choice", "seconds"} for `shape` in cache file `name`, or None."""
    saved = _read(name).get(machine_key(), {}).get(shape)
    return saved if isinstance(saved, dict) else None


def remember(name: str, shape: str, choice: str, seconds: dict[str, float], other_cpus: float | None = None) -> bool:
    """Save a measured choice for this machine and `shape` in cache file `name` (atomic replace), unless other
    processes kept more than `BUSY_CPUS` CPUs busy while it was measured (`other_cpus`); whether it was saved."""
    if other_cpus is not None and other_cpus > BUSY_CPUS:
        return False
    _write(machine_key(), shape, choice, seconds, name)
    return True


def _write(machine: str, shape: str, choice: str, seconds: dict[str, float], name: str = CACHE_FILE) -> None:
    data = _read(name)
    data.setdefault(machine, {})[shape] = {"choice": choice, "seconds": seconds}
    path = cache_file(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache directory: the choice still holds for this process


def rows_bucket(rows: int) -> int:
    """The row count an inference matmul of `rows` rows is measured at: the next power of two, at most 512."""
    return min(1 << max(rows - 1, 0).bit_length(), MAX_INFERENCE_ROWS)


Prepare = Callable[[Tensor], Callable[[Tensor], Tensor]]  # weight [N, K] -> (x [M, K] -> x @ weight^T)


def measure_inference(
    k: int, n: int, dtype: torch.dtype, rows: int, candidates: dict[str, Prepare]
) -> dict[str, float]:
    """Best seconds per forward call of `rows` rows per candidate. A candidate is given the weight once and
    returns its matmul by it, so one that packs the weight packs it before the timing, as decoding does."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, k, generator=generator).to(dtype)
    weight = torch.randn(n, k, generator=generator).to(dtype)
    calls = {name: prepare(weight) for name, prepare in candidates.items()}
    repeats = {}
    for name, call in calls.items():  # warm-up, then how many calls make a sample of SAMPLE_S
        call(x)
        start = time.perf_counter()
        call(x)
        repeats[name] = max(1, min(1000, int(SAMPLE_S / max(time.perf_counter() - start, 1e-7))))
    best = {name: float("inf") for name in calls}
    for _ in range(REPEATS):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                call(x)
            best[name] = min(best[name], (time.perf_counter() - start) / repeats[name])
    return best


def choose(k: int, n: int, dtype: torch.dtype, candidates: dict[str, Matmul]) -> str:
    """The backend for a [N, K] weight of `dtype` in training on this machine: remembered, read from the cache
    file, or measured now on a forward + backward (then written there)."""

    def measure_now() -> dict[str, float]:
        with torch.inference_mode(False), torch.enable_grad():
            return measure(k, n, dtype, candidates)

    shape = f"{str(dtype).removeprefix('torch.')} {k}x{n}"
    return _choice((k, n, dtype, torch.get_num_threads()), shape, candidates, measure_now)


def choose_inference(k: int, n: int, dtype: torch.dtype, rows: int, candidates: dict[str, Prepare]) -> str:
    """The backend for an inference matmul of `rows` rows by a [N, K] weight of `dtype` on this machine."""
    bucket = rows_bucket(rows)
    key = (k, n, dtype, torch.get_num_threads(), bucket)
    choice = _choices.get(key)  # the path of every decoding step: no string or closure is built
    if choice is not None:
        return choice

    def measure_now() -> dict[str, float]:
        with torch.inference_mode():
            return measure_inference(k, n, dtype, bucket, candidates)

    shape = f"inference {str(dtype).removeprefix('torch.')} {k}x{n} rows<={bucket}"
    return _choice(key, shape, candidates, measure_now)


def _choice(key: tuple, shape: str, candidates: dict, measure_now: Callable[[], dict[str, float]]) -> str:
    """Remembered in the process, else read from this machine's cache file, else measured and written there."""
    choice = _choices.get(key)
    if choice is None:
        saved = _read().get(machine_key(), {}).get(shape)
        if saved is not None and saved.get("choice") in candidates:
            choice = saved["choice"]
        else:
            # outside any TorchDispatchMode of the caller (FlopCounterMode, the bench's MatmulTimer): its hooks
            # would slow the timed calls and see the measurement's matmuls as the caller's
            with _disable_current_modes(), Contention() as contention:
                seconds = measure_now()
            choice = pick(seconds)
            remember(CACHE_FILE, shape, choice, seconds, contention.other_cpus)
        _choices[key] = choice
    return choice
