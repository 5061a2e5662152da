"""Is arm B better than arm A? Confidence intervals and Welch t-tests across seed replicates (scipy.stats).

Each arm is the set of seed replicates of one configuration; its number is the final monitored value of
each seed. An arm gets mean, sample std, n and a Student-t 95% interval of the mean; each arm is compared
with a baseline arm by Welch's unequal-variance t-test (`scipy.stats.ttest_ind(equal_var=False)`), whose
95% interval of the difference of means decides "better", "worse" or "not distinguishable with n seeds".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from enhanced_tx.errors import ConfigError

CONFIDENCE = 0.95
MAX_SEEDS = 10_000  # "seeds needed" beyond this is reported as unreachable


@dataclass(frozen=True)
class ArmStats:
    """One arm's values across seeds and the interval of their mean."""

    label: str
    values: tuple[float, ...]
    swept: Mapping[str, str]  # the arm's swept key -> value (without the seed)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """Student-t interval of the mean; NaN with fewer than two seeds."""
        if self.n < 2:
            return (math.nan, math.nan)
        if self.std == 0.0:
            return (self.mean, self.mean)
        low, high = stats.t.interval(confidence, self.n - 1, loc=self.mean, scale=self.std / math.sqrt(self.n))
        return (float(low), float(high))


@dataclass(frozen=True)
class Comparison:
    """An arm against the baseline: difference of means (arm - baseline), its interval, Welch's p-value."""

    arm: ArmStats
    baseline: ArmStats
    difference: float
    low: float
    high: float
    p_value: float
    seeds_needed: int | None  # seeds per arm that would resolve this difference at the observed variance

    @property
    def resolved(self) -> bool:
        """The interval of the difference excludes 0 (False when it cannot be computed)."""
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    def verdict(self, mode: str = "min") -> str:
        if self.arm.n < 2 or self.baseline.n < 2:
            return "needs 2+ seeds per arm"
        if not self.resolved:
            n = min(self.arm.n, self.baseline.n)
            needed = f"; ~{self.seeds_needed} seeds would resolve it" if self.seeds_needed else ""
            return f"not distinguishable with {n} seeds{needed}"
        lower_is_better = mode == "min"
        return "better" if (self.difference < 0) == lower_is_better else "worse"


def compare(arm: ArmStats, baseline: ArmStats, confidence: float = CONFIDENCE) -> Comparison:
    """Welch's t-test of ``arm`` against ``baseline``, with the interval of the difference of means."""
    difference = arm.mean - baseline.mean
    if arm.n < 2 or baseline.n < 2:
        return Comparison(arm, baseline, difference, math.nan, math.nan, math.nan, None)
    if arm.std == 0.0 and baseline.std == 0.0:  # no spread at all: the t statistic is undefined
        p_value = 1.0 if difference == 0.0 else 0.0
        return Comparison(arm, baseline, difference, difference, difference, p_value, None)
    result = stats.ttest_ind(arm.values, baseline.values, equal_var=False)
    interval = result.confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    needed = None if (low > 0 or high < 0) else seeds_to_resolve(difference, arm.std, baseline.std, confidence)
    return Comparison(arm, baseline, difference, low, high, float(result.pvalue), needed)


def seeds_to_resolve(difference: float, std_a: float, std_b: float, confidence: float = CONFIDENCE) -> int | None:
    """The fewest seeds per arm whose Welch interval would exclude 0, were the means and stds as observed.

    Solves ``t(df_n) * sqrt((s_a^2 + s_b^2) / n) < |difference|`` with the Welch-Satterthwaite ``df_n``;
    None when the difference is 0 or more than ``MAX_SEEDS`` seeds would be needed.
    """
    variance = std_a**2 + std_b**2
    if difference == 0.0 or not math.isfinite(variance):
        return None
    quartic = std_a**4 + std_b**4
    for n in range(2, MAX_SEEDS + 1):
        df = (n - 1) * variance**2 / quartic if quartic > 0 else math.inf
        if stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(variance / n) < abs(difference):
            return n
    return None


def pick_baseline(arms: Sequence[ArmStats], spec: str | None) -> ArmStats:
    """The first arm, or the one arm matching ``KEY=VALUE[,KEY=VALUE...]`` (one-line error otherwise)."""
    if not arms:
        raise ConfigError("no arms to compare: the sweep has no finished job with the metric")
    if not spec:
        return arms[0]
    wanted = dict(_pair(item) for item in spec.split(","))
    matches = [a for a in arms if all(a.swept.get(k) == v for k, v in wanted.items())]
    if len(matches) != 1:
        known = "; ".join(a.label for a in arms)
        found = "no arm" if not matches else f"{len(matches)} arms"
        raise ConfigError(
            f"report.baseline={spec} matches {found}; name one arm with KEY=VALUE[,KEY=VALUE] from: {known}"
        )
    return matches[0]


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"report.baseline={item!r} is not KEY=VALUE; e.g. report.baseline=norm=layernorm")
    return key.strip(), value.strip()
