"""Warnings a researcher would want said once, on the console and in the run's log: the run will pass over
its training data many times, and validation loss has been rising (overfitting). Always on; wired in by the
composition root."""

from __future__ import annotations

import math
import sys

from enhanced_tx.training.callbacks.base import Callback, LoopContext


class DataSizeWarning(Callback):
    """At the start: the run's planned items (steps x global batch, or a token budget) against the training
    items; more than `max_epochs` passes is a warning."""

    name = "data_size_warning"

    def __init__(self, train_items: int | None, tokens_per_item: float | None, max_epochs: float = 10.0) -> None:
        self.train_items, self.tokens_per_item, self.max_epochs = train_items, tokens_per_item, max_epochs

    def on_fit_start(self, trainer, ctx: LoopContext) -> None:
        if not ctx.is_main or not self.train_items or ctx.state.step:
            return  # streamed data has no size; a resumed run was warned when it started
        epochs = planned_epochs(trainer, self.train_items, self.tokens_per_item)
        if epochs is not None and epochs > self.max_epochs:
            print(
                f"warning: the run will pass over its training data about {epochs:.0f} times ({self.train_items} "
                "training items): validation loss will likely rise long before the end; use more data, fewer "
                "steps (trainer.max_steps / trainer.budget) or callbacks=[early_stopping]",
                file=sys.stderr,
            )


def planned_epochs(trainer, train_items: int, tokens_per_item: float | None) -> float | None:
    """Passes over the training data the run's limits allow (the smallest limit known in advance)."""
    per_step = trainer.batch_size * trainer.accumulation * trainer.world_size
    passes = []
    if trainer.max_steps:
        passes.append(trainer.max_steps * per_step / train_items)
    if trainer.epochs:
        passes.append(float(trainer.epochs))
    tokens = (trainer.budget_config or {}).get("tokens")
    if tokens and tokens_per_item:
        passes.append(tokens / tokens_per_item / train_items)
    return min(passes) if passes else None


class OverfittingWarning(Callback):
    """After an evaluation: val/loss above the previous one `patience` evaluations in a row, said once."""

    name = "overfitting_warning"

    def __init__(self, patience: int = 3) -> None:
        self.patience = patience
        self.previous, self.rises, self.warned = math.inf, 0, False
        self.best, self.best_step = math.inf, 0

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        loss = metrics.get("val/loss", math.nan)
        if not math.isfinite(loss):
            return
        self.rises = self.rises + 1 if loss > self.previous else 0
        self.previous = loss
        if loss < self.best:
            self.best, self.best_step = loss, ctx.state.step
        if self.rises >= self.patience and not self.warned and ctx.is_main:
            self.warned = True
            print(
                f"warning: val/loss has risen for {self.rises} evaluations in a row (now {loss:.4f} at step "
                f"{ctx.state.step}; best {self.best:.4f} at step {self.best_step}): the model is overfitting its "
                "training data; best.pt keeps the best step. More data, a shorter run, model.dropout or "
                "callbacks=[early_stopping] help",
                file=sys.stderr,
            )

    def state_dict(self) -> dict:
        return {"previous": self.previous, "rises": self.rises, "warned": self.warned, "best": self.best,
                "best_step": self.best_step}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for key in ("previous", "rises", "warned", "best", "best_step"):
            if key in state:
                setattr(self, key, state[key])
