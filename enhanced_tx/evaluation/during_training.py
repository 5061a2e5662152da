"""`trainer.eval_generate=N`: BLEU and chrF of greedy translations of the first N validation pairs."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerFast

from enhanced_tx.evaluation.decoding import decode_sources
from enhanced_tx.evaluation.metrics import corpus_scores
from enhanced_tx.generation import GreedySampler
from enhanced_tx.generation.text import detokenize
from enhanced_tx.training.callbacks import Callback, LoopContext


def default_max_new_tokens(model_max_len: int, max_tgt_len: int | None) -> int:
    """The longest target the data allows (data.max_tgt_len, EOS included), at most what the model fits."""
    return min(model_max_len, max_tgt_len) if max_tgt_len else model_max_len


def validation_references(data: object) -> list[str]:
    """The untokenized validation targets of a pairs data source, in the order of its val dataset; [] for
    sources without references (text, sample)."""
    from enhanced_tx.data.pairs import PairsData

    if not isinstance(data, PairsData):
        return []
    return [target for _, target in data.split()[1]]


class GenerationMetrics(Callback):
    """`trainer.eval_generate=N`: val/bleu and val/chrf of greedy outputs for the first N validation pairs
    at each evaluation, on every rank (the monitor and early stopping must decide alike everywhere)."""

    name = "generation_metrics"

    def __init__(
        self,
        val_set: Dataset,
        references: Sequence[str],
        count: int,
        *,
        tokenizer: PreTrainedTokenizerFast,
        batch_size: int,
        max_new_tokens: int,
    ) -> None:
        self.val_set, self.references, self.count, self.tokenizer = val_set, references, count, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def on_fit_start(self, trainer, ctx: LoopContext) -> None:
        ctx.extra.setdefault("shown", set()).update({"val/bleu", "val/chrf"})

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        n = min(self.count, len(self.val_set), len(self.references))
        decoded = decode_sources(
            ctx.model,
            [self.val_set[i]["src"] for i in range(n)],
            sampler=GreedySampler(),
            bos_id=self.tokenizer.bos_token_id,
            eos_id=self.tokenizer.eos_token_id,
            pad_id=self.tokenizer.pad_token_id,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            device=ctx.device,
            autocast=lambda: ctx.precision.autocast(ctx.device),
        )
        hypotheses = [detokenize(self.tokenizer, ids) for ids in decoded.token_ids]
        scores = corpus_scores(hypotheses, self.references[:n])
        metrics.update({"val/bleu": scores.bleu, "val/chrf": scores.chrf})
