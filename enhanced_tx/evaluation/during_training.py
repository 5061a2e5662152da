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

# what trainer.monitor may name, and whether higher is better
MONITORS = {"val/loss": False, "val/bleu": True, "val/chrf": True}


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
