"""`callbacks=[ema]`: an exponential moving average of the weights, evaluated (val/ema_loss) and saved as
`model.ema.safetensors` beside the run's weights (generation: `checkpoint=ema`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from enhanced_tx.checkpoint import save_model_weights_only
from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.training.callbacks.base import Callback, LoopContext


class EMA(Callback):
    name = "ema"

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"callbacks.ema.decay={decay} must be in (0, 1)")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {}  # parameter name -> its average (fp32)
        self.updates = 0

    def on_fit_start(self, trainer, ctx: LoopContext) -> None:
        params = dict(ctx.model.named_parameters())
        if self.shadow:  # restored from the checkpoint: onto the parameters' devices
            self.shadow = {k: v.to(params[k].device) for k, v in self.shadow.items()}
        else:
            self.shadow = {k: p.detach().float().clone() for k, p in params.items()}
        ctx.extra.setdefault("shown", set()).add("val/ema_loss")

    @torch.no_grad()
    def on_step_end(self, ctx: LoopContext) -> None:
        params = [p for k, p in ctx.model.named_parameters() if k in self.shadow]
        averages = [self.shadow[k] for k, _ in ctx.model.named_parameters() if k in self.shadow]
        torch._foreach_lerp_(averages, [p.float() for p in params], 1.0 - self.decay)
        self.updates += 1

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        with self.swapped_in(ctx.model):
            metrics["val/ema_loss"] = ctx.evaluator.validation_loss(ctx.model)

    def on_save(self, ctx: LoopContext, folder: RunFolder) -> None:
        if ctx.is_main:
            with self.swapped_in(ctx.model):
                save_model_weights_only(ctx.model, folder.ema_weights)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """`model` with the averaged weights for the duration; its own weights restored after, bit for bit."""
        params = {k: p for k, p in model.named_parameters() if k in self.shadow}
        saved = {k: p.detach().clone() for k, p in params.items()}
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(self.shadow[k])
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(saved[k])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.shadow = dict(state["shadow"])
