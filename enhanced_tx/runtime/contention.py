"""How much CPU other processes take while a block runs: read from /proc, so Linux only (None elsewhere).

Timings taken while a neighbour competes for the cores say little about the code; the bench prints this
figure beside its numbers, and the per-machine choices (`linear_backend=auto`, `precision=auto`) are not saved
for later runs when it was high.
"""

from __future__ import annotations

import os
import time


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
