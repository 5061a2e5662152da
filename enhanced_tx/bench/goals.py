"""The issue's targets, checked against the figures of one run (ratios within the same run only)."""

from __future__ import annotations

from dataclasses import dataclass

from enhanced_tx.bench.generation import OURS_COMPILED
from enhanced_tx.bench.peers import BART, OURS
from enhanced_tx.bench.realdata import BART_REAL, OURS_NOPAD, OURS_REAL
from enhanced_tx.bench.runner import Results


@dataclass
class Goal:
    name: str
    target: float
    at_most: bool = False  # True: the measured value must not exceed the target
    ceiling: float | None = None  # the best ratio physically possible here (training: 100% of the matmul peak)

    def met(self, value: float) -> bool:
        return value <= self.target if self.at_most else value >= self.target


def _train(results: Results, size: str, dtype: str, model: str) -> float | None:
    for r in results.train:
        if (r.size, r.dtype, r.model) == (size, dtype, model):
            return r.tokens_per_s
    return None


def _gen(results: Results, size: str, batch: int, dtype: str, model: str) -> float | None:
    for r in results.generate:
        if (r.size, r.batch, r.dtype, r.model) == (size, batch, dtype, model):
            return r.tokens_per_s
    return None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _ceiling(results: Results, size: str, dtype: str) -> float | None:
    """Ratio to BART if our step ran at 100% of the measured matmul peak with zero other work."""
    bart = next((r for r in results.train if (r.size, r.dtype, r.model) == (size, dtype, BART)), None)
    peak = max((p.flops for p in results.peaks if p.dtype == dtype), default=None)
    if bart is None or peak is None or not bart.gflops:
        return None
    return peak / (bart.gflops * 1e9)


def evaluate(results: Results) -> list[tuple[Goal, float | None]]:
    checks: list[tuple[Goal, float | None]] = [
        (
            Goal("train small fp32 vs BART fp32", 2.0, ceiling=_ceiling(results, "small", "fp32")),
            _div(_train(results, "small", "fp32", OURS), _train(results, "small", "fp32", BART)),
        ),
        (
            Goal("train small bf16 vs BART bf16", 1.5, ceiling=_ceiling(results, "small", "bf16")),
            _div(_train(results, "small", "bf16", OURS), _train(results, "small", "bf16", BART)),
        ),
        (
            Goal("train tiny fp32 vs BART fp32", 1.5, ceiling=_ceiling(results, "tiny", "fp32")),
            _div(_train(results, "tiny", "fp32", OURS), _train(results, "tiny", "fp32", BART)),
        ),
    ]
    for r in (r for r in results.compiled if r.backend == "inductor"):  # aot_eager (--quick) speeds nothing up
        # a tie is acceptable, slower is not (0.98: the step-to-step noise here)
        checks.append((Goal(f"compiled vs eager step, {r.size} {r.dtype} (eager s / compiled s)", 0.98), r.ratio))
    greedy = [OURS]  # and the compiled step where the run measured it (not under --quick)
    if any(r.model == OURS_COMPILED for r in results.generate):
        greedy.append(OURS_COMPILED)
    for size, batch, target in (("tiny", 1, 2.0), ("small", 8, 2.0), ("small", 1, 1.4)):
        for model in greedy:
            label = "" if model == OURS else f" {model}"
            checks.append(
                (
                    Goal(f"generate {size} B{batch} fp32{label} vs BART fp32", target),
                    _div(_gen(results, size, batch, "fp32", model), _gen(results, size, batch, "fp32", BART)),
                )
            )
    checks.append(
        (
            Goal("generate small B1 bf16 weights vs BART fp32", 2.5),
            _div(_gen(results, "small", 1, "bf16", OURS), _gen(results, "small", 1, "fp32", BART)),
        )
    )
    real = {(r.dtype, r.model): r.tokens_per_s for r in results.realdata}
    for dtype in dict.fromkeys(r.dtype for r in results.realdata):
        ours = real.get((dtype, OURS_REAL))
        checks.append(
            (
                Goal(f"real pairs {dtype}: ours vs BART (non-padding tok/s)", 2.5),
                _div(ours, real.get((dtype, BART_REAL))),
            )
        )
        checks.append(
            (Goal(f"real pairs {dtype}: ours vs ours without padding", 0.9), _div(ours, real.get((dtype, OURS_NOPAD))))
        )
    bart_beam = {(r.size, r.batch): r for r in results.beam if r.model == BART}
    for r in results.beam:
        bart = bart_beam.get((r.size, r.batch))
        if r.model != BART and bart is not None:
            # ceiling: BART's call over the seconds our call spends in matmuls alone
            ceiling = _div(bart.call_s, r.matmul_s)
            goal = Goal(f"beam {r.size} B{r.batch} {r.model} vs BART", 2.0, ceiling=ceiling)
            checks.append((goal, _div(r.tokens_per_s, bart.tokens_per_s)))
    for r in results.memory:
        if r.model == OURS:
            checks.append((Goal(f"activation memory with checkpointing, {r.size} {r.dtype}", 0.35, True), r.ratio))
    for r in results.loss_memory:  # ceiling: the hidden states alone (no head, no loss) over the path as filed
        checks.append((Goal(f"memory after forward + loss, ours vs as filed, {r.size} {r.dtype}", 0.6, True,
                            ceiling=r.floor_ratio), r.ratio))  # fmt: skip
    return [(goal, value) for goal, value in checks if value is not None]
