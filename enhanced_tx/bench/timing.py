"""Wall-clock timing that survives a shared machine: device syncs, best-of-N, and a contention meter."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from enhanced_tx.runtime.contention import Contention


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of `fn`, with the device drained before and after (and, with `QUIET.max_wait_s`
    set, after waiting for other processes to leave the CPUs alone)."""
    QUIET.wait()
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@dataclass
class Samples:
    """Per-call seconds of one measured thing; the figure reported is the best (least disturbed) call."""

    seconds: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.seconds.append(value)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[len(ordered) // 2]


def other_cpus(window_s: float) -> float | None:
    """CPUs busy with other processes over the next `window_s` seconds (this process excluded)."""
    with Contention() as contention:
        time.sleep(window_s)
    return contention.other_cpus


@dataclass
class QuietGate:
    """Before each timed call, wait (up to `max_wait_s`) until other processes use under `threshold` CPUs.

    On a shared machine this keeps most samples clean; the best-of-N figure then reflects the code, not the
    neighbours. Off by default (`max_wait_s=0`); `--wait-quiet S` turns it on.
    """

    max_wait_s: float = 0.0
    threshold: float = 0.15
    window_s: float = 0.3
    waited_s: float = 0.0  # total time spent waiting, reported

    def wait(self) -> None:
        if self.max_wait_s <= 0:
            return
        start = time.perf_counter()
        while time.perf_counter() - start < self.max_wait_s:
            busy = other_cpus(self.window_s)
            if busy is None or busy < self.threshold:
                break
        self.waited_s += time.perf_counter() - start


QUIET = QuietGate()
