"""The confidence sequence of models/experiments/sequential.py against the published
formula (Waudby-Smith et al. 2024, Theorem 2.2) computed independently here at 50 digits
(`decimal`), against a numerical minimisation of its width, and its p-value's duality."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
from scipy import optimize

from models.experiments.sequential import always_valid_p, best_rho2, margin, sequential_moments
from models.experiments.stats import Moments

getcontext().prec = 50


def _rho2_reference(alpha: float, t_opt: float) -> Decimal:
    """u - ln u = 1 - 2 ln alpha for u > 1 by Newton at 50 digits; rho2 = (u - 1) / t_opt."""
    a = Decimal(repr(alpha))
    c = 1 - 2 * a.ln()
    u = c + c.ln()  # a start above the root
    for _ in range(100):
        u -= (u - u.ln() - c) / (1 - 1 / u)
    return (u - 1) / Decimal(repr(t_opt))


def _margin_reference(t: float, rho2: Decimal, alpha: float) -> Decimal:
    t_, a = Decimal(repr(t)), Decimal(repr(alpha))
    u = t_ * rho2 + 1
    return (2 * u / (t_ * t_ * rho2) * (u.sqrt() / a).ln()).sqrt()


@pytest.mark.parametrize(("alpha", "t_opt"), [(0.05, 5000), (0.1, 400), (0.01, 2_000_000)])
def test_rho2_is_the_closed_form_and_minimises_the_width_at_t_opt(alpha, t_opt):
    got = best_rho2(alpha, t_opt)
    assert got == pytest.approx(float(_rho2_reference(alpha, t_opt)), rel=1e-12)
    found = optimize.minimize_scalar(lambda r: margin(t_opt, r, alpha), bounds=(1e-12, 1.0),
                                     method="bounded", options={"xatol": 1e-14})  # fmt: skip
    assert got == pytest.approx(found.x, rel=1e-4)  # the optimiser's own precision
    assert margin(t_opt, got, alpha) <= margin(t_opt, found.x, alpha) + 1e-15


@pytest.mark.parametrize(("t", "alpha"), [(1.0, 0.05), (1234.0, 0.05), (8e6, 0.1)])
def test_the_margin_is_the_published_formula_to_1e_9(t, alpha):
    rho2 = best_rho2(alpha, 5000)
    want = _margin_reference(t, Decimal(repr(rho2)), alpha)
    assert float(margin(t, rho2, alpha)) == pytest.approx(float(want), rel=1e-9)


def test_the_interval_on_fixed_moments_to_1e_9():
    control = Moments(1200.0, 10.0, 16.0)
    variant = Moments(800.0, 10.5, 25.0)
    r = sequential_moments(control, variant, 0.95, 5000)
    rho2 = _rho2_reference(0.05, 5000)
    t = 2000.0
    se = (Decimal(16) / 1200 + Decimal(25) / 800).sqrt()
    half = se * Decimal(t).sqrt() * _margin_reference(t, rho2, 0.05)
    assert r["lift"] == pytest.approx(0.5, abs=1e-15)
    assert r["ci_low"] == pytest.approx(float(Decimal("0.5") - half), rel=1e-9)
    assert r["ci_high"] == pytest.approx(float(Decimal("0.5") + half), rel=1e-9)
    mc, mt, qc, qt = Decimal(10), Decimal("10.5"), Decimal(16) / 1200, Decimal(25) / 800
    se_rel = (qt / mc**2 + mt**2 * qc / mc**4).sqrt()
    half_rel = se_rel * Decimal(t).sqrt() * _margin_reference(t, rho2, 0.05)
    assert r["relative_ci_low"] == pytest.approx(float(Decimal("0.05") - half_rel), rel=1e-9)
    # wider than Welch's 95% interval at this n: the price of looking every day
    assert r["ci_high"] - r["ci_low"] > 2 * 1.96 * float(se)


def test_p_below_alpha_exactly_when_the_sequence_excludes_zero():
    rho2, t, alpha = best_rho2(0.05, 5000), 3000.0, 0.05
    z_edge = math.sqrt(t) * float(margin(t, rho2, alpha))  # |lift| / se on the boundary
    for z, excluded in ((z_edge * (1 + 1e-9), True), (z_edge * (1 - 1e-9), False)):
        assert (always_valid_p(z, t, rho2) < alpha) == excluded
        assert (always_valid_p(-z, t, rho2) < alpha) == excluded
    assert always_valid_p(0.0, t, rho2) == 1.0
    assert float(always_valid_p(z_edge, t, rho2)) == pytest.approx(alpha, rel=1e-9)


def test_arrays_of_experiments_and_bad_tuning():
    c = Moments(np.array([100.0, 1000.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    v = Moments(np.array([100.0, 1000.0]), np.array([1.2, 1.2]), np.array([1.0, 1.0]))
    r = sequential_moments(c, v, 0.95, 2000)
    assert r["ci_high"][1] - r["ci_low"][1] < r["ci_high"][0] - r["ci_low"][0]  # narrows
    with pytest.raises(ValueError, match="t_opt > 0"):
        best_rho2(0.05, 0)
    with pytest.raises(ValueError, match="0 < alpha < 1"):
        best_rho2(1.0, 100)


def test_every_field_on_fixed_moments():
    from scipy import stats

    c, v = Moments(1200, 10.0, 16.0), Moments(800, 10.5, 25.0)  # int counts, as in arrays
    r = sequential_moments(c, v, 0.95, 5000)
    t, se = 2000.0, math.sqrt(16 / 1200 + 25 / 800)
    m = math.sqrt(t) * float(margin(t, best_rho2(0.05, 5000), 0.05))
    se_rel = math.sqrt(25 / 800 / 100 + 10.5**2 * 16 / 1200 / 10**4)
    mde = (m + stats.norm.ppf(0.8)) * se
    want = {"control_mean": 10.0, "variant_mean": 10.5, "lift": 0.5, "relative_lift": 0.05,
            "ci_low": 0.5 - m * se, "ci_high": 0.5 + m * se,
            "relative_ci_low": 0.05 - m * se_rel, "relative_ci_high": 0.05 + m * se_rel,
            "se": se, "df": math.inf, "t": 0.5 / se, "mde": mde, "relative_mde": mde / 10.0,
            "n_control": 1200.0, "n_variant": 800.0,
            "p_value": float(always_valid_p(0.5 / se, t, best_rho2(0.05, 5000)))}  # fmt: skip
    assert set(r) == set(want)
    for k, x in want.items():
        assert float(r[k]) == pytest.approx(x, rel=1e-12), k


def test_degenerate_inputs_answer_nan_or_inf_without_warnings():
    import warnings

    rho2 = best_rho2(0.05, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = sequential_moments(Moments(0, np.nan, np.nan), Moments(0, np.nan, np.nan),
                                   0.95, 100)  # fmt: skip
        assert np.isnan(empty["lift"]) and np.isnan(empty["ci_low"])
        one = sequential_moments(Moments(1, 2.0, np.nan), Moments(0, 0.0, 0.0), 0.95, 100)
        assert np.isnan(one["se"])
        assert np.isinf(margin(0.0, rho2, 0.05))
        assert np.isnan(always_valid_p(np.inf, 0.0, rho2))


def test_the_tuning_and_level_bounds():
    assert best_rho2(0.05, 1) > best_rho2(0.05, 2) > 0  # t_opt = 1 is a size
    assert best_rho2(0.05, 0.5) > 0
    with pytest.raises(ValueError):
        best_rho2(0.0, 100)
    with pytest.raises(ValueError):
        best_rho2(0.05, -1)


def test_counts_past_int64_squares_and_a_zero_control_mean():
    import warnings

    rho2 = best_rho2(0.05, 100)
    assert float(margin(4_000_000_000, rho2, 0.05)) == float(margin(4e9, rho2, 0.05))
    r = sequential_moments(Moments(np.array([10, 10]), np.zeros(2), np.ones(2)),
                           Moments(np.array([10, 10]), np.ones(2), np.ones(2)), 0.95, 100)  # fmt: skip
    assert r["df"].shape == (2,) and np.isinf(r["df"]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zero = sequential_moments(Moments(10, 0.0, 1.0), Moments(10, 1.0, 1.0), 0.95, 100)
        assert np.isinf(zero["relative_lift"]) and np.isfinite(zero["lift"])
        none = sequential_moments(Moments(0, 1.0, 1.0), Moments(10, 1.0, 1.0), 0.95, 100)
        assert np.isinf(none["se"])  # a finite variance over no users
