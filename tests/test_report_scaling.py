"""Scaling fits: a known saturating power law is fitted back, crossings found, too few points explained."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from enhanced_tx.tracking.report import build_report
from enhanced_tx.tracking.report_options import ReportOptions
from enhanced_tx.tracking.report_plots_science import plot_science
from enhanced_tx.tracking.report_scaling import crossing, fit_arms, fit_power_law
from tests.test_report import make_job

COMPUTE = np.geomspace(1e12, 1e15, 6)


def law(c, e, a, alpha):
    return e + a * np.asarray(c) ** -alpha


def test_a_known_law_is_fitted_back_with_its_predictions():
    rng = np.random.default_rng(1)
    loss = law(COMPUTE, 1.8, 400.0, 0.2) * (1 + rng.normal(0, 2e-4, COMPUTE.size))
    fit = fit_power_law("a", COMPUTE, loss)
    assert fit.e == pytest.approx(1.8, rel=0.05)
    assert fit.alpha == pytest.approx(0.2, rel=0.05)
    assert fit.a == pytest.approx(400.0, rel=0.5)  # A and alpha trade off; the curve is what is pinned
    for c in (COMPUTE[-1] * 10, COMPUTE[-1] * 100):
        assert fit.predict(c) == pytest.approx(law(c, 1.8, 400.0, 0.2), rel=0.01)
        assert 0 < fit.predict_error(c) < 0.05
    assert all(0 < e < math.inf for e in fit.errors)


def test_two_laws_cross_where_they_should():
    first = fit_power_law("a", COMPUTE, law(COMPUTE, 2.0, 300.0, 0.2))
    second = fit_power_law("b", COMPUTE, law(COMPUTE, 1.0, 20000.0, 0.3))  # worse small, better large
    at = crossing(first, second, 1e10, 1e20)
    # reference: where the two true laws are equal
    grid = np.geomspace(1e10, 1e20, 200_001)
    gap = law(grid, 2.0, 300.0, 0.2) - law(grid, 1.0, 20000.0, 0.3)
    truth = grid[np.nonzero(np.diff(np.sign(gap)))[0][0]]
    assert at == pytest.approx(truth, rel=0.05)
    assert crossing(first, first, 1e10, 1e20) is None


def test_fewer_than_three_points_is_a_message_not_a_crash():
    result = fit_arms({"a": [(1e12, 3.0), (1e13, 2.5)], "b": [(c, float(law(c, 1.0, 500.0, 0.25))) for c in COMPUTE]})
    assert [f.arm for f in result.fits] == ["b"]
    assert result.skipped == ["arm a has 2 compute point(s); a fit needs at least 3 sizes or budgets"]


def test_the_report_fits_each_arm_over_sizes(tmp_path):
    num = 0
    for ff, (e, a, alpha) in {"gelu": (2.0, 300.0, 0.2), "swiglu": (1.9, 320.0, 0.2)}.items():
        for width, c in zip((64, 96, 128, 192), COMPUTE[:4], strict=True):
            folder = make_job(
                tmp_path, num, {"feedforward": ff, "model.d_model": width}, [9.0, float(law(c, e, a, alpha))]
            )
            lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            lines.append({"step": 5, "perf/flops": float(c)})  # the job's training compute
            (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
            num += 1
    options = ReportOptions(scale=("model.d_model",))
    report = build_report(tmp_path, plots=False, options=options)
    fits = {f.arm: f for f in report.science.scaling.fits}
    assert set(fits) == {"feedforward=gelu", "feedforward=swiglu"}
    assert fits["feedforward=gelu"].alpha == pytest.approx(0.2, rel=0.05)
    text = (tmp_path / "report.md").read_text()
    assert "### Scaling fits" in text and "extrapolations of the fitted law" in text
    assert "`feedforward=gelu` and `feedforward=swiglu` do not cross between C = 1e+12" in text  # same alpha
    assert plot_science(tmp_path, report.rows, report.science, options) == ["val_loss_scaling.png"]
    assert (tmp_path / "val_loss_scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_three_points_fit_exactly_and_the_report_says_it_has_no_errors(tmp_path):
    for num, (width, c) in enumerate(zip((64, 128, 192), COMPUTE[:3], strict=True)):
        folder = make_job(tmp_path, num, {"model.d_model": width}, [9.0, float(law(c, 2.0, 300.0, 0.2))])
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        lines.append({"step": 5, "perf/flops": float(c)})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = build_report(tmp_path, plots=False, options=ReportOptions(scale=("model.d_model",)))
    (fit,) = report.science.scaling.fits
    assert all(math.isnan(e) for e in fit.errors)  # 3 parameters through 3 points: no residual to estimate from
    assert "3 points for 3 parameters, an exact fit without standard errors" in (tmp_path / "report.md").read_text()
