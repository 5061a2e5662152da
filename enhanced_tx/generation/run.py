"""`generate_text(cfg)`: the task behind `run_generate.py` (rebuild a trained run, encode, generate, print)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerFast

from enhanced_tx.errors import ConfigError
from enhanced_tx.generation.decode import generate
from enhanced_tx.generation.loading import load_run, resolve_run_dir
from enhanced_tx.generation.results import ResultsFile, check_max_new_tokens, output_path, positive_setting
from enhanced_tx.generation.samplers import Sampler
from enhanced_tx.generation.text import decode_rows, detokenize, encode_prompts
from enhanced_tx.runtime.device import resolve_device


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


def build_sampler(cfg: DictConfig) -> Sampler:
    """Instantiate `cfg.sampler`; an invalid value is reported as one ConfigError naming the group."""
    try:
        return instantiate(cfg.sampler)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise ConfigError(f"sampler: {error.__cause__}") from None
        raise


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt a line, kept as written (line ends and a byte-order mark removed, blank lines skipped); a
    missing or empty file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompts_file={path} does not exist; pass a text file with one prompt a line")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"prompts_file={path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    prompts = [line.removesuffix("\r") for line in text.split("\n") if line.strip()]
    if not prompts:
        raise ConfigError(f"prompts_file={path} holds no prompts; write one prompt a line")
    return prompts


def prompt_list(prompt: object, typed: str | None = None) -> list[str]:
    """`prompt=` as a list of strings. Hydra parses `prompt=1984` as an int and `prompt=3.10` as a float: they
    are text too, as typed (`typed`: the override's text, where known; else the value written back). A list
    (`prompt=[a,b]`) is one batch."""
    if typed is not None and isinstance(prompt, int | float) and not isinstance(prompt, str):
        return [typed]
    items = list(prompt) if isinstance(prompt, Sequence) and not isinstance(prompt, str) else [prompt]
    if not items:
        raise ConfigError('prompt=[] is empty: give prompt="..." or prompts_file=PATH (one prompt a line)')
    texts = []
    for item in items:
        if isinstance(item, bool):
            texts.append(str(item).lower())
        elif isinstance(item, str | int | float):
            texts.append(str(item))
        else:
            raise ConfigError(
                f"prompt={prompt!r} must be a string or a list of strings: quote it, prompt='\"...\"', "
                "or use prompts_file=PATH (one prompt a line)"
            )
    return texts


def _typed_override(key: str) -> str | None:
    """The text the user typed for `key=` on the command line (before Hydra parsed it), if any."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task
    except (ImportError, ValueError):  # no Hydra run (the compose API, a script)
        return None
    typed = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key]
    return typed[-1] if typed else None


def generate_text(cfg: DictConfig) -> list[str]:
    """Generate continuations of the prompts with the run and sampler `cfg` selects; print and return them.

    One prompt streams to the terminal; `prompts_file` generates in batches and writes JSONL; each prompt
    gets `num_return_sequences` continuations (different draws of the sampler).
    """
    copies, batch_size, max_new_tokens = (
        positive_setting(cfg, key) for key in ("num_return_sequences", "batch_size", "max_new_tokens")
    )
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
    prompts = read_prompts_file(prompts_file) if prompts_file else prompt_list(cfg.prompt, _typed_override("prompt"))
    run_dir = resolve_run_dir(cfg.run, cfg.runs_root, cfg.get("sweep"))
    results = ResultsFile(output_path(cfg, run_dir, Path(prompts_file))) if prompts_file else None
    run = load_run(run_dir, cfg.checkpoint, device=device, dtype=precision.dtype)
    check_max_new_tokens(max_new_tokens, run.model.max_seq_len, run.run_dir)
    tokenizer, eos_id = run.tokenizer, run.tokenizer.eos_token_id
    print(f"run: {run.run_dir}  weights: {run.weights.name}  {run.model.summary()}", file=sys.stderr)

    generator = torch.Generator(device).manual_seed(cfg.seed)
    stream_one = cfg.stream and len(prompts) == 1 and copies == 1 and not prompts_file
    texts: list[str] = []
    if results is not None:
        results.open()
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        src, src_mask = encode_prompts(tokenizer, chunk, run.model.max_seq_len)
        src, src_mask = src.repeat_interleave(copies, dim=0), src_mask.repeat_interleave(copies, dim=0)
        stream = TextStream(tokenizer, eos_id) if stream_one else None
        if stream is not None:
            print(chunk[0], end="", flush=True)
        tokens = generate(
            run.model,
            src.to(device),
            src_mask.to(device),
            max_new_tokens=max_new_tokens,
            sampler=sampler,
            bos_id=tokenizer.bos_token_id,
            eos_id=eos_id,
            use_cache=cfg.use_cache,
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
            print(f"{prompts[i // copies]}{text}\n")
    return texts
