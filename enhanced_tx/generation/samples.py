"""In-training samples: greedy continuations of `sample_prompts` at each evaluation, logged as a table
(`val/samples`) with the first one on the console. A training callback, wired in by the composition root;
prompts go in and text comes out as in run_generate.py (`generation.text`)."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerFast

from enhanced_tx.generation.decode import generate
from enhanced_tx.generation.samplers import GreedySampler
from enhanced_tx.generation.text import decode_rows, encode_prompts
from enhanced_tx.training.callbacks import Callback, LoopContext


class SampleContinuations(Callback):
    name = "samples"

    def __init__(
        self,
        prompts: Sequence[str],
        tokenizer: PreTrainedTokenizerFast,
        *,
        max_new_tokens: int,
        source_markers: str = "none",
    ) -> None:
        self.prompts, self.tokenizer, self.max_new_tokens = list(prompts), tokenizer, max_new_tokens
        self.source_markers = source_markers  # the run's data.source_markers: prompts encoded as its sources

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        if not ctx.is_main or not self.prompts:
            return
        model = ctx.model.eval()
        src, src_mask = encode_prompts(self.tokenizer, self.prompts, model.max_seq_len, self.source_markers)
        with ctx.precision.autocast(ctx.device):
            tokens = generate(model, src.to(ctx.device), src_mask.to(ctx.device), max_new_tokens=self.max_new_tokens,
                              sampler=GreedySampler(), bos_id=self.tokenizer.bos_token_id,
                              eos_id=self.tokenizer.eos_token_id)  # fmt: skip
        rows = [
            list(pair)
            for pair in zip(self.prompts, decode_rows(self.tokenizer, tokens, self.tokenizer.eos_token_id), strict=True)
        ]
        ctx.logger.log_table("val/samples", ["prompt", "continuation"], rows, step=ctx.state.step)
        prompt, continuation = rows[0]
        ctx.extra.setdefault("console", []).append(f"{prompt!r} -> {continuation[:60]!r}")
