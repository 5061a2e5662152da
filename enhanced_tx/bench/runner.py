"""Runs the selected sections for the selected sizes and collects every figure in one `Results`."""

from __future__ import annotations

import gc
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from enhanced_tx.bench.attention_variants import NEW_TOKENS as ATTENTION_NEW_TOKENS
from enhanced_tx.bench.attention_variants import AttentionResult, measure_attention_variants
from enhanced_tx.bench.beam import BeamResult, beam_runners, measure_beam
from enhanced_tx.bench.compiled import CompiledResult, measure_compiled
from enhanced_tx.bench.generation import OURS_COMPILED, GenResult, Runner, generator_for, measure_generation
from enhanced_tx.bench.levers import LeverResult, generation_levers, training_levers
from enhanced_tx.bench.loss_memory import LossMemoryResult, measure_loss_memory
from enhanced_tx.bench.machine import describe
from enhanced_tx.bench.memory import CHECKPOINTABLE, MemoryResult, measure_memory
from enhanced_tx.bench.peers import BART, BUILDERS, OURS, Contender, build_ours
from enhanced_tx.bench.realdata import RealDataResult, RealDataSpec, measure_realdata
from enhanced_tx.bench.shapes import SHAPES, Shape
from enhanced_tx.bench.timing import Contention
from enhanced_tx.bench.tokenizing import TokenizeResult, measure_tokenizing
from enhanced_tx.bench.training import TrainOptions, TrainResult, measure_training
from enhanced_tx.runtime.peak import Peak, best_peak, measure_peaks

SECTIONS = ("peak", "train", "compile", "realdata", "generate", "beam", "attention", "memory", "levers", "tokenize")


@dataclass
class BenchConfig:
    sizes: list[str] = field(default_factory=lambda: ["tiny", "small"])
    dtypes: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    sections: list[str] = field(
        default_factory=lambda: [
            "peak", "train", "compile", "realdata", "generate", "beam", "attention", "memory", "tokenize"
        ]
    )  # fmt: skip
    models: list[str] = field(default_factory=lambda: [OURS, *BUILDERS.keys() - {OURS}])
    steps: int = 5
    device: str = "cpu"
    compile: bool = False
    compile_backend: str = "inductor"  # the compile section's (--quick: aot_eager, no C++ build)
    compiled_decode: bool = True  # the "ours (compiled step)" rows of generate and beam (--quick: none)
    linear_backend: str = "onednn"  # ours; "default" = PyTorch's dispatch
    optimizer: str = "fused"  # every contender; HF Trainer's default on torch >= 2.8
    gen_batches: list[int] = field(default_factory=lambda: [1, 8])
    new_tokens: int = 128
    gen_src_len: int = 64
    repeats: int = 3
    beam_batches: list[int] = field(default_factory=lambda: [1, 8])
    beam_new_tokens: int = 64
    beam_src_len: int = 32
    realdata: RealDataSpec = field(default_factory=RealDataSpec)  # measured for the tiny size only
    tokenize_mb: float = 50.0  # the tokenize section: megabytes of text tokenized
    peak_size: int | None = None  # matmul edge for the peak (default: 2048 on CPUs, 8192 on GPUs)


@dataclass
class Results:
    config: dict
    machine: dict
    peaks: list[Peak] = field(default_factory=list)
    train: list[TrainResult] = field(default_factory=list)
    compiled: list[CompiledResult] = field(default_factory=list)  # ours: per-block compiled vs eager step
    generate: list[GenResult] = field(default_factory=list)
    beam: list[BeamResult] = field(default_factory=list)
    attention: list[AttentionResult] = field(default_factory=list)
    realdata: list[RealDataResult] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    loss_memory: list[LossMemoryResult] = field(default_factory=list)  # ours: full logits vs chunked loss
    levers: list[LeverResult] = field(default_factory=list)
    tokenize: list[TokenizeResult] = field(default_factory=list)
    contention: dict[str, float | None] = field(default_factory=dict)  # section -> CPUs busy elsewhere

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Results:
        """Rebuild the results of an earlier run from its `--json` file (to re-render the tables)."""
        rows = {
            "peaks": Peak,
            "train": TrainResult,
            "compiled": CompiledResult,
            "generate": GenResult,
            "beam": BeamResult,
            "attention": AttentionResult,
            "realdata": RealDataResult,
            "memory": MemoryResult,
            "loss_memory": LossMemoryResult,
            "levers": LeverResult,
            "tokenize": TokenizeResult,
        }
        fields = {key: [kind(**row) for row in data.get(key, [])] for key, kind in rows.items()}
        return cls(config=data["config"], machine=data["machine"], contention=data.get("contention", {}), **fields)


def build(name: str, shape: Shape, cfg: BenchConfig) -> Contender:
    device = torch.device(cfg.device)
    contender = build_ours(shape, linear_backend=cfg.linear_backend) if name == OURS else BUILDERS[name](shape)
    contender.model.to(device)
    return contender


def _train(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    device = torch.device(cfg.device)
    contenders = [build(name, shape, cfg) for name in cfg.models]
    flops = build_ours(shape).flops_per_token  # model FLOPs of the architecture, the same for every peer
    options = TrainOptions(optimizer=cfg.optimizer, compile=cfg.compile)
    for dtype in cfg.dtypes:
        if dtype == "fp16" and device.type == "cpu":
            continue  # emulated on CPUs: tens of times slower, not a configuration anyone runs
        with Contention() as contention:
            results.train += measure_training(
                shape, contenders, dtype, cfg.steps, device, options, flops, best_peak(results.peaks, dtype)
            )
        results.contention[f"train {shape.name} {dtype}"] = contention.other_cpus


def _compile(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    """trainer.compile's step against the eager one: tiny, first dtype (inductor takes minutes per graph here)."""
    if shape.name != "tiny" or OURS not in cfg.models:
        return
    dtype = next(d for d in cfg.dtypes if not (d == "fp16" and cfg.device == "cpu"))
    with Contention() as contention:
        results.compiled.append(measure_compiled(shape, dtype, cfg.steps, torch.device(cfg.device), cfg.linear_backend,
                                                 cfg.compile_backend))  # fmt: skip
    results.contention[f"compile {shape.name} {dtype}"] = contention.other_cpus


def _generate(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    device = torch.device(cfg.device)
    names = [n for n in (OURS, BART) if n in cfg.models]
    contenders = [build(name, shape, cfg) for name in names]
    dtypes = [d for d in cfg.dtypes if not (d == "fp16" and device.type == "cpu")]
    runners = [Runner(c.name, dtype, generator_for(c, dtype)) for c in contenders for dtype in dtypes]
    # the opt-in compiled step, fp32 only (each graph takes 8-30 s here)
    if cfg.compiled_decode and OURS in names and "fp32" in dtypes:
        ours = contenders[names.index(OURS)]
        runners.append(Runner(OURS_COMPILED, "fp32", generator_for(ours, "fp32", compile=True)))
    del contenders
    for batch in cfg.gen_batches:
        with Contention() as contention:
            results.generate += measure_generation(
                shape.name, runners, batch, shape.vocab, cfg.gen_src_len, cfg.new_tokens, cfg.repeats, device
            )
        results.contention[f"generate {shape.name} B{batch}"] = contention.other_cpus


def _realdata(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    if shape.name != "tiny":
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread each, as the contenders would run side by side
    try:
        with Contention() as contention, tempfile.TemporaryDirectory() as workdir:
            results.realdata += measure_realdata(
                shape, cfg.dtypes, cfg.realdata, torch.device(cfg.device), Path(workdir)
            )
    finally:
        torch.set_num_threads(threads)
    results.contention["realdata tiny"] = contention.other_cpus


def _beam(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    device = torch.device(cfg.device)
    contenders = [build(name, shape, cfg) for name in (OURS, BART) if name in cfg.models]
    runners = beam_runners(contenders, compiled=cfg.compiled_decode)
    for batch in cfg.beam_batches:
        with Contention() as contention:
            results.beam += measure_beam(
                shape.name, runners, batch, shape.vocab, cfg.beam_src_len, cfg.beam_new_tokens, cfg.repeats, device
            )
        results.contention[f"beam {shape.name} B{batch}"] = contention.other_cpus


def _attention(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    """mha vs gqa vs mqa: KV-cache bytes and batch-8 greedy decoding, first dtype only (a short run)."""
    with Contention() as contention:
        results.attention += measure_attention_variants(
            shape,
            cfg.dtypes[0],
            cfg.gen_src_len,
            min(cfg.repeats, 2),
            torch.device(cfg.device),
            cfg.linear_backend,
            new_tokens=min(cfg.new_tokens, ATTENTION_NEW_TOKENS),
        )
    results.contention[f"attention {shape.name}"] = contention.other_cpus


def _memory(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    device = torch.device(cfg.device)
    for name in cfg.models:
        if name not in CHECKPOINTABLE:
            continue
        contender = build(name, shape, cfg)
        for dtype in cfg.dtypes[:1]:
            results.memory.append(measure_memory(shape, contender, dtype, device))
        del contender
        gc.collect()
    if OURS in cfg.models:  # what the training step holds before its backward: full logits vs the chunked loss
        for dtype in [d for d in cfg.dtypes if not (d == "fp16" and device.type == "cpu")]:
            results.loss_memory.append(measure_loss_memory(shape, dtype, device, cfg.linear_backend))
            gc.collect()


def _levers(shape: Shape, cfg: BenchConfig, results: Results) -> None:
    device = torch.device(cfg.device)
    with Contention() as contention:
        results.levers += training_levers(shape, cfg.steps, device, cfg.compile, cfg.linear_backend, cfg.optimizer)
        results.levers += generation_levers(
            shape, device, cfg.new_tokens, cfg.gen_src_len, cfg.repeats, cfg.gen_batches
        )
    results.contention[f"levers {shape.name}"] = contention.other_cpus


SECTION_RUNNERS = {
    "train": _train,
    "compile": _compile,
    "realdata": _realdata,
    "generate": _generate,
    "beam": _beam,
    "attention": _attention,
    "memory": _memory,
    "levers": _levers,
}


def run(cfg: BenchConfig, log=print) -> Results:  # noqa: ANN001
    device = torch.device(cfg.device)
    results = Results(config=asdict(cfg), machine=describe(device))
    if "peak" in cfg.sections or "train" in cfg.sections:
        log("measuring matmul peaks ...")
        dtypes = [d for d in cfg.dtypes if not (d == "fp16" and device.type == "cpu")]
        results.peaks = measure_peaks(dtypes, device, size=cfg.peak_size)
    if "tokenize" in cfg.sections:
        log(f"tokenize {cfg.tokenize_mb:g} MB ...")
        results.tokenize = measure_tokenizing(cfg.tokenize_mb)
    for size in cfg.sizes:
        shape = SHAPES[size]
        for section in SECTION_RUNNERS:
            if section in cfg.sections:
                log(f"{section} {size} ...")
                torch.manual_seed(0)
                SECTION_RUNNERS[section](shape, cfg, results)
                gc.collect()
    return results
