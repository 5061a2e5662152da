"""Command-line flags -> `BenchConfig`."""

from __future__ import annotations

import argparse

from enhanced_tx.bench.peers import BUILDERS, OURS
from enhanced_tx.bench.realdata import RealDataSpec
from enhanced_tx.bench.runner import SECTIONS, BenchConfig
from enhanced_tx.bench.shapes import SHAPES
from enhanced_tx.bench.training import OPTIMIZERS
from enhanced_tx.model.linear import LINEAR_BACKENDS


def _list(choices: tuple[str, ...] | list[str] | None = None):  # noqa: ANN202
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if choices is not None and v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)} not in {', '.join(choices)}")
        return items

    return parse


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m enhanced_tx.bench",
        description="Our encoder-decoder against HF BART, HF T5 and torch.nn.Transformer, same shapes, one process.",
    )
    p.add_argument("--sizes", type=_list(tuple(SHAPES)), default=["tiny", "small"], help="tiny,small")
    p.add_argument("--dtypes", type=_list(("fp32", "bf16", "fp16")), default=["fp32", "bf16"], help="fp32,bf16")
    p.add_argument(
        "--sections",
        type=_list(SECTIONS),
        default=["peak", "train", "compile", "realdata", "generate", "beam", "attention", "memory", "tokenize"],
        help=f"any of {','.join(SECTIONS)} (levers: one A/B per optimisation, slow)",
    )
    p.add_argument("--models", type=_list(tuple(BUILDERS)), default=list(BUILDERS), help="ours,bart,t5,nn.Transformer")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per contender (after 1 warm-up)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile every contender's forward")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny only, 1 step, 8 new tokens, batch 1")
    p.add_argument(
        "--linear-backend", choices=LINEAR_BACKENDS, default="auto", help="our model's CPU GEMMs (auto: measured)"
    )
    p.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="fused", help="AdamW implementation, every contender alike"
    )
    p.add_argument("--gen-batches", type=_ints, default=[1, 8])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--gen-src-len", type=int, default=64)
    p.add_argument(
        "--realdata-seconds",
        type=float,
        default=20.0,
        help="realdata: seconds of training steps per contender and dtype",
    )
    p.add_argument("--beam-batches", type=_ints, default=[1, 8], help="beam search: batch sizes (5 beams each)")
    p.add_argument("--beam-new-tokens", type=int, default=64, help="beam search: steps (EOS ignored)")
    p.add_argument("--beam-src-len", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed generation calls per contender")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each timed call wait up to S seconds for other processes to leave the CPUs (shared machines)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all CPUs)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--from-json", default=None, help="measure nothing: print (and --markdown) a saved --json run")
    p.add_argument("--markdown", default=None, help="also write the tables as Markdown to this file")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig(
        sizes=args.sizes,
        dtypes=args.dtypes,
        sections=args.sections,
        models=[OURS, *[m for m in args.models if m != OURS]],
        steps=args.steps,
        device=args.device,
        compile=args.compile,
        linear_backend=args.linear_backend,
        optimizer=args.optimizer,
        gen_batches=args.gen_batches,
        new_tokens=args.new_tokens,
        gen_src_len=args.gen_src_len,
        repeats=args.repeats,
        beam_batches=args.beam_batches,
        beam_new_tokens=args.beam_new_tokens,
        beam_src_len=args.beam_src_len,
        realdata=RealDataSpec(seconds=args.realdata_seconds),
    )
    if args.quick:
        cfg.sizes, cfg.steps, cfg.new_tokens, cfg.gen_batches, cfg.repeats = ["tiny"], 1, 8, [1], 1
        cfg.beam_batches, cfg.beam_new_tokens = [1], 8
        cfg.peak_size, cfg.tokenize_mb = 512, 2.0
        cfg.realdata = RealDataSpec(pairs=2000, seconds=2.0)
        cfg.compile_backend = "aot_eager"  # a smoke run: the compile section without inductor's minutes
        cfg.compiled_decode = False  # and no compiled decode step (8-30 s a graph)
    return cfg
