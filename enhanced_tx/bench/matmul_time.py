"""How long a call spends in its matrix multiplies: the floor under its time on this machine's kernels.

A `TorchDispatchMode` times every matmul op a call dispatches (oneDNN's linear, `aten.linear`, mm, addmm, bmm,
baddbmm) and adds up the seconds; nested ops inside one of them are not seen twice, since the mode is off
while an op it intercepted runs. Everything else still runs (through the mode's Python hook, so the call
itself is slower: only the matmul seconds are used). Over beam search, `peer call seconds / our matmul
seconds` is the best ratio to the peer our own kernels allow if everything else took no time at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MATMUL_OPS = frozenset(
    {
        torch.ops.mkldnn._linear_pointwise.default,
        torch.ops.aten.linear.default,
        torch.ops.aten.mm.default,
        torch.ops.aten.addmm.default,
        torch.ops.aten.bmm.default,
        torch.ops.aten.baddbmm.default,
    }
)


class MatmulTimer(TorchDispatchMode):
    """Within: `seconds` grows by the wall time of every matmul op dispatched."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func not in MATMUL_OPS:
            return func(*args, **(kwargs or {}))
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def matmul_seconds(call: Callable[[], object]) -> float:
    """Seconds `call()` spends inside matmul ops (CPU: ops run synchronously, so wall time is theirs)."""
    timer = MatmulTimer()
    with timer:
        call()
    return timer.seconds
