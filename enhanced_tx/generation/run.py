"""`generate_text(cfg)`: the task behind `run_generate.py` (rebuild a trained run, encode, generate, print)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerFast

from enhanced_tx.data.collate import collate
from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.errors import ConfigError
from enhanced_tx.generation.decode import generate
from enhanced_tx.generation.loading import load_run, resolve_run_dir
from enhanced_tx.generation.samplers import Sampler
from enhanced_tx.training.setup import resolve_device


def encode_prompts(
    tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> right-padded src [B, S] and src_mask [B, S], encoded as the training sources are (no
    special tokens); a prompt longer than `max_len` tokens keeps its last `max_len`."""
    ids = encode_texts(tokenizer, list(prompts))
    if any(not row for row in ids):
        raise ConfigError("prompt is empty; pass prompt=\"some text\"")
    items = [{"src": torch.tensor(row[-max_len:]), "tgt": torch.zeros(0, dtype=torch.long)} for row in ids]
    batch = collate(items, pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id)
    return batch.src, batch.src_mask


def decode_rows(tokenizer: PreTrainedTokenizerFast, tokens: torch.Tensor, eos_id: int) -> list[str]:
    """Generated tokens [B, n] (eos_id after EOS) -> one text per row, cut at its first EOS."""
    texts = []
    for row in tokens.tolist():
        row = row[: row.index(eos_id)] if eos_id in row else row
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


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
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _write(self, text: str) -> None:
        self.out.write(text[len(self.printed) :])
        self.out.flush()
        self.printed = text


def build_sampler(cfg: DictConfig) -> Sampler:
    """Instantiate `cfg.sampler`; an invalid value is reported as one ConfigError naming the group."""
    try:
        return instantiate(cfg.sampler)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise ConfigError(f"sampler: {error.__cause__}") from None
        raise


def generate_text(cfg: DictConfig) -> list[str]:
    """Generate a continuation of each prompt with the run and sampler `cfg` selects; print and return them."""
    device = resolve_device(cfg.device)
    precision = instantiate(cfg.precision)
    precision.check_device(device)
    sampler = build_sampler(cfg)
    run = load_run(resolve_run_dir(cfg.run, cfg.runs_root), cfg.checkpoint, device=device, dtype=precision.dtype)
    tokenizer, eos_id = run.tokenizer, run.tokenizer.eos_token_id
    print(f"run: {run.run_dir}  weights: {run.weights.name}  {run.model.summary()}", file=sys.stderr)

    prompts = [cfg.prompt] if isinstance(cfg.prompt, str) else list(cfg.prompt)
    src, src_mask = encode_prompts(tokenizer, prompts, run.model.max_seq_len)
    stream = TextStream(tokenizer, eos_id) if cfg.stream and len(prompts) == 1 else None
    if stream is not None:
        print(prompts[0], end="", flush=True)
    tokens = generate(
        run.model,
        src.to(device),
        src_mask.to(device),
        max_new_tokens=cfg.max_new_tokens,
        sampler=sampler,
        bos_id=tokenizer.bos_token_id,
        eos_id=eos_id,
        use_cache=cfg.use_cache,
        generator=torch.Generator(device).manual_seed(cfg.seed),
        on_token=stream,
    )
    texts = decode_rows(tokenizer, tokens, eos_id)
    if stream is not None:
        stream.finish()
    else:
        for prompt, text in zip(prompts, texts, strict=True):
            print(f"{prompt}{text}\n")
    return texts
