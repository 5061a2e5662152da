"""`TrainingState`: the counters of a run besides model and optimizer tensors, saved in every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass
class TrainingState:
    """Where the run is: steps, tokens, FLOPs and seconds spent, the best values seen, the divergence count.

    The data position lives in the batch source, the RNG in the checkpoint's `rng` (both saved beside)."""

    step: int = 0  # optimizer steps taken
    tokens: int = 0  # non-padding source + target tokens seen (all ranks)
    flops: float = 0.0  # model FLOPs spent (all ranks)
    train_seconds: float = 0.0  # wall clock of training steps (evaluation excluded)
    best_val_loss: float = math.inf
    best_monitored: float | None = None  # best trainer.monitor value (val/loss too), None before the first
    nonfinite_in_a_row: int = 0

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        known = {f.name for f in dataclasses.fields(self)}
        for key, value in state.items():
            if key in known:  # older checkpoints also hold the data position here (epoch, batch_in_epoch)
                setattr(self, key, value)

    def record_step(self, tokens: int, flops: float, seconds: float, finite: bool) -> None:
        self.step += 1
        self.tokens += tokens
        self.flops += flops
        self.train_seconds += seconds
        self.nonfinite_in_a_row = 0 if finite else self.nonfinite_in_a_row + 1
