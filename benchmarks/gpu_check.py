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
`--dry-run` runs the same code on a CPU at a tiny shape to check the script itself, in under a minute: every
part in one child process (one import of torch), compiling with aot_eager (no C++ build), 2 timed steps.
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

from benchmarks.gpu_check_report import COMPILED, COMPILED_BLOCKS, table  # noqa: E402
from enhanced_tx.bench.batch import Batch, make_batch  # noqa: E402
from enhanced_tx.bench.generation import Runner, generator_for, measure_generation  # noqa: E402
from enhanced_tx.bench.machine import describe  # noqa: E402
from enhanced_tx.bench.memory import measure_memory  # noqa: E402
from enhanced_tx.bench.peers import BART, OURS, build_bart, build_ours  # noqa: E402
from enhanced_tx.bench.shapes import Shape  # noqa: E402
from enhanced_tx.bench.training import TrainOptions, TrainStep, measure_training  # noqa: E402
from enhanced_tx.runtime.peak import measure_peaks  # noqa: E402

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
        self.report = results / f"{time.strftime('%Y-%m-%d', time.gmtime())}-{device_name}.md"

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
            command = [sys.executable, __file__, "--part", name, "--part-out", str(result_path), "--one"]
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

    def plan(self) -> list[tuple[str, float]]:
        """(part, the seconds it may take on the GPU), in the order they run."""
        compiled = not self.args.no_compile
        plan = [("peaks", 30), ("flash", 20)]
        # repeated blocks compile once (CompiledBlocks, what trainer.compile=true installs)
        plan += [(COMPILED_BLOCKS, 100), ("recompiles", 90)] if compiled else []
        plan += [("train bart bf16 eager", 30), ("train ours bf16 eager", 30), ("finite bf16", 20)]
        plan += [("finite fp16", 20), ("memory ours", 25), ("memory bart", 25), ("decode", 40)]
        plan += [(COMPILED, 120), ("train bart bf16 compiled", 120)] if compiled else []  # whole forward + loss
        return plan

    def together(self, names: list[str]) -> None:
        """The dry run: every part in one child process (one import), each part's exception recorded."""
        print(f"[{self.elapsed():5.0f}s] {len(names)} parts in one process ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / "parts.json"
            command = [sys.executable, __file__, "--part-out", str(result_path), "--steps", str(self.args.steps)]
            command += [arg for name in names for arg in ("--part", name)] + ["--dry-run"]
            proc = subprocess.run(command, capture_output=True, text=True)
            results = json.loads(result_path.read_text()) if result_path.exists() else {}
        for name in names:
            if name in results and "error" not in results[name]:
                self.out[name] = results[name]["result"]
            else:
                self.out["errors"][name] = results.get(name, {}).get("error") or _failure(proc)
        if proc.returncode != 0:
            print(proc.stdout[-2000:] + proc.stderr[-4000:], flush=True)
        print(f"[{self.elapsed():5.0f}s] parts done", flush=True)

    def run(self) -> dict:
        if self.args.dry_run:
            self.together([name for name, _ in self.plan()])
        else:
            for name, cost in self.plan():
                self.part(name, cost)
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


def run_parts(args: argparse.Namespace) -> int:
    """The child: one part (its exception is the process's failure), or several (each one's exception kept)."""
    parts = Parts(args)
    if args.one:
        Path(args.part_out).write_text(json.dumps(parts.run(args.part[0]), default=str))
        return 0
    results = {}
    for name in args.part:
        started = time.perf_counter()
        try:
            results[name] = {"result": parts.run(name)}
        except Exception as error:  # noqa: BLE001 - the dry run reports every broken part, not the first
            first = (str(error).splitlines() or [""])[0][:300]
            results[name] = {"error": f"{type(error).__name__}: {first}"}
        print(f"  {name}: {time.perf_counter() - started:.1f}s", flush=True)
        Path(args.part_out).write_text(json.dumps(results, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shape: check the script, not the GPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps per training run (10; a dry run 2)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip parts that would end after this")
    p.add_argument(
        "--results-dir",
        default=None,
        help="also write a copy named by date and device here (gpu_check.sh: benchmarks/results; default: --out's)",
    )
    p.add_argument("--out", default="/tmp/gpu_check.json")
    p.add_argument("--part", action="append", help=argparse.SUPPRESS)  # internal: run parts in this process
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one part, errors raise
    p.add_argument("--part-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps or (2 if args.dry_run else 10)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device visible; use --dry-run on a CPU", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    if args.part:
        return run_parts(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check = Check(args)
    out = check.run()
    text = table(out)
    print(text)
    check.report.write_text(f"# GPU check {out['date']}\n\n```\n{text}\n```\n")
    print(f"wrote {check.report}")
    print(f"\nwrote {args.out}")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
