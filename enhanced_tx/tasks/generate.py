"""`generate_text(cfg)`: the composition root of `run_generate.py` (rebuild a trained run, encode, generate,
print or write JSONL as results come)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from enhanced_tx.data.source_markers import run_source_markers
from enhanced_tx.errors import ConfigError
from enhanced_tx.generation.decode import check_step_settings, generate
from enhanced_tx.generation.loading import load_run, resolve_run_dir
from enhanced_tx.generation.prompts import prompt_list, read_prompts_file, typed_override
from enhanced_tx.generation.results import ResultsFile, check_max_new_tokens, output_path, positive_setting
from enhanced_tx.generation.samplers import Sampler
from enhanced_tx.generation.task import continues_prompt, provenance
from enhanced_tx.generation.text import TextStream, decode_rows, encode_prompts
from enhanced_tx.model.config_checks import check_flag
from enhanced_tx.runtime.device import resolve_device


def build_sampler(cfg: DictConfig) -> Sampler:
    """Instantiate `cfg.sampler`; an invalid value is reported as one ConfigError naming the group."""
    try:
        return instantiate(cfg.sampler)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise ConfigError(f"sampler: {error.__cause__}") from None
        raise


def generate_text(cfg: DictConfig) -> list[str]:
    """Generate continuations of the prompts with the run and sampler `cfg` selects; print and return them.

    One prompt streams to the terminal; `prompts_file` generates in batches and writes JSONL; each prompt
    gets `num_return_sequences` continuations (different draws of the sampler).
    """
    copies, batch_size, max_new_tokens = (
        positive_setting(cfg, key) for key in ("num_return_sequences", "batch_size", "max_new_tokens")
    )
    use_cache, compile_step = check_flag("use_cache", cfg.use_cache), check_flag("compile", cfg.get("compile", False))
    check_step_settings(use_cache, compile_step)  # before loading
    device = resolve_device(cfg.device)
    precision = instantiate(cfg.precision)
    precision.check_device(device)
    sampler = build_sampler(cfg)
    if copies > 1 and not sampler.draws_randomly:
        raise ConfigError(
            f"num_return_sequences={copies} with a deterministic sampler ({cfg.sampler._target_.rsplit('.', 1)[-1]}"
            f"{', temperature=0' if 'temperature' in cfg.sampler else ''}) gives {copies} identical outputs; use a "
            "sampling one (sampler=top_p, sample, top_k or min_p, temperature > 0) or num_return_sequences=1"
        )
    prompts_file = cfg.get("prompts_file")
    prompts = read_prompts_file(prompts_file) if prompts_file else prompt_list(cfg.prompt, typed_override("prompt"))
    run_dir = resolve_run_dir(cfg.run, cfg.runs_root, cfg.get("sweep"))
    results = ResultsFile(output_path(cfg, run_dir, Path(prompts_file))) if prompts_file else None
    run = load_run(run_dir, cfg.checkpoint, device=device, dtype=precision.dtype)
    # precision=auto: fp32 or bf16 weights, resolved as training resolves it (measured, cached per machine)
    precision = precision.resolve(run.model, device, say=lambda line: print(line, file=sys.stderr))
    run.model.to(dtype=precision.dtype)
    check_max_new_tokens(max_new_tokens, run.model.max_seq_len, run.run_dir)
    tokenizer, eos_id = run.tokenizer, run.tokenizer.eos_token_id
    print(f"run: {run.run_dir}  weights: {run.weights.name}  {run.model.summary()}", file=sys.stderr)
    if compile_step:  # the first batch of each size waits for the compiler: say so, not a silent minute
        print("compile=true: the decode step compiles for each new batch size (8-30 s on a CPU)", file=sys.stderr)

    continues = continues_prompt(run.config)  # pairs runs print only the generated target
    if results is not None:
        results.made_with = provenance(run.run_dir, run.weights, OmegaConf.to_container(cfg.sampler, resolve=True),
                                       cfg.seed, max_new_tokens)  # fmt: skip
    generator = torch.Generator(device).manual_seed(cfg.seed)
    stream_one = cfg.stream and len(prompts) == 1 and copies == 1 and not prompts_file
    texts: list[str] = []
    if results is not None:
        results.open()
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        src, src_mask = encode_prompts(tokenizer, chunk, run.model.max_seq_len, run_source_markers(run.config))
        src, src_mask = src.repeat_interleave(copies, dim=0), src_mask.repeat_interleave(copies, dim=0)
        stream = TextStream(tokenizer, eos_id) if stream_one else None
        if stream is not None and continues:
            print(chunk[0], end="", flush=True)
        tokens = generate(
            run.model,
            src.to(device),
            src_mask.to(device),
            max_new_tokens=max_new_tokens,
            sampler=sampler,
            bos_id=tokenizer.bos_token_id,
            eos_id=eos_id,
            use_cache=use_cache,
            compile=compile_step,
            generator=generator,
            on_token=stream,
        )
        done = decode_rows(tokenizer, tokens, eos_id)
        if results is not None:  # written as produced: a killed generation keeps the batches it finished
            results.write(start, chunk, done, copies)
        texts += done
        if stream is not None:
            stream.finish()
    if results is not None:
        results.close()
        print(f"wrote {len(texts)} generations to {results.path}", file=sys.stderr)
    elif not stream_one:
        for i, text in enumerate(texts):
            print(f"{prompts[i // copies] if continues else ''}{text}\n")
    return texts
