"""The GPU check's parts (benchmarks/gpu_check.py runs each in a child process): training with and without
compilation, recompiles over several lengths, greedy decoding, matmul peaks, flash coverage, finite steps and
memory, at the GPU shape (or, for `--dry-run`, a tiny shape on a CPU)."""

from __future__ import annotations

import argparse
import math
import time

import torch

from benchmarks.gpu_check_report import COMPILED, COMPILED_BLOCKS
from enhanced_tx.bench.batch import Batch, make_batch
from enhanced_tx.bench.generation import Runner, generator_for, measure_generation
from enhanced_tx.bench.memory import measure_memory
from enhanced_tx.bench.peers import BART, OURS, build_bart, build_ours
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.training import TrainOptions, TrainStep, measure_training
from enhanced_tx.runtime.peak import measure_peaks

GPU_SHAPE = Shape(
    "small", d_model=768, n_heads=12, n_layers=6, ffn=3072, vocab=32000, batch=32, src_len=512, tgt_len=512
)
DRY_SHAPE = Shape("tiny", d_model=256, n_heads=4, n_layers=2, ffn=1024, vocab=8192, batch=2, src_len=64, tgt_len=64)
DECODE_GOAL = 0.5  # our greedy ms/step over BART's, small, batch 1
RECOMPILE_LENGTHS = (512, 384, 256, 128)  # target lengths of the many-lengths compile part (dry run: /8)


def flash_only():  # noqa: ANN201
    """SDPA restricted to the flash backend: any call flash cannot serve raises instead of falling back."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


# ---------------------------------------------------------------------- parts (each runs in a child process)
class Parts:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device("cpu" if args.dry_run else "cuda")
        self.shape = DRY_SHAPE if args.dry_run else GPU_SHAPE
        self.backend = "aot_eager" if args.dry_run else "inductor"  # the dry run checks the path, not inductor

    def recompiles(self) -> dict:
        """Per-block compiled training over batches of several target lengths: how many graphs dynamo built."""
        from torch._dynamo.utils import counters

        contender = build_ours(self.shape)
        contender.model.to(self.device)
        lengths = [n // (8 if self.args.dry_run else 1) for n in RECOMPILE_LENGTHS]
        batch = make_batch(self.shape, self.device)
        step = TrainStep(
            contender, "bf16", batch, TrainOptions("fused", compile_blocks=True, compile_backend=self.backend)
        )
        seconds = []
        with flash_only() if self.device.type == "cuda" else _nothing():
            for length in lengths * 2:  # each length twice: the second visit must compile nothing
                step.batch = Batch(batch.src, batch.tgt_in[:, :length], batch.labels[:, :length])
                start = time.perf_counter()
                step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
        stats = {k: int(v) for k, v in counters["stats"].items()}
        return {
            "lengths": lengths,
            "unique_graphs": stats.get("unique_graphs"),
            "dynamo_stats": stats,
            "recompiles": sum(int(v) for v in counters["recompiles"].values()) if "recompiles" in counters else None,
            "second_pass_max_s": max(seconds[len(lengths) :]),
            "first_pass_s": seconds[: len(lengths)],
            "finite": math.isfinite(float(step.last_loss)),
        }

    def decode(self) -> dict:
        """Greedy decoding with the KV cache, batch 1, bf16 weights: ours against BART, ms per step."""
        runners = [
            Runner(c.name, "bf16", generator_for(c, "bf16")) for c in (build_ours(self.shape), build_bart(self.shape))
        ]
        for runner, contender in zip(runners, (OURS, BART), strict=True):
            assert runner.model == contender
        new_tokens = 16 if self.args.dry_run else 128
        results = measure_generation(self.shape.name, runners, 1, self.shape.vocab, 64, new_tokens, 3, self.device)
        ms = {r.model: r.ms_per_step for r in results}
        return {"ms_per_step": ms, "new_tokens": new_tokens, "ratio": ms[OURS] / ms[BART], "goal": DECODE_GOAL}

    def peaks(self) -> dict:
        dtypes = ["bf16", "fp16"] if self.device.type == "cuda" else ["bf16"]
        return {f"{p.dtype} {p.backend}": p.flops for p in measure_peaks(dtypes, self.device)}

    def flash(self) -> dict:
        """Forward + backward of our model with SDPA limited to flash: proves flash serves every call."""
        ours = build_ours(self.shape).model.to(self.device).train()
        batch = make_batch(self.shape, self.device)
        with flash_only(), torch.autocast(self.device.type, dtype=torch.bfloat16):
            logits = ours(batch.src, batch.tgt_in)
        logits.float().mean().backward()
        return {"flash_attention_forward_backward": True, "logits_dtype": str(logits.dtype)}

    def train(self, name: str, compile: bool = False, per_block: bool = False, dtype: str = "bf16") -> dict:
        contender = (build_ours if name == OURS else build_bart)(self.shape)
        contender.model.to(self.device)
        options = TrainOptions("fused", compile=compile, compile_blocks=per_block, compile_backend=self.backend)
        flops = build_ours(self.shape).flops_per_token  # model FLOPs of the architecture, the same for BART
        steps = self.args.steps
        try:
            with flash_only():
                result = measure_training(self.shape, [contender], dtype, steps, self.device, options, flops)[0]
            backend = "flash"
        except RuntimeError as error:  # flash refused a call: say so, and measure with the default choice
            if "kernel" not in str(error).lower():
                raise
            result = measure_training(self.shape, [contender], dtype, steps, self.device, options, flops)[0]
            backend = f"default (flash refused: {str(error).splitlines()[0][:120]})"
        return {
            "model": name,
            "dtype": dtype,
            "compile": "per block" if per_block else compile,
            "sdpa": backend,
            "tokens_per_s": result.tokens_per_s,
            "step_ms": 1e3 * result.step_s,
            "median_step_ms": 1e3 * result.median_step_s,
            "tflops": None if result.gflops is None else result.gflops / 1e3,
            "loss": result.loss,
            "finite": math.isfinite(result.loss),
        }

    def finite(self, dtype: str) -> dict:
        """Five eager steps at a high learning rate; every loss and every weight must stay finite."""
        contender = build_ours(self.shape)
        contender.model.to(self.device)
        step = TrainStep(contender, dtype, make_batch(self.shape, self.device), TrainOptions(optimizer="fused"))
        for group in step.optimizer.param_groups:
            group["lr"] = 1e-3
        losses = []
        for _ in range(5):
            step()
            losses.append(float(step.last_loss))
        params_finite = all(torch.isfinite(p).all().item() for p in contender.model.parameters())
        scale = step.scaler.get_scale() if step.scaler is not None else None
        return {"losses": losses, "finite": all(map(math.isfinite, losses)) and params_finite, "grad_scale": scale}

    def memory(self, name: str) -> dict:
        contender = (build_ours if name == OURS else build_bart)(self.shape)
        contender.model.to(self.device)
        r = measure_memory(self.shape, contender, "bf16", self.device)
        return {
            "model": name,
            "after_forward_mb": r.forward_mb,
            "after_forward_ckpt_mb": r.forward_ckpt_mb,
            "ratio_after_forward": r.ratio,
            "peak_mb": r.peak_mb,
            "peak_ckpt_mb": r.peak_ckpt_mb,
        }

    def run(self, name: str) -> dict:
        table = {
            "peaks": self.peaks,
            "flash": self.flash,
            COMPILED: lambda: self.train(OURS, compile=True),
            COMPILED_BLOCKS: lambda: self.train(OURS, per_block=True),
            "recompiles": self.recompiles,
            "decode": self.decode,
            "train bart bf16 eager": lambda: self.train(BART),
            "train ours bf16 eager": lambda: self.train(OURS),
            "finite bf16": lambda: self.finite("bf16"),
            "finite fp16": lambda: self.finite("fp16"),
            "memory ours": lambda: self.memory(OURS),
            "memory bart": lambda: self.memory(BART),
            "train bart bf16 compiled": lambda: self.train(BART, compile=True),
        }
        return table[name]()


class _nothing:  # a context manager that does nothing (CPU dry run: no flash kernel)
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
