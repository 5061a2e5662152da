"""Generation: logits processing, samplers, the decoding loop.

- `logits`: the next-token transforms (repetition penalty, temperature, top-k, top-p, ...) and
  `process_logits`, which chains them in a fixed order.
- `steppers`: next-token scores from the KV-cached decoder (or a full recompute, the reference).
- `samplers`: greedy and multinomial sampling, token by token; `beam_search`: beam search.
- `decode`: `generate(model, src, src_mask, *, max_new_tokens, sampler, bos_id, eos_id, ...)`.
- `loading`: rebuild a trained run folder (config, tokenizer, weights); `run`: the task behind run_generate.py.
"""

from enhanced_tx.generation.beam_search import BeamSearch
from enhanced_tx.generation.decode import generate
from enhanced_tx.generation.logits import (
    MinP,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    mask_padded_vocab,
    process_logits,
)
from enhanced_tx.generation.samplers import GreedySampler, MultinomialSampler, Sampler, TokenSampler

__all__ = [
    "BeamSearch",
    "GreedySampler",
    "MinP",
    "MultinomialSampler",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "Sampler",
    "Temperature",
    "TokenSampler",
    "TopK",
    "TopP",
    "generate",
    "mask_padded_vocab",
    "process_logits",
]
