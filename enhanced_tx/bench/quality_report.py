"""Tables of the quality bench: loss by step and by second, speed and test scores, and the goals."""

from __future__ import annotations

from collections.abc import Sequence

from enhanced_tx.bench.quality_result import Curve, Outcome, Point, QualitySpec

GOAL_STEPS = (500, 1000)  # ours' validation loss no worse than BART's at these steps
GOAL_CHRF_STEPS = 1.10  # test chrF at equal steps, relative to BART's
GOAL_CHRF_SECONDS = 1.5  # test chrF at equal wall clock, relative to BART's


def point_at_second(curve: Curve, second: float) -> Point | None:
    """The last validation point measured within `second` seconds of training."""
    known = [p for p in curve.points if p.seconds <= second + 1e-9]
    return known[-1] if known else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(outcomes: Sequence[Outcome], spec: QualitySpec, info: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table."""
    tables = []
    for precision in dict.fromkeys(o.precision for o in outcomes):
        mine = [o for o in outcomes if o.precision == precision]
        steps = [o for o in mine if o.mode == "steps"]
        if steps:
            all_steps = sorted({p.step for o in steps for p in o.curve.points})
            header = ["step", *(o.contender for o in steps)]
            rows = [[str(s), *(_fmt(o.curve.at_step(s)) for o in steps)] for s in all_steps]
            tables.append((f"validation loss per step ({precision})", header, rows))
        seconds = [o for o in mine if o.mode == "seconds"]
        if seconds:
            budget = max(o.curve.train_seconds for o in seconds)
            marks = [budget * f for f in (0.25, 0.5, 0.75, 1.0)]
            header = ["second", *(f"{o.contender} (step)" for o in seconds)]
            rows = []
            for mark in marks:
                points = [point_at_second(o.curve, mark) for o in seconds]
                cells = [f"{p.val_loss:.3f} ({p.step})" if p else "-" for p in points]
                rows.append([f"{mark:.0f}", *cells])
            tables.append((f"validation loss per training second ({precision})", header, rows))
        header = ["contender", "mode", "steps", "train s", "tokens/s", "padding", "test chrF", "test BLEU"]
        rows = []
        for o in mine:
            pad = 1 - o.curve.tokens / o.curve.padded_tokens if o.curve.padded_tokens else None
            rows.append(
                [
                    o.contender,
                    o.mode,
                    str(o.curve.steps),
                    f"{o.curve.train_seconds:.0f}",
                    f"{o.curve.tokens_per_s:.0f}",
                    "-" if pad is None else f"{pad:.0%}",
                    f"{o.chrf:.1f}",
                    f"{o.bleu:.1f}",
                ]
            )
        tables.append((f"runs ({precision})", header, rows))
        goals = _goals(mine)
        if goals:
            tables.append((f"goals ({precision})", ["goal", "ours", "BART", "met"], goals))
    return tables


def _find(outcomes: Sequence[Outcome], contender: str, mode: str) -> Outcome | None:
    return next((o for o in outcomes if o.contender == contender and o.mode == mode), None)


def _goals(outcomes: Sequence[Outcome]) -> list[list[str]]:
    rows = []
    ours, bart = _find(outcomes, "ours", "steps"), _find(outcomes, "bart", "steps")
    if ours and bart:
        for step in GOAL_STEPS:
            a, b = ours.curve.at_step(step), bart.curve.at_step(step)
            if a is not None and b is not None:
                rows.append([f"val loss at step {step} <= BART's", f"{a:.3f}", f"{b:.3f}", _met(a <= b)])
        rows.append(
            [
                f"test chrF at equal steps >= {GOAL_CHRF_STEPS}x BART's",
                f"{ours.chrf:.1f}",
                f"{bart.chrf:.1f}",
                _met_ratio(ours.chrf, bart.chrf, GOAL_CHRF_STEPS),
            ]
        )
    ours, bart = _find(outcomes, "ours", "seconds"), _find(outcomes, "bart", "seconds")
    if ours and bart:
        rows.append(
            [
                f"test chrF at equal wall clock >= {GOAL_CHRF_SECONDS}x BART's",
                f"{ours.chrf:.1f}",
                f"{bart.chrf:.1f}",
                _met_ratio(ours.chrf, bart.chrf, GOAL_CHRF_SECONDS),
            ]
        )
    return rows


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _met_ratio(ours: float, bart: float, goal: float) -> str:
    """A relative goal says nothing while BART scores 0 (a --quick run translates nothing yet)."""
    return "n/a" if bart <= 0 else _met(ours >= goal * bart)


def _intro(spec: QualitySpec, info: dict) -> str:
    return (
        f"task: {info['task']}; pairs {info['pairs']}; shape d{spec.d_model}, {spec.n_heads} heads, "
        f"{spec.n_layers}+{spec.n_layers} layers, ffn {spec.ffn}, BPE 8192, batches of {spec.batch_size} pairs"
    )


def text(outcomes: Sequence[Outcome], spec: QualitySpec, info: dict) -> str:
    lines = [_intro(spec, info)]
    for title, header, rows in _rows(outcomes, spec, info):
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += ["", title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def markdown(outcomes: Sequence[Outcome], spec: QualitySpec, info: dict) -> str:
    lines = [_intro(spec, info)]
    for title, header, rows in _rows(outcomes, spec, info):
        lines += ["", f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
