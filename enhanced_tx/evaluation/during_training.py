"""`trainer.eval_generate=N`: BLEU and chrF of greedy translations of the first N validation pairs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from enhanced_tx.evaluation.decoding import decode_sources
from enhanced_tx.evaluation.metrics import corpus_scores
from enhanced_tx.generation import GreedySampler
from enhanced_tx.training.callbacks import Callback, LoopContext


def default_max_new_tokens(model_max_len: int, max_tgt_len: int | None) -> int:
    """The longest target the data allows (data.max_tgt_len, EOS included), at most what the model fits."""
    return min(model_max_len, max_tgt_len) if max_tgt_len else model_max_len


def generation_metrics(
    model: nn.Module,
    val_set: Dataset,
    references: Sequence[str],
    count: int,
    *,
    special_ids: Mapping[str, int],
    decode_tokens: Callable[[list[int]], str],
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """{"val/bleu", "val/chrf"} of greedy outputs for the first `count` items of `val_set`, whose reference
    strings (the untokenized targets) are `references`, in the same order."""
    n = min(count, len(val_set), len(references))
    decoded = decode_sources(
        model,
        [val_set[i]["src"] for i in range(n)],
        sampler=GreedySampler(),
        bos_id=special_ids["bos_id"],
        eos_id=special_ids["eos_id"],
        pad_id=special_ids["pad_id"],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        autocast=autocast,
    )
    scores = corpus_scores([decode_tokens(ids) for ids in decoded.token_ids], references[:n])
    return {"val/bleu": scores.bleu, "val/chrf": scores.chrf}


def validation_references(data: object) -> list[str]:
    """The untokenized validation targets of a pairs data source, in the order of its val dataset; [] for
    sources without references (text, sample)."""
    from enhanced_tx.data.pairs import PairsData

    if not isinstance(data, PairsData):
        return []
    return [target for _, target in data.split()[1]]


class GenerationMetrics(Callback):
    """`trainer.eval_generate=N`: val/bleu and val/chrf at each evaluation, on every rank (the monitor and
    early stopping must decide alike everywhere)."""

    name = "generation_metrics"

    def __init__(
        self,
        val_set: Dataset,
        references: Sequence[str],
        count: int,
        *,
        special_ids: Mapping[str, int],
        decode_tokens: Callable[[list[int]], str],
        batch_size: int,
        max_new_tokens: int,
    ) -> None:
        self.val_set, self.references, self.count = val_set, references, count
        self.special_ids, self.decode_tokens = special_ids, decode_tokens
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def on_fit_start(self, trainer, ctx: LoopContext) -> None:
        ctx.extra.setdefault("shown", set()).update({"val/bleu", "val/chrf"})

    def on_evaluate(self, ctx: LoopContext, metrics: dict[str, float]) -> None:
        metrics.update(
            generation_metrics(
                ctx.model,
                self.val_set,
                self.references,
                self.count,
                special_ids=self.special_ids,
                decode_tokens=self.decode_tokens,
                batch_size=self.batch_size,
                max_new_tokens=self.max_new_tokens,
                device=ctx.device,
                autocast=lambda: ctx.precision.autocast(ctx.device),
            )
        )
