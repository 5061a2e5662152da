"""What one optimizer step reports, and the error a run that keeps producing non-finite losses ends with."""

from __future__ import annotations

import math
from typing import NamedTuple

from enhanced_tx.errors import EnhancedTxError


class TrainingDiverged(EnhancedTxError):
    """The loss stayed non-finite for too many steps in a row."""


class StepResult(NamedTuple):
    """One optimizer step, as Python numbers (the step's one host sync)."""

    loss_sum: float  # summed training loss over the step's target tokens (all ranks), z-loss included
    targets: int
    tokens: int  # non-padding source + target tokens (all ranks)
    grad_norm: float
    flops: float  # model FLOPs of forward + backward (all ranks)
    z_loss_sum: float = 0.0  # the z-loss's share of loss_sum (0 with trainer.z_loss=0)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss_sum) and math.isfinite(self.grad_norm)
