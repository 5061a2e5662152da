"""Scoring a model on source/target pairs: decode every source, then corpus BLEU, chrF and exact match."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerFast

from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.data.pairs_format import Pair
from enhanced_tx.data.source_markers import mark_source, marker_count
from enhanced_tx.evaluation.decoding import Decoded, decode_sources
from enhanced_tx.evaluation.metrics import CorpusScores, MetricSettings, corpus_scores
from enhanced_tx.generation.samplers import Sampler
from enhanced_tx.generation.text import detokenize
from enhanced_tx.model import EncoderDecoder


@dataclass
class TranslationResult:
    rows: list[dict[str, str]]  # {"source", "reference", "hypothesis"} in file order
    scores: CorpusScores
    decoded: Decoded
    truncated_sources: int  # sources longer than max_src_len tokens, cut to it (as in training)
    max_new_tokens: int

    def summary(self) -> dict:
        """The numbers of eval/<name>.json (scores first; sacrebleu's signatures make them reproducible)."""
        return {
            **self.scores.as_dict(),
            "mean_output_tokens": self.decoded.mean_length,
            "generated_tokens": self.decoded.generated_tokens,
            "decode_seconds": self.decoded.seconds,
            "tokens_per_s": self.decoded.tokens_per_s,
            "truncated_sources": self.truncated_sources,
            "max_new_tokens": self.max_new_tokens,
        }


def evaluate_translation(
    model: EncoderDecoder,
    tokenizer: PreTrainedTokenizerFast,
    pairs: Sequence[Pair],
    *,
    sampler: Sampler,
    max_src_len: int,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    settings: MetricSettings | None = None,
    seed: int | None = 0,
    progress: bool = False,
    source_markers: str = "none",
) -> TranslationResult:
    """Translate every source (encoded as in training: the run's `source_markers`, cut to `max_src_len`) and
    score the outputs against the untokenized references."""
    limit = min(max_src_len, model.max_seq_len)
    encoded = encode_texts(tokenizer, [source for source, _ in pairs])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    sources = [torch.tensor(mark_source(ids, source_markers, bos, eos, limit), dtype=torch.long) for ids in encoded]
    decoded = decode_sources(
        model,
        sources,
        sampler=sampler,
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        autocast=contextlib.nullcontext,  # in evaluation the precision is the weights' dtype
        seed=seed,
        progress=progress,
    )
    hypotheses = [detokenize(tokenizer, ids) for ids in decoded.token_ids]
    references = [target for _, target in pairs]
    rows = [
        {"source": source, "reference": reference, "hypothesis": hypothesis}
        for (source, reference), hypothesis in zip(pairs, hypotheses, strict=True)
    ]
    return TranslationResult(
        rows=rows,
        scores=corpus_scores(hypotheses, references, settings),
        decoded=decoded,
        truncated_sources=sum(len(ids) > limit - marker_count(source_markers) for ids in encoded),
        max_new_tokens=max_new_tokens,
    )
