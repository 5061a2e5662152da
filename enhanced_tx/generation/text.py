"""Text in and out of the model, the one path of generation, evaluation and in-training samples: prompts ->
padded source batch, generated rows -> cut at EOS -> text as written."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

import torch
from transformers import PreTrainedTokenizerFast

from enhanced_tx.data.objectives import decode_keeping_objective_tokens, encode_prompt_texts
from enhanced_tx.data.source_markers import mark_source
from enhanced_tx.errors import ConfigError


def pad_sources(sources: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-d token tensors into `src [B, S]` and `src_mask [B, S]` (True = real token)."""
    width = max(1, *(len(s) for s in sources))
    src = torch.full((len(sources), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sources), width), dtype=torch.bool)
    for i, s in enumerate(sources):
        src[i, : len(s)] = s
        mask[i, : len(s)] = True
    return src, mask


def encode_prompts(
    tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], max_len: int, source_markers: str = "none"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> right-padded src [B, S] and src_mask [B, S], encoded as the training sources are (with the
    run's `data.source_markers`); a prompt longer than `max_len` tokens keeps its last tokens."""
    ids = encode_prompt_texts(tokenizer, list(prompts))  # a span-corruption run's <extra_id_N> are its sentinels
    if any(not row for row in ids):
        raise ConfigError('prompt is empty; pass prompt="some text"')
    for number, row in enumerate(ids):
        if len(row) > max_len:
            warnings.warn(
                f"prompt {number} has {len(row)} tokens but the model accepts {max_len} "
                f"(model.max_seq_len): keeping its last {max_len}",
                stacklevel=2,
            )
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = [mark_source(row, source_markers, bos, eos, max_len, keep_end=True) for row in ids]
    return pad_sources([torch.tensor(row, dtype=torch.long) for row in rows], tokenizer.pad_token_id)


def cut_at_eos(row: list[int], eos_id: int) -> tuple[list[int], int]:
    """(tokens before the first EOS, tokens generated including that EOS)."""
    if eos_id in row:
        end = row.index(eos_id)
        return row[:end], end + 1
    return row, len(row)


def detokenize(tokenizer, ids: Sequence[int]) -> str:
    """Token ids -> text as written: special tokens dropped, no "clean up" of spaces before punctuation
    (references are raw text, so a cleaned hypothesis would be scored against text it never matched)."""
    return decode_keeping_objective_tokens(tokenizer, ids)  # sentinels / <mask> of an objective stay visible


def decode_rows(tokenizer: PreTrainedTokenizerFast, tokens: torch.Tensor, eos_id: int) -> list[str]:
    """Generated tokens [B, n] (eos_id after EOS) -> one text per row, cut at its first EOS."""
    return [detokenize(tokenizer, cut_at_eos(row, eos_id)[0]) for row in tokens.tolist()]


class TextStream:
    """`on_token` callback for one prompt: prints the text as it grows, up to EOS; `finish()` ends the line."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, eos_id: int, out: TextIO | None = None) -> None:
        self.tokenizer, self.eos_id = tokenizer, eos_id
        self.out = out if out is not None else sys.stdout  # looked up now: redirections made after import apply
        self.ids: list[int] = []
        self.printed = ""
        self.ended = False

    def __call__(self, step: int, tokens: torch.Tensor) -> None:
        token = int(tokens[0])  # a host sync per token: streaming to a terminal needs the value anyway
        self.ended = self.ended or token == self.eos_id
        if not self.ended:
            self.ids.append(token)
            # A trailing U+FFFD may be the first bytes of a character still being generated: hold it back.
            self._write(self._text().rstrip("\ufffd"))

    def finish(self) -> None:
        self._write(self._text())
        self.out.write("\n")
        self.out.flush()

    def _text(self) -> str:
        return detokenize(self.tokenizer, self.ids)

    def _write(self, text: str) -> None:
        self.out.write(text[len(self.printed) :])
        self.out.flush()
        self.printed = text
