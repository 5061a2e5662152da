"""Seed statistics of the report on synthetic sweeps: intervals and Welch p-values against textbook formulas
(computed with scipy's t distribution), the verdicts, the baseline choice and tuned arms."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

from enhanced_tx.errors import ConfigError
from enhanced_tx.tracking.report import build_report, main
from enhanced_tx.tracking.report_options import ReportOptions
from enhanced_tx.tracking.report_stats import ArmStats, compare, pick_baseline, seeds_to_resolve
from tests.test_report import make_job


def make_sweep(root, values: dict[tuple, float], keys: tuple[str, ...]) -> None:
    """One job per ``values`` item: overrides ``keys`` = the item's key, final val/loss = its value."""
    for num, (key, final) in enumerate(values.items()):
        make_job(root, num, dict(zip(keys, key, strict=True)), [final + 0.5, final + 0.2, final])


def stats_csv(root) -> dict[str, dict[str, str]]:
    with (root / "report_stats.csv").open(newline="") as f:
        return {row["arm"]: row for row in csv.DictReader(f)}


def welch_reference(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's test by the textbook: (p, low, high) of mean(a) - mean(b), 95%."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    d = np.mean(a) - np.mean(b)
    half = stats.t.ppf(0.975, df) * se
    return 2 * stats.t.sf(abs(d) / se, df), d - half, d + half


def test_intervals_and_p_values_match_the_reference(tmp_path):
    a, b = [2.0, 2.2, 2.4], [1.5, 1.62, 1.81, 1.7]
    values = {("a", s): v for s, v in enumerate(a)} | {("b", s): v for s, v in enumerate(b)}
    make_sweep(tmp_path, values, ("norm", "seed"))
    build_report(tmp_path, plots=False)
    rows = stats_csv(tmp_path)
    arm_a, arm_b = rows["norm=a"], rows["norm=b"]
    assert arm_a["verdict"] == "baseline" and int(arm_b["n"]) == 4
    half = stats.t.ppf(0.975, 3) * np.std(b, ddof=1) / 2
    assert float(arm_b["mean"]) == pytest.approx(np.mean(b))
    assert float(arm_b["std"]) == pytest.approx(np.std(b, ddof=1))
    assert (float(arm_b["ci_low"]), float(arm_b["ci_high"])) == pytest.approx((np.mean(b) - half, np.mean(b) + half))
    p, low, high = welch_reference(b, a)
    assert float(arm_b["p_welch"]) == pytest.approx(p, rel=1e-9)
    assert (float(arm_b["diff_low"]), float(arm_b["diff_high"])) == pytest.approx((low, high), rel=1e-9)
    assert arm_b["verdict"] == "better" and high < 0
    text = (tmp_path / "report.md").read_text()
    assert "## Conclusions" in text and "| `norm=b` | 4 |" in text and "better" in text


def test_arms_from_the_same_distribution_are_not_distinguishable(tmp_path):
    rng = np.random.default_rng(0)
    draws = rng.normal(3.0, 0.05, size=(2, 4))
    values = {(arm, s): float(draws[i, s]) for i, arm in enumerate("ab") for s in range(4)}
    make_sweep(tmp_path, values, ("norm", "seed"))
    report = build_report(tmp_path, plots=False)
    (comparison,) = report.science.comparisons
    assert comparison.low < 0 < comparison.high
    assert comparison.verdict().startswith("not distinguishable with 4 seeds")
    needed = comparison.seeds_needed
    assert needed is not None and needed > 4
    # at the observed stds, `needed` seeds per arm is the first count whose interval excludes 0
    sa, sb, d = comparison.arm.std, comparison.baseline.std, abs(comparison.difference)

    def half_width(n: int) -> float:
        df = (n - 1) * (sa**2 + sb**2) ** 2 / (sa**4 + sb**4)
        return stats.t.ppf(0.975, df) * math.sqrt((sa**2 + sb**2) / n)

    assert half_width(needed) < d <= half_width(needed - 1)
    assert f"~{needed} seeds would resolve it" in (tmp_path / "report.md").read_text()


def test_a_baseline_by_key_and_value_and_a_clear_error_for_a_wrong_one(tmp_path):
    values = {(arm, s): v + s * 0.01 for arm, v in (("a", 2.0), ("b", 2.5), ("c", 3.0)) for s in range(2)}
    make_sweep(tmp_path, values, ("norm", "seed"))
    report = build_report(tmp_path, plots=False, options=ReportOptions(baseline="norm=c"))
    assert report.science.baseline.label == "norm=c"
    assert {c.arm.label: c.verdict() for c in report.science.comparisons} == {"norm=a": "better", "norm=b": "better"}
    with pytest.raises(ConfigError, match=r"report.baseline=norm=z matches no arm.*norm=a; norm=b; norm=c"):
        build_report(tmp_path, plots=False, options=ReportOptions(baseline="norm=z"))
    assert main([str(tmp_path), "report.baseline=nonsense", "--no-plots"]) == 1
    assert main([str(tmp_path), "report.colour=red", "--no-plots"]) == 1


def test_one_seed_per_arm_has_no_interval_but_says_so():
    lone, other = ArmStats("a", (2.0,), {}), ArmStats("b", (1.0, 1.1), {})
    assert all(math.isnan(x) for x in lone.interval())
    assert compare(other, lone).verdict() == "needs 2+ seeds per arm"
    assert seeds_to_resolve(0.0, 0.1, 0.1) is None
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        pick_baseline([lone, other], "norm")


def test_b_better_only_at_its_own_best_lr_is_reported_better(tmp_path):
    # A is best at the low lr (the grid's edge); B loses there but wins at its own best, the middle lr
    means = {("A", "1e-3"): 2.0, ("A", "3e-3"): 2.2, ("A", "1e-2"): 2.6}
    means |= {("B", "1e-3"): 2.4, ("B", "3e-3"): 1.8, ("B", "1e-2"): 2.3}
    noise = (-0.01, 0.0, 0.012)
    values = {(arm, lr, s): m + noise[s] for (arm, lr), m in means.items() for s in range(3)}
    make_sweep(tmp_path, values, ("model.arch", "optimizer.lr", "seed"))
    assert main([str(tmp_path), "report.tune=optimizer.lr", "--no-plots"]) == 0
    rows = stats_csv(tmp_path)
    assert rows["model.arch=A,optimizer.lr=0.001"]["verdict"] == "baseline"
    assert rows["model.arch=B,optimizer.lr=0.003"]["verdict"] == "better"
    text = (tmp_path / "report.md").read_text()
    assert "arm `model.arch=A` is best at the edge of the grid (optimizer.lr=0.001)" in text
    assert "arm `model.arch=B` is best at the edge" not in text
    # at the shared lr A suits, B would have looked worse: the untuned comparison at 1e-3 says so
    shared = build_report(tmp_path, plots=False, options=ReportOptions())
    at_shared = {c.arm.label: c.verdict() for c in shared.science.comparisons}
    assert at_shared["model.arch=B,optimizer.lr=0.001"] == "worse"


def test_tuning_a_key_that_is_not_swept_is_one_line(tmp_path):
    make_sweep(tmp_path, {("a", 0): 1.0, ("b", 0): 2.0}, ("norm", "seed"))
    with pytest.raises(ConfigError, match="report.tune=optimizer.lr is not a swept key"):
        build_report(tmp_path, plots=False, options=ReportOptions(tune="optimizer.lr"))
