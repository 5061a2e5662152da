"""The conclusion sections of ``report.md``: significance vs the baseline, tuned arms, scaling fits."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .report_options import ReportOptions
from .report_scaling import MIN_POINTS, PREDICT_AT, ScalingResult, crossing
from .report_science import Science
from .report_stats import CONFIDENCE, ArmStats, Comparison
from .report_table import short_value


def science_sections(science: Science, options: ReportOptions) -> list[str]:
    what = f"{options.value} `{options.metric}` ({'lower' if options.mode == 'min' else 'higher'} is better)"
    lines = ["", "## Conclusions", ""]
    if science.tuned is not None:
        lines += [f"Each arm at its own best `{options.tune}` (by the mean over seeds); {what}.", ""]
    else:
        lines += [f"Arms are configurations without the seed; {what}.", ""]
    lines += [f"- {note}" for note in science.notes]
    if science.notes:
        lines.append("")
    if science.arms:
        lines += conclusion_table(science, options.mode)
    if science.tuned is not None:
        lines += ["", f"### Tuned `{options.tune}`", "", *_tuned_table(science, options)]
    if science.scaling is not None:
        lines += ["", "### Scaling fits", "", *_scaling_lines(science.scaling, options)]
    return lines


def conclusion_table(science: Science, mode: str) -> list[str]:
    """Per arm: n, mean ± std, 95% interval; against the baseline: difference, its interval, p, verdict."""
    level = f"{100 * CONFIDENCE:.0f}%"
    headings = ["arm", "n", "mean ± std", f"{level} CI", "diff vs baseline", f"{level} CI of diff", "p (Welch)"]
    lines = [_cells([*headings, "verdict"]), _cells(["---"] * (len(headings) + 1))]
    by_arm = {c.arm.label: c for c in science.comparisons}
    for arm in science.arms:
        cells = [f"`{arm.label}`", str(arm.n), _pm(arm), _interval(arm.interval())]
        comparison = by_arm.get(arm.label)
        if arm is science.baseline:
            cells += ["baseline", "", "", ""]
        elif comparison is not None:
            cells += _comparison_cells(comparison, mode)
        else:
            cells += ["", "", "", ""]
        lines.append(_cells(cells))
    lines += ["", "p: Welch's unequal-variance t-test (scipy.stats.ttest_ind); intervals: Student t."]
    return lines


def _comparison_cells(c: Comparison, mode: str) -> list[str]:
    return [f"{c.difference:+.4f}", _interval((c.low, c.high), signed=True), _p(c.p_value), c.verdict(mode)]


def _tuned_table(science: Science, options: ReportOptions) -> list[str]:
    tuned = science.tuned or []
    grid = sorted({v for t in tuned for v in t.curve}, key=_number)
    headings = ["arm", *(f"{options.tune}={short_value(v)}" for v in grid), "best"]
    lines = [_cells(headings), _cells(["---"] * (len(grid) + 2))]
    for t in tuned:
        cells = [_pm(t.curve[v]) + (" *" if v == t.best_value else "") if v in t.curve else "-" for v in grid]
        lines.append(_cells([f"`{t.label}`", *cells, short_value(t.best_value)]))
    lines += ["", "Mean ± std over seeds; * marks each arm's best. The best value is picked with the same seeds"]
    lines += ["it is then judged on, so its interval is slightly optimistic."]
    for t in tuned:
        if t.at_edge:
            lines.append(
                f"- warning: arm `{t.label}` is best at the edge of the grid "
                f"({options.tune}={short_value(t.best_value)}): widen the grid on that side"
            )
    return lines


def _scaling_lines(scaling: ScalingResult, options: ReportOptions) -> list[str]:
    lines = [f"`{options.metric}` = E + A * C^-alpha, C = training FLOPs (scipy.optimize.curve_fit, ± 1 s.e.).", ""]
    lines += [f"- {reason}" for reason in scaling.skipped]
    if not scaling.fits:
        return lines
    multiples = [f"at {m:g}x C_max" for m in PREDICT_AT]
    lines += [_cells(["arm", "points", "E", "A", "alpha", *multiples]), _cells(["---"] * (5 + len(multiples)))]
    for fit in scaling.fits:
        e, a, alpha = fit.errors
        predictions = [
            _value_se(fit.predict(m * scaling.largest_compute), fit.predict_error(m * scaling.largest_compute))
            for m in PREDICT_AT
        ]
        cells = [_value_se(fit.e, e), _value_se(fit.a, a, "{:.3g}"), _value_se(fit.alpha, alpha)]
        lines.append(_cells([f"`{fit.arm}`", str(len(fit.compute)), *cells, *predictions]))
    lines += ["", f"C_max = {scaling.largest_compute:.3g} FLOPs, the largest job of the sweep."]
    # as many points as parameters: the curve passes through them, so curve_fit cannot estimate errors
    exact = [f"`{f.arm}`" for f in scaling.fits if len(set(f.compute)) <= MIN_POINTS]
    if exact:
        lines.append(
            f"- {', '.join(exact)}: {MIN_POINTS} points for 3 parameters, an exact fit without standard errors; "
            "add a size or budget for them"
        )
    lines.append("Predictions beyond C_max are extrapolations of the fitted law, not measurements.")
    low, high = min(min(f.compute) for f in scaling.fits), PREDICT_AT[-1] * scaling.largest_compute
    for i, first in enumerate(scaling.fits):
        for second in scaling.fits[i + 1 :]:
            at = crossing(first, second, low, high)
            pair = f"- `{first.arm}` and `{second.arm}`"
            if at is None:
                lines.append(f"{pair} do not cross between C = {low:.3g} and {high:.3g} FLOPs")
            else:
                beyond = " (extrapolated: beyond C_max)" if at > scaling.largest_compute else ""
                lines.append(f"{pair} cross at C = {at:.3g} FLOPs{beyond}")
    return lines


def _pm(arm: ArmStats) -> str:
    if not arm.n:
        return "-"
    return f"{arm.mean:.4f}" if arm.n < 2 else f"{arm.mean:.4f} ± {arm.std:.4f}"


def _interval(bounds: tuple[float, float], signed: bool = False) -> str:
    low, high = bounds
    if math.isnan(low):
        return "-"
    form = "{:+.4f}" if signed else "{:.4f}"
    return f"[{form.format(low)}, {form.format(high)}]"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else (f"{p:.3g}" if p >= 1e-4 else "<1e-4")


def _value_se(value: float, error: float, form: str = "{:.4g}") -> str:
    return form.format(value) + ("" if math.isnan(error) else f" ± {form.format(error)}")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _cells(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
