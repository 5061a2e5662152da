"""Does it hold at scale? A saturating power law per arm: ``L(C) = E + A * C**-alpha`` (scipy.optimize).

C is the training compute of a job (its last ``perf/flops``), L its final monitored value. The fit runs on
C / C_max so the three parameters are of similar size; A is reported for C in FLOPs. Predictions beyond
the largest C of the sweep are extrapolations and are labelled so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

MIN_POINTS = 3  # distinct compute values an arm needs for a 3-parameter fit
PREDICT_AT = (10.0, 100.0)  # multiples of the sweep's largest compute


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted ``E + A * C**-alpha`` with one standard error per parameter (NaN where not estimable)."""

    arm: str
    compute: tuple[float, ...]
    loss: tuple[float, ...]
    scale: float  # C_max of the fit; the fit uses x = C / scale
    e: float
    a_scaled: float  # A for x = C / scale
    alpha: float
    covariance: np.ndarray  # of (e, a_scaled, alpha)

    @property
    def a(self) -> float:
        """A for C in FLOPs."""
        return self.a_scaled * self.scale**self.alpha

    @property
    def errors(self) -> tuple[float, float, float]:
        e, a_scaled, alpha = (float(math.sqrt(v)) if v >= 0 else math.nan for v in np.diag(self.covariance))
        return e, a_scaled * self.scale**self.alpha, alpha

    def predict(self, compute: float) -> float:
        return self.e + self.a_scaled * (compute / self.scale) ** -self.alpha

    def predict_error(self, compute: float) -> float:
        """Standard error of the prediction by the delta method (NaN when the covariance is unknown)."""
        x = compute / self.scale
        gradient = np.array([1.0, x**-self.alpha, -self.a_scaled * x**-self.alpha * math.log(x)])
        variance = float(gradient @ self.covariance @ gradient)
        return math.sqrt(variance) if variance >= 0 else math.nan


@dataclass(frozen=True)
class ScalingResult:
    fits: list[PowerLawFit]
    skipped: list[str]  # one line per arm that could not be fitted, saying why
    largest_compute: float


def fit_power_law(arm: str, compute: Sequence[float], loss: Sequence[float]) -> PowerLawFit:
    """Least-squares fit of one arm's points; raises ValueError with fewer than `MIN_POINTS` compute values."""
    c, y = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    distinct = len(set(c.tolist()))
    if distinct < MIN_POINTS:
        raise ValueError(
            f"arm {arm} has {distinct} compute point(s); a fit needs at least {MIN_POINTS} sizes or budgets"
        )
    scale = float(c.max())
    spread = float(y.max() - y.min()) or 1e-3
    p0 = (float(y.min()) - 0.5 * spread, spread, 0.5)
    bounds = ([-np.inf, 0.0, 1e-4], [float(y.min()), np.inf, 5.0])  # E below every point, A >= 0, alpha > 0
    with warnings.catch_warnings():  # 3 points, 3 parameters: exact fit, covariance not estimable (inf)
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, covariance = optimize.curve_fit(_law, c / scale, y, p0=p0, bounds=bounds, maxfev=20_000)
    covariance = np.where(np.isfinite(covariance), covariance, np.nan)
    return PowerLawFit(arm, tuple(c.tolist()), tuple(y.tolist()), scale, *map(float, params), covariance)


def fit_arms(points: dict[str, list[tuple[float, float]]]) -> ScalingResult:
    """Fit every arm's ``(compute, loss)`` points; arms with too few points are listed, not fitted."""
    fits, skipped = [], []
    for arm, pairs in points.items():
        try:
            fits.append(fit_power_law(arm, [c for c, _ in pairs], [y for _, y in pairs]))
        except (ValueError, RuntimeError) as e:  # RuntimeError: curve_fit did not converge
            skipped.append(str(e) if isinstance(e, ValueError) else f"arm {arm}: the fit did not converge ({e})")
    largest = max((c for pairs in points.values() for c, _ in pairs), default=math.nan)
    return ScalingResult(fits, skipped, largest)


def crossing(first: PowerLawFit, second: PowerLawFit, low: float, high: float) -> float | None:
    """The smallest compute in ``[low, high]`` where the two fitted curves cross, or None."""
    grid = np.geomspace(low, high, 400)
    gap = np.array([first.predict(c) - second.predict(c) for c in grid])
    changes = np.nonzero(np.sign(gap[:-1]) * np.sign(gap[1:]) < 0)[0]
    if not len(changes):
        return None
    i = int(changes[0])
    return float(optimize.brentq(lambda c: first.predict(c) - second.predict(c), grid[i], grid[i + 1]))


def _law(x: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
    return e + a * x**-alpha
