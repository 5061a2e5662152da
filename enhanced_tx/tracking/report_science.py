"""The conclusions of a sweep: arms with intervals vs a baseline, tuned arms, scaling fits (see report_stats)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from enhanced_tx.errors import ConfigError

from .report_arms import arm_label, arm_swept, group_arms, in_job_order, usable
from .report_options import ReportOptions
from .report_scaling import ScalingResult, fit_arms
from .report_stats import ArmStats, Comparison, compare, pick_baseline
from .report_table import Row
from .report_tune import TunedArm, tune_arms


@dataclass
class Science:
    arms: list[ArmStats]  # the compared arms (tuned: each at its best value of the tuned key)
    baseline: ArmStats | None
    comparisons: list[Comparison]  # every other arm against the baseline
    tuned: list[TunedArm] | None = None
    scaling: ScalingResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def replicated(self) -> bool:
        return any(arm.n > 1 for arm in self.arms)


def analyse(rows: Sequence[Row], options: ReportOptions) -> Science:
    """Arms, the baseline and the comparisons; the tuned view and the scaling fits when asked for."""
    tuned = None
    if options.tune:
        tuned = tune_arms(rows, options.tune, options.value, options.mode)
        arms = [t.best for t in tuned]
    else:
        arms = [a for a in group_arms(rows, options.value) if a.n]
    science = Science(arms, None, [], tuned=tuned)
    if options.scale:
        science.scaling = fit_arms(scaling_points(rows, options))
    if len(arms) < 2:
        science.notes.append("only one arm has results: nothing to compare")
        return science
    science.baseline = pick_baseline(arms, options.baseline)
    science.comparisons = [compare(arm, science.baseline) for arm in arms if arm is not science.baseline]
    if not science.replicated:
        science.notes.append("one seed per arm: no intervals; add seeds (e.g. seed=0,1,2) to tell noise from effect")
    return science


def scaling_points(rows: Sequence[Row], options: ReportOptions) -> dict[str, list[tuple[float, float]]]:
    """Per arm (swept keys without seed and scale keys): ``(training FLOPs, value)`` of every usable job."""
    unknown = [k for k in options.scale if rows and k not in rows[0].swept]
    if unknown:
        swept = ", ".join(rows[0].swept) or "none"
        raise ConfigError(f"report.scale names {', '.join(unknown)}, not swept here (swept: {swept})")
    points: dict[str, list[tuple[float, float]]] = {}
    for row in in_job_order(rows):
        flops = row.numbers.get("flops")
        if usable(row, options.value) and flops:
            label = arm_label(arm_swept(row, options.scale))
            points.setdefault(label, []).append((flops, row.numbers[options.value]))
    return points
