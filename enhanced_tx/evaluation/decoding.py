"""Decoding a list of sources in batches: the shared path of `run_eval.py` and `trainer.eval_generate`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from enhanced_tx.generation import generate
from enhanced_tx.generation.samplers import Sampler
from enhanced_tx.generation.text import cut_at_eos, pad_sources


@dataclass
class Decoded:
    """Token ids per source (in input order, up to but excluding EOS) and what producing them cost."""

    token_ids: list[list[int]]
    generated_tokens: int  # tokens the decoder emitted, each row's EOS included (nothing after it)
    seconds: float  # wall clock of the decoding itself (encoder + search), synchronised on CUDA

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / max(self.seconds, 1e-9)

    @property
    def mean_length(self) -> float:
        """Mean hypothesis length in tokens, EOS excluded."""
        return sum(map(len, self.token_ids)) / max(len(self.token_ids), 1)


def decode_sources(
    model: nn.Module,
    sources: Sequence[torch.Tensor],
    *,
    sampler: Sampler,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    seed: int | None = None,
    progress: bool = False,
) -> Decoded:
    """Generate for every source, longest first in batches of `batch_size` (less padding, memory errors
    early); results come back in input order. `seed` seeds a generator for sampling samplers."""
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    generated = 0
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    seconds = 0.0
    with tqdm(total=len(sources), desc="decode", unit="sent", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            src, mask = pad_sources([sources[i] for i in chunk], pad_id)
            src, mask = src.to(device), mask.to(device)
            _synchronize(device)
            began = time.perf_counter()
            with autocast():
                tokens = generate(
                    model,
                    src,
                    mask,
                    max_new_tokens=max_new_tokens,
                    sampler=sampler,
                    bos_id=bos_id,
                    eos_id=eos_id,
                    generator=generator,
                )
            rows = tokens.tolist()  # a host sync: the batch is done
            seconds += time.perf_counter() - began
            for index, row in zip(chunk, rows, strict=True):
                out[index], count = cut_at_eos(row, eos_id)
                generated += count
            bar.update(len(chunk))
            bar.set_postfix(tok_s=f"{generated / max(seconds, 1e-9):.0f}")
    return Decoded(token_ids=out, generated_tokens=generated, seconds=seconds)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
