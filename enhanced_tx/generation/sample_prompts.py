"""The prompts in-training samples use when `sample_prompts` is null: the first validation sources of the
run's own data (a translation run samples sentences it translates, a text run its own text), not a fixed
English phrase."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from enhanced_tx.generation.text import detokenize

COUNT = 3
MAX_TOKENS = 24  # a prompt the console line can show


def validation_prompts(val_set, tokenizer: PreTrainedTokenizerFast, count: int = COUNT) -> list[str]:
    """The first `count` non-empty validation sources as text (their first MAX_TOKENS tokens); [] when the
    validation split cannot be indexed (streamed)."""
    prompts: list[str] = []
    try:
        size = len(val_set)
    except TypeError:
        return prompts
    for index in range(size):
        if len(prompts) == count:
            break
        text = detokenize(tokenizer, val_set[index]["src"][:MAX_TOKENS].tolist()).strip()
        if text:
            prompts.append(text)
    return prompts
