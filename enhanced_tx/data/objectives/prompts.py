"""Prompts that hold an objective's tokens: `The <extra_id_0> sat on the <extra_id_1>.` for a span-corruption
run, `<mask>` for a denoising one. Training data never reads these strings as tokens (a corpus may contain
them as text); a prompt typed by the user does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from enhanced_tx.data.encoding import text_encoder

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast


def objective_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The special tokens added beyond the tokenizer's own (pad, bos, eos, unk and its named extras)."""
    own = set(tokenizer.all_special_ids)
    return {t.content: i for i, t in tokenizer.added_tokens_decoder.items() if t.special and i not in own}


def encode_prompt_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (no BOS/EOS), the objective's tokens written in it read as those tokens and
    everything else as plain text, as the training data is encoded."""
    encode, specials = text_encoder(tokenizer), objective_token_ids(tokenizer)
    if not specials:
        return encode(texts)
    pattern = re.compile("(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True))) + ")")
    out = []
    for text in texts:
        pieces = pattern.split(text)  # odd positions are the objective's tokens
        ids: list[int] = []
        for k, piece in enumerate(pieces):
            ids.extend([specials[piece]] if k % 2 else (encode([piece])[0] if piece else []))
        out.append(ids)
    return out


def decode_keeping_objective_tokens(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Text of `ids` without pad/bos/eos/unk but with sentinels and masks written out."""
    own = set(tokenizer.all_special_ids)
    return tokenizer.decode(
        [i for i in ids if i not in own], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
