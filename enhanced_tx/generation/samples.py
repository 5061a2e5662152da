"""In-training samples: greedy continuations of `sample_prompts` at each evaluation, logged as a table
(`val/samples`) with the first one on the console. A training callback, wired in by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from enhanced_tx.generation.decode import generate
from enhanced_tx.generation.samplers import GreedySampler
from enhanced_tx.training.callbacks import Callback, LoopContext


class SampleContinuations(Callback):
    name = "samples"

    def __init__(
        self,
        prompts: Sequence[torch.Tensor],
        decode_tokens: Callable[[list[int]], str],
        *,
        bos_id: int,
        eos_id: int,
        max_new_tokens: int,
    ) -> None:
        self.prompts, self.decode_tokens = list(prompts), decode_tokens
        self.bos_id, self.eos_id, self.max_new_tokens = bos_id, eos_id, max_new_tokens

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        if not ctx.is_main or not self.prompts:
            return
        rows = []
        model = ctx.model.eval()
        for prompt in self.prompts:
            with ctx.precision.autocast(ctx.device):
                out = generate(model, prompt[None].to(ctx.device), max_new_tokens=self.max_new_tokens,
                               sampler=GreedySampler(), bos_id=self.bos_id, eos_id=self.eos_id)  # fmt: skip
            rows.append([self.decode_tokens(prompt.tolist()), self.decode_tokens(out[0].tolist())])
        ctx.logger.log_table("val/samples", ["prompt", "continuation"], rows, step=ctx.state.step)
        prompt, continuation = rows[0]
        ctx.extra.setdefault("console", []).append(f"{prompt!r} -> {continuation[:60]!r}")
