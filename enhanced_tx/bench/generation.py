"""Greedy generation throughput with a KV cache: ours (`enhanced_tx.generation.generate`) against HF BART.

Both sides produce exactly `new_tokens` tokens per row: ours with `eos_id=-1` (an id no token has, so
no row ever finishes early), BART with `min_new_tokens == max_new_tokens` (EOS suppressed) and no forced
EOS. Tokens/s counts new tokens of all rows over the whole call (encoder and cache set-up included).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from enhanced_tx.bench.peers import BART, OURS, Contender
from enhanced_tx.bench.timing import Samples, time_once

NEVER = -1  # an eos_id no token can equal: generation runs to max_new_tokens
OURS_COMPILED = "ours (compiled step)"  # generate(compile=True); its warm-up call of full length compiles
WEIGHT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def warm_up_tokens(model: str, new_tokens: int, short: int) -> int:
    """Tokens of a contender's untimed first call: `short`, or all of them for the compiled step (whose graphs
    compile in it)."""
    return new_tokens if model == OURS_COMPILED else min(new_tokens, short)


@dataclass
class GenResult:
    size: str
    batch: int
    dtype: str  # weights
    model: str
    tokens_per_s: float
    call_s: float
    ms_per_step: float


def ours_generator(
    model: torch.nn.Module, sampler, use_cache: bool = True, compile: bool = False
) -> Callable[[Tensor, int], Tensor]:
    """Our `generate` with `sampler`, forced to `new_tokens` tokens per row."""
    from enhanced_tx.generation import generate

    def run(src: Tensor, new_tokens: int) -> Tensor:
        return generate(  # (B, new_tokens)
            model, src, None, max_new_tokens=new_tokens, sampler=sampler, bos_id=1, eos_id=NEVER,
            use_cache=use_cache, compile=compile,
        )  # fmt: skip

    return run


def hf_generator(model: torch.nn.Module, **settings) -> Callable[[Tensor, int], Tensor]:
    """HF `generate` with `settings` (num_beams, ...), EOS suppressed so it makes exactly `new_tokens`."""
    model.generation_config.forced_eos_token_id = None

    def run(src: Tensor, new_tokens: int) -> Tensor:
        out = model.generate(
            input_ids=src,
            attention_mask=torch.ones_like(src),
            use_cache=True,
            do_sample=False,
            min_new_tokens=new_tokens,
            max_new_tokens=new_tokens,
            **settings,
        )
        return out[:, 1:]  # drop the decoder start token

    return run


def generator_for(
    contender: Contender, dtype: str, use_cache: bool = True, compile: bool = False
) -> Callable[[Tensor, int], Tensor]:
    """A generation callable over a copy of the contender's weights cast to `dtype` (eval mode); `compile`:
    ours with the compiled decode step."""
    model = copy.deepcopy(contender.model).to(WEIGHT_DTYPES[dtype]).eval()
    if contender.name == OURS:
        from enhanced_tx.generation import GreedySampler

        return ours_generator(model, GreedySampler(), use_cache, compile)
    if contender.name == BART:
        return hf_generator(model, num_beams=1)
    raise ValueError(f"no generation benchmark for {contender.name}")


@dataclass
class Runner:
    model: str  # contender name
    dtype: str  # weights
    run: Callable[[Tensor, int], Tensor]  # (src [B, S], new_tokens) -> [B, new_tokens]


def measure_generation(
    size: str,
    runners: list[Runner],
    batch: int,
    vocab: int,
    src_len: int,
    new_tokens: int,
    repeats: int,
    device: torch.device,
) -> list[GenResult]:
    """Interleave `repeats` timed calls of every runner on the same random source; the best call counts."""
    src = torch.randint(4, vocab, (batch, src_len), generator=torch.Generator().manual_seed(1)).to(device)
    for runner in runners:
        warm = warm_up_tokens(runner.model, new_tokens, 8)
        out = runner.run(src, warm)  # warm-up, and a check that EOS really is ignored
        if tuple(out.shape) != (batch, warm):
            raise RuntimeError(f"{runner.model} generated {tuple(out.shape)} tokens, expected {(batch, warm)}")
    samples = [Samples() for _ in runners]
    with torch.inference_mode():
        for _ in range(repeats):
            for runner, sample in zip(runners, samples, strict=True):
                sample.add(time_once(lambda runner=runner: runner.run(src, new_tokens), device))
    return [
        GenResult(
            size=size,
            batch=batch,
            dtype=runner.dtype,
            model=runner.model,
            tokens_per_s=batch * new_tokens / s.best,
            call_s=s.best,
            ms_per_step=1e3 * s.best / new_tokens,
        )
        for runner, s in zip(runners, samples, strict=True)
    ]
