"""Activation memory: bytes the forward pass leaves allocated (saved activations and the logits).

On CUDA this is `torch.cuda.memory_allocated` before and after, plus the peak of the whole step. On a
CPU PyTorch keeps no allocator statistics, so the figure is the growth of glibc's in-use heap and mmap
bytes (`mallinfo2`) across the forward pass; parameters exist before it and are not counted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from enhanced_tx.bench.batch import make_batch
from enhanced_tx.bench.peers import BART, OURS, T5, Contender
from enhanced_tx.bench.shapes import Shape

CHECKPOINTABLE = (OURS, BART, T5)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _cpu_allocated() -> int | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def allocated(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _cpu_allocated()


def set_checkpointing(contender: Contender, enabled: bool) -> None:
    model = contender.model
    if contender.name == OURS:
        model.set_gradient_checkpointing(enabled)
    elif enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


@dataclass
class MemoryResult:
    size: str
    model: str
    dtype: str
    forward_mb: float  # allocated after the forward pass (logits included), no checkpointing
    forward_ckpt_mb: float  # the same with gradient checkpointing
    peak_mb: float | None = None  # CUDA only: peak allocated over the whole step, no checkpointing
    peak_ckpt_mb: float | None = None

    @property
    def ratio(self) -> float:
        return self.forward_ckpt_mb / self.forward_mb


def _forward_bytes(contender: Contender, shape: Shape, dtype: str, device: torch.device) -> tuple[int, int | None]:
    """(bytes allocated by the forward pass, peak bytes over forward + loss + backward or None on CPU)."""
    batch = make_batch(shape, device)
    model = contender.model.train()
    model.zero_grad(set_to_none=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = allocated(device)
    with autocast:
        logits = contender.logits(batch.src, batch.tgt_in)
        after = allocated(device)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten())
    del logits
    loss.backward()
    peak = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    model.zero_grad(set_to_none=True)
    if before is None or after is None:
        raise RuntimeError("no allocator statistics on this platform")
    return after - before, peak


def measure_memory(shape: Shape, contender: Contender, dtype: str, device: torch.device) -> MemoryResult:
    mb = 2.0**20
    results = {}
    for enabled in (False, True):
        set_checkpointing(contender, enabled)
        _forward_bytes(contender, shape, dtype, device)  # warm-up: lazily created buffers, allocator caches
        results[enabled] = _forward_bytes(contender, shape, dtype, device)
    set_checkpointing(contender, False)
    (plain, plain_peak), (ckpt, ckpt_peak) = results[False], results[True]
    return MemoryResult(
        size=shape.name,
        model=contender.name,
        dtype=dtype,
        forward_mb=plain / mb,
        forward_ckpt_mb=ckpt / mb,
        peak_mb=None if plain_peak is None else plain_peak / mb,
        peak_ckpt_mb=None if ckpt_peak is None else ckpt_peak / mb,
    )
