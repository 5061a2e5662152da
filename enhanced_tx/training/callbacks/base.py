"""`Callback`: the loop's extension points. A training feature is one subclass plus one conf/callbacks/ file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from enhanced_tx.runfolder import RunFolder

if TYPE_CHECKING:  # annotations only: the trainer imports callbacks, not the other way round
    from enhanced_tx.training.evaluator import Evaluator
    from enhanced_tx.training.parts import Logger
    from enhanced_tx.training.precision import Precision
    from enhanced_tx.training.state import TrainingState
    from enhanced_tx.training.strategy import Strategy


@dataclass
class LoopContext:
    """What a hook may look at: the model (plain, gathered under FSDP during evaluation), the state, services."""

    model: nn.Module
    state: TrainingState
    logger: Logger
    strategy: Strategy
    evaluator: Evaluator
    precision: Precision
    device: torch.device
    folder: RunFolder
    monitor_name: str = "val/loss"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.strategy.is_main


class Callback:
    """No-op hooks; override the ones a feature needs. `stop_reason` set to a string ends the run normally
    after the current evaluation (early stopping)."""

    name: str = "callback"  # the key of its state in the checkpoint's "callbacks"
    stop_reason: str | None = None

    def on_fit_start(self, trainer: Any, ctx: LoopContext) -> None:
        """After the model, optimizer and state are built and restored, before the first step."""

    def on_step_end(self, ctx: LoopContext) -> None:
        """After each optimizer step (ctx.state.step already counts it)."""

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        """After the validation loss; add values to `metrics` (they are logged, and the monitor reads them)."""

    def on_save(self, ctx: LoopContext, folder: RunFolder) -> None:
        """After a checkpoint is written (rank 0 writes files)."""

    def on_fit_end(self, ctx: LoopContext) -> None:
        """After the last step and the final weights."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Called before on_fit_start when the run resumes."""
