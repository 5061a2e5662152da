"""One prepared GPU check (H100/H200, one GPU, no network, under 8 minutes): `bash benchmarks/gpu_check.sh`.

The DESIGN's GPU figures: the small model (d768, 12 heads, 6+6 layers, vocab 32000) at batch 32 with 512
source and 512 target tokens, bf16 autocast, flash SDPA, torch.compile, MFU against a bf16 matmul peak
measured here (goal >= 45%). Also: fp16 (GradScaler) and bf16 training steps stay finite, memory after the
forward pass and peak memory with and without gradient checkpointing, HF BART side by side at the same
shapes; per-block compilation (each Transformer block compiled once, torchtitan's choice) with the number of
graphs dynamo built, also over batches of several lengths (no recompile storm: at most a handful); greedy
decoding of the small model at batch 1, ms per step against BART's (goal <= 0.5x). Writes a JSON file
(after every part), a copy named by date and device under `benchmarks/results/`, and prints a table.

Every part runs in its own child process (`--part NAME`): a crash (a segfault in a compiler, say), a hang or
an exception is recorded in `errors` and the other parts still run. When compiling the whole forward + loss
fails, per-block compilation is tried instead. Parts that would overrun `--budget-s` are skipped and listed.
`--dry-run` runs the same code on a CPU at a tiny shape to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from enhanced_tx.bench.batch import Batch, make_batch  # noqa: E402
from enhanced_tx.bench.generation import Runner, generator_for, measure_generation  # noqa: E402
from enhanced_tx.bench.machine import describe, one_line  # noqa: E402
from enhanced_tx.bench.memory import measure_memory  # noqa: E402
from enhanced_tx.bench.peers import BART, OURS, build_bart, build_ours  # noqa: E402
from enhanced_tx.bench.shapes import Shape  # noqa: E402
from enhanced_tx.bench.table import Table, fmt  # noqa: E402
from enhanced_tx.bench.training import TrainOptions, TrainStep, measure_training  # noqa: E402
from enhanced_tx.runtime.peak import measure_peaks  # noqa: E402

GPU_SHAPE = Shape(
    "small", d_model=768, n_heads=12, n_layers=6, ffn=3072, vocab=32000, batch=32, src_len=512, tgt_len=512
)
DRY_SHAPE = Shape("tiny", d_model=256, n_heads=4, n_layers=2, ffn=1024, vocab=8192, batch=2, src_len=64, tgt_len=64)
MFU_GOAL = 0.45
DECODE_GOAL = 0.5  # our greedy ms/step over BART's, small, batch 1
RECOMPILE_LENGTHS = (512, 384, 256, 128)  # target lengths of the many-lengths compile part (dry run: /8)
COMPILED = "train ours bf16 compiled"
COMPILED_BLOCKS = "train ours bf16 compiled per block"


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

    def recompiles(self) -> dict:
        """Per-block compiled training over batches of several target lengths: how many graphs dynamo built."""
        from torch._dynamo.utils import counters

        contender = build_ours(self.shape)
        contender.model.to(self.device)
        lengths = [n // (8 if self.args.dry_run else 1) for n in RECOMPILE_LENGTHS]
        batch = make_batch(self.shape, self.device)
        step = TrainStep(contender, "bf16", batch, TrainOptions(optimizer="fused", compile_blocks=True))
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
        options = TrainOptions(optimizer="fused", compile=compile, compile_blocks=per_block)
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


# ---------------------------------------------------------------------- the driver (parent process)
class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.perf_counter()
        device = torch.device("cpu" if args.dry_run else "cuda")
        shape = DRY_SHAPE if args.dry_run else GPU_SHAPE
        self.out: dict = {"machine": describe(device), "shape": vars(shape), "errors": {}, "skipped": []}
        self.out["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.out["dry_run"] = bool(args.dry_run)
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu-dry-run"
        device_name = "".join(c if c.isalnum() else "-" for c in name)
        stem = f"gpu_check_{time.strftime('%Y%m%d-%H%M', time.gmtime())}_{device_name}"
        results = Path(args.results_dir) if args.results_dir else Path(args.out).parent
        self.dated = results / f"{stem}.json"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.out["total_s"] = self.elapsed()
        text = json.dumps(self.out, indent=2, default=str)
        for path in (Path(self.args.out), self.dated):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def part(self, name: str, cost_s: float) -> bool:
        """Run one part in a child process unless the budget would be exceeded; True when it succeeded."""
        left = self.args.budget_s - self.elapsed()
        if cost_s > left:
            self.out["skipped"].append(name)
            print(f"[{self.elapsed():5.0f}s] skip {name} (budget)", flush=True)
            return False
        print(f"[{self.elapsed():5.0f}s] {name} ...", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / "part.json"
            command = [sys.executable, __file__, "--part", name, "--part-out", str(result_path)]
            command += ["--steps", str(self.args.steps)] + (["--dry-run"] if self.args.dry_run else [])
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=left)
            except subprocess.TimeoutExpired:
                self.out["errors"][name] = f"timed out after {left:.0f}s"
                proc = None
            if proc is not None:
                if proc.returncode == 0 and result_path.exists():
                    self.out[name] = json.loads(result_path.read_text())
                else:
                    self.out["errors"][name] = _failure(proc)
                    print(proc.stdout[-2000:] + proc.stderr[-4000:], flush=True)
        self.save()  # after every part: a run stopped by an outer timeout still leaves its figures
        print(f"[{self.elapsed():5.0f}s] {name} done in {time.perf_counter() - start:.0f}s", flush=True)
        return name in self.out

    def run(self) -> dict:
        self.part("peaks", 30)
        self.part("flash", 20)
        if not self.args.no_compile:
            self.part(COMPILED_BLOCKS, 100)  # repeated blocks compile once: the compile path users get
            self.part("recompiles", 90)
        self.part("train bart bf16 eager", 30)
        self.part("train ours bf16 eager", 30)
        self.part("finite bf16", 20)
        self.part("finite fp16", 20)
        self.part("memory ours", 25)
        self.part("memory bart", 25)
        self.part("decode", 40)
        if not self.args.no_compile:
            self.part(COMPILED, 120)  # the whole forward + loss as one graph
            self.part("train bart bf16 compiled", 120)
        self._mfu()
        self.save()
        return self.out

    def _mfu(self) -> None:
        peak = self.out.get("peaks", {}).get("bf16 torch.matmul")
        for key, value in self.out.items():
            if key.startswith("train ") and isinstance(value, dict) and peak and value.get("tflops"):
                value["mfu"] = value["tflops"] * 1e12 / peak


class _nothing:  # a context manager that does nothing (CPU dry run: no flash kernel)
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _failure(proc: subprocess.CompletedProcess) -> str:
    code = proc.returncode
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} (a crash in native code)"
        except ValueError:
            return f"killed by signal {-code}"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return f"exit {code}: {lines[-1][:300] if lines else 'no output'}"


def table(out: dict) -> str:
    shape = out["shape"]
    t = Table(
        f"Training, bf16 autocast, batch x (source + target) = {shape['batch']} x ({shape['src_len']} + "
        f"{shape['tgt_len']})",
        ["run", "sdpa", "tok/s", "step ms", "TFLOP/s", "MFU", "loss", "vs BART eager"],
    )
    bart = out.get("train bart bf16 eager", {}).get("tokens_per_s")
    for key, r in out.items():
        if key.startswith("train ") and isinstance(r, dict):
            mfu = "-" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
            vs = f"{r['tokens_per_s'] / bart:.2f}x" if bart else "-"
            t.add(
                key[6:], r["sdpa"][:24], r["tokens_per_s"], fmt(r["step_ms"], 1), fmt(r["tflops"], 1), mfu,
                fmt(r["loss"], 3), vs,
            )  # fmt: skip
    peaks = out.get("peaks", {})
    t.notes.append("matmul peaks (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in peaks.items()))
    best = max((out.get(k, {}).get("mfu") or 0 for k in (COMPILED, COMPILED_BLOCKS)), default=0)
    if best:
        verdict = "met" if best >= MFU_GOAL else "NOT met"
        t.notes.append(f"MFU goal >= {100 * MFU_GOAL:.0f}% (ours, compiled, flash): {verdict} ({100 * best:.1f}%)")
    m = Table(
        "Memory, bf16, with and without gradient checkpointing (MB)",
        ["model", "after fwd", "after fwd ckpt", "ratio", "peak", "peak ckpt"],
    )
    for name in ("memory ours", "memory bart"):
        r = out.get(name)
        if r:
            m.add(
                r["model"], r["after_forward_mb"], r["after_forward_ckpt_mb"], f"{r['ratio_after_forward']:.2f}x",
                fmt(r["peak_mb"]), fmt(r["peak_ckpt_mb"]),
            )  # fmt: skip
    f = Table("Finite training steps (5 eager steps, lr 1e-3)", ["dtype", "finite", "losses", "grad scale"])
    for dtype in ("bf16", "fp16"):
        r = out.get(f"finite {dtype}")
        if r:
            f.add(dtype, str(r["finite"]), " ".join(f"{x:.3f}" for x in r["losses"]), fmt(r["grad_scale"]))
    parts = [f"{one_line(out['machine'])}  ({out.get('date')}{', DRY RUN on a CPU' if out.get('dry_run') else ''})"]
    parts += [t.text(), m.text(), f.text()]
    r = out.get("recompiles")
    if r:
        parts.append(
            f"per-block compile over target lengths {r['lengths']} (each twice): {r['unique_graphs']} graphs, "
            f"recompiles {r['recompiles']}, slowest second-pass step {r['second_pass_max_s']:.2f}s"
        )
    d = out.get("decode")
    if d:
        ms = d["ms_per_step"]
        verdict = "met" if d["ratio"] <= d["goal"] else "NOT met"
        parts.append(
            f"greedy decode, batch 1, bf16, {d['new_tokens']} tokens: ours {ms[OURS]:.2f} ms/step, "
            f"BART {ms[BART]:.2f}: "
            f"{d['ratio']:.2f}x (goal <= {d['goal']}x: {verdict})"
        )
    if "flash" in out:
        parts.append(
            f"flash SDPA for every attention call (fwd + bwd): {out['flash']['flash_attention_forward_backward']}"
        )
    if out["errors"]:
        parts.append("ERRORS:\n" + "\n".join(f"  {k}: {v}" for k, v in out["errors"].items()))
    if out["skipped"]:
        parts.append("skipped (time budget): " + ", ".join(out["skipped"]))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shape: check the script, not the GPU")
    p.add_argument("--steps", type=int, default=10, help="timed steps per training run (after warm-up)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip parts that would end after this")
    p.add_argument(
        "--results-dir",
        default=None,
        help="also write a copy named by date and device here (gpu_check.sh: benchmarks/results; default: --out's)",
    )
    p.add_argument("--out", default="/tmp/gpu_check.json")
    p.add_argument("--part", default=None, help=argparse.SUPPRESS)  # internal: run one part in this process
    p.add_argument("--part-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device visible; use --dry-run on a CPU", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    if args.part:
        Path(args.part_out).write_text(json.dumps(Parts(args).run(args.part), default=str))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Check(args).run()
    print(table(out))
    print(f"\nwrote {args.out}")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
