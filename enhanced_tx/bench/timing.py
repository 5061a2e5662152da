"""Wall-clock timing that survives a shared machine: device syncs, best-of-N, and a contention meter."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


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


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, busy ticks of this process) from /proc; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open(f"/proc/{os.getpid()}/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy, int(own[11]) + int(own[12])  # utime + stime, all threads


class Contention:
    """Measures how much CPU other processes took while the block ran (0.0 = the machine was ours).

    Benchmarks on a shared machine are only comparable when this is small; the report prints it.
    """

    def __init__(self) -> None:
        self.other_cpus: float | None = None  # average number of CPUs busy with other processes

    def __enter__(self) -> Contention:
        self._start, self._t0 = _cpu_ticks(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_ticks()
        if self._start is None or end is None:
            return
        seconds = time.perf_counter() - self._t0
        ticks = os.sysconf("SC_CLK_TCK")
        other = (end[0] - self._start[0]) - (end[1] - self._start[1])
        self.other_cpus = max(0.0, other / ticks / max(seconds, 1e-9))


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
