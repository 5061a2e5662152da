"""The decoding entry point: source tokens in, generated tokens out, with any sampler."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from enhanced_tx.errors import ConfigError
from enhanced_tx.generation.compiled_step import CompiledStepper
from enhanced_tx.generation.samplers import OnToken, Sampler
from enhanced_tx.generation.steppers import CachedStepper, RecomputeStepper, Stepper
from enhanced_tx.model import EncoderDecoder
from enhanced_tx.model.linear import packed_weights

# cuDNN attention builds an execution plan for every new shape (about 45 ms each on an H200). Incremental
# decoding meets a new key length at every step, so it would pay that at every step of every call (10x
# slower than the flash / memory-efficient kernels, which need no plan). The math kernel is the fallback.
DECODE_ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off while generating; the caller's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_step_settings(use_cache: bool, compile: bool) -> None:
    """A one-line ConfigError for a decode-step setting that cannot work: only the cached step compiles."""
    if compile and not use_cache:
        raise ConfigError("compile=true needs use_cache=true: only the cached decode step is compiled")


def generate(
    model: EncoderDecoder,
    src: Tensor,
    src_mask: Tensor | None = None,
    *,
    max_new_tokens: int,
    sampler: Sampler,
    bos_id: int,
    eos_id: int,
    use_cache: bool = True,
    compile: bool = False,
    generator: torch.Generator | None = None,
    on_token: OnToken | None = None,
) -> Tensor:
    """Generate up to `max_new_tokens` tokens for each source row.

    src: LongTensor [B, S]; src_mask: bool [B, S], True for real tokens (None: no padding).
    Returns LongTensor [B, n], n <= max_new_tokens: the tokens after BOS, each row's EOS included, and
    every position after a row's EOS filled with `eos_id` (not a pad id). Generation stops when every row
    has emitted EOS or after `max_new_tokens`.
    use_cache=False recomputes the full model over the whole prefix every step (a reference, slow).
    compile=True runs the cached steps after the first as one torch.compile'd graph (`compiled_step`): for
    many calls of one batch size (each new size compiles again, 8-30 s on a CPU).
    generator: a torch.Generator on src's device; the same seed gives the same sample.
    on_token(step, tokens [B]) is called as tokens are chosen, for streaming.
    """
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    check_step_settings(use_cache, compile)
    with torch.inference_mode(), _eval_mode(model), sdpa_kernel(DECODE_ATTENTION_BACKENDS), packed_weights():
        if use_cache:
            stepper: Stepper = (CompiledStepper if compile else CachedStepper)(model, src, src_mask, max_new_tokens)
        else:
            stepper = RecomputeStepper(model, src, src_mask)
        return sampler.search(
            stepper,
            max_new_tokens=max_new_tokens,
            bos_id=bos_id,
            eos_id=eos_id,
            generator=generator,
            on_token=on_token,
        )
