"""Learning-rate schedules as functions of training progress in [0, 1].

Progress is measured against the configured total (steps, epochs, or a token / FLOP / minute budget),
so a run ended by its budget still finishes its schedule.
"""

from __future__ import annotations

import math


class Schedule:
    """Multiplier of the base learning rate; linear warmup over the first `warmup` fraction."""

    def __init__(self, warmup: float = 0.0) -> None:
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"scheduler.warmup={warmup} must be a fraction of training in [0, 1)")
        self.warmup = warmup

    def __call__(self, progress: float) -> float:
        progress = min(max(progress, 0.0), 1.0)
        if progress < self.warmup:
            return (progress + 1e-3) / (self.warmup + 1e-3)
        return self.after_warmup((progress - self.warmup) / (1.0 - self.warmup))

    def after_warmup(self, fraction: float) -> float:
        return 1.0


class Constant(Schedule):
    """Constant learning rate after the warmup."""


class WarmupCosine(Schedule):
    """Cosine decay from the base rate to `min_lr_ratio` x base after the warmup."""

    def __init__(self, warmup: float = 0.2, min_lr_ratio: float = 0.1) -> None:
        super().__init__(warmup)
        self.min_lr_ratio = min_lr_ratio

    def after_warmup(self, fraction: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
