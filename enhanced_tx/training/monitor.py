"""`Monitor`: the metric that picks `best.pt` and what `run_train.py` returns, with its direction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from enhanced_tx.errors import ConfigError

# what trainer.monitor may name, and whether higher is better
MONITORS = {"val/loss": False, "val/bleu": True, "val/chrf": True}


@dataclass(frozen=True)
class Monitor:
    name: str = "val/loss"
    higher_is_better: bool = False

    @classmethod
    def named(cls, name: str) -> Monitor:
        if name not in MONITORS:
            raise ConfigError(f"trainer.monitor={name} must be one of {', '.join(MONITORS)}")
        return cls(name, MONITORS[name])

    @property
    def best_key(self) -> str:
        """Where the best value is logged and summarised: val/best_loss, val/best_bleu, ..."""
        return "val/best_" + self.name.removeprefix("val/")

    @property
    def worst(self) -> float:
        return -math.inf if self.higher_is_better else math.inf

    def improves(self, value: float, best: float | None, min_delta: float = 0.0) -> bool:
        """Whether `value` beats `best` (None: nothing yet) by more than `min_delta`; never for NaN or inf."""
        if not math.isfinite(value):
            return False
        if best is None or not math.isfinite(best):
            return True
        return value > best + min_delta if self.higher_is_better else value < best - min_delta
