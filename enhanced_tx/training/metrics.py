"""Throughput and model-FLOP utilisation (MFU) of the training steps since the last log line.

An MFU above 1 cannot be: the peak it divides by was measured too low. It is then flagged once on the console
(and the run's log) and perf/mfu is left out for the rest of the run rather than logged as a number.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from enhanced_tx.training.state import TrainingState


@dataclass
class ThroughputWindow:
    """Sums over the steps since the last report; `report` turns them into the logged perf/train metrics."""

    peak_flops: float  # one device's matmul peak, FLOP/s
    world_size: int = 1
    loss_sum: float = 0.0
    targets: int = 0
    tokens: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    mfu_trusted: bool = True  # false once an MFU above 1 showed the peak to be wrong

    def add(self, loss_sum: float, targets: int, tokens: int, seconds: float, flops: float, finite: bool) -> None:
        if finite:  # a skipped (non-finite) step adds no loss
            self.loss_sum += loss_sum
            self.targets += targets
        self.tokens += tokens
        self.seconds += seconds
        self.flops += flops

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.targets, 1)

    def report(self, state: TrainingState) -> dict[str, float]:
        """perf/* metrics of the window (and the run's totals so far); the window then starts again."""
        seconds = max(self.seconds, 1e-9)
        achieved = self.flops / seconds
        metrics = {
            "train/loss": self.loss,
            "perf/tokens_per_s": self.tokens / seconds,
            "perf/tokens": state.tokens,
            "perf/flops": state.flops,
            "perf/tflops_per_s": achieved / 1e12,
            "perf/train_minutes": state.train_seconds / 60,
        }
        mfu = achieved / (self.peak_flops * self.world_size)
        if mfu > 1 and self.mfu_trusted:  # more than the peak: the peak is wrong, so is every MFU of this run
            self.mfu_trusted = False
            print(
                f"warning: MFU would read {mfu:.2f} (training achieved {achieved / 1e12:.3g} TFLOP/s on "
                f"{self.world_size} device(s), above {self.world_size} x the {self.peak_flops / 1e12:.3g} TFLOP/s "
                "matmul peak): a "
                "measurement problem, not a result; perf/mfu is not logged for this run. "
                "Set trainer.peak_flops=<the device's FLOP/s> to get MFU",
                file=sys.stderr,
            )
        if self.mfu_trusted:
            metrics["perf/mfu"] = mfu
        self.loss_sum, self.targets, self.tokens, self.seconds, self.flops = 0.0, 0, 0, 0.0, 0.0
        return metrics
