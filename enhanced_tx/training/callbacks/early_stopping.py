"""`callbacks=[early_stopping]`: end the run when the monitored metric has not improved by `min_delta` for
`patience` evaluations in a row; a normal finish (final weights written) with the reason in the summary."""

from __future__ import annotations

from enhanced_tx.errors import ConfigError
from enhanced_tx.training.callbacks.base import Callback, LoopContext
from enhanced_tx.training.monitor import Monitor


class EarlyStopping(Callback):
    name = "early_stopping"

    def __init__(self, patience: int = 3, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ConfigError(f"callbacks.early_stopping.patience={patience} must be >= 1")
        if min_delta < 0:
            raise ConfigError(f"callbacks.early_stopping.min_delta={min_delta} must be >= 0")
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.evaluations_without_improvement = 0

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        monitor = Monitor.named(ctx.monitor_name)
        value = metrics.get(monitor.name, float("nan"))
        if monitor.improves(value, self.best, self.min_delta):
            self.best, self.evaluations_without_improvement = value, 0
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            self.stop_reason = (
                f"early stopping: {monitor.name} did not improve by more than {self.min_delta:g} on "
                f"{self.best} for {self.patience} evaluations"
            )

    def state_dict(self) -> dict:
        return {"best": self.best, "evaluations_without_improvement": self.evaluations_without_improvement}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
        self.evaluations_without_improvement = int(state["evaluations_without_improvement"])
