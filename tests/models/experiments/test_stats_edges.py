"""A/B statistics at their edges: empty and one-user arms, a constant pre-period, the CUPED
"no variance" threshold, degenerate arms answered without warnings, the defaults, every
returned field (the estimators themselves are in test_stats.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from models.experiments.stats import (
    Moments,
    benjamini_hochberg,
    compare,
    cuped,
    cuped_adjust,
    cuped_theta,
    moments,
    pool,
    srm,
    welch,
    welch_moments,
)

FIELDS = ("n", "mean_y", "var_y", "mean_x", "var_x", "cov_xy")


def assert_moments(got: Moments, want: Moments, rel: float = 1e-12) -> None:
    for name in FIELDS:
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=rel), name


def test_float32_input_is_computed_in_double_precision():
    rng = np.random.default_rng(1)
    x = rng.gamma(2, 3, 5001).astype(np.float32)
    y = (5000 + 0.7 * x + rng.normal(0, 1, 5001)).astype(np.float32)
    assert_moments(moments(y, x), moments(y.astype(float), x.astype(float)))
    want = cuped(y.astype(float), x.astype(float))
    assert np.allclose(cuped(y, x), want, rtol=0, atol=1e-10)


def test_one_user_has_nan_variances_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = moments([3.0], [2.0])
    assert (m.n, m.mean_y, m.mean_x) == (1, 3.0, 2.0)
    assert math.isnan(m.var_y) and math.isnan(m.var_x) and math.isnan(m.cov_xy)


def test_pool_skips_empty_arms_and_the_union_of_none_is_nan():
    one = moments([1.0, 2.0, 4.0], [0.0, 1.0, 5.0])
    empty = Moments(0.0, math.nan, math.nan, math.nan, math.nan, math.nan)
    assert_moments(pool([empty, one, empty]), one)
    got = pool([empty, Moments(0, 0.0, 0.0)])
    assert got.n == 0.0
    assert all(math.isnan(getattr(got, name)) for name in FIELDS[1:])


def test_pool_of_two_single_users_divides_by_one():
    got = pool([moments([2.0], [1.0]), moments([7.0], [3.0])])
    assert_moments(got, moments([2.0, 7.0], [1.0, 3.0]))
    assert (got.var_y, got.var_x, got.cov_xy) == pytest.approx((12.5, 2.0, 5.0))


def test_pool_of_arrays_of_experiments():
    """n per experiment (arrays): no arm is dropped; each experiment is pooled on its own."""
    rng = np.random.default_rng(2)
    y, x = rng.normal(size=(2, 2, 3, 40))
    parts = [Moments(*(np.array([getattr(moments(y[a, e], x[a, e]), f) for e in range(3)])
                       for f in FIELDS)) for a in range(2)]  # fmt: skip
    got = pool(parts)
    for e in range(3):
        want = moments(np.concatenate(y[:, e]), np.concatenate(x[:, e]))
        for name in FIELDS:
            assert getattr(got, name)[e] == pytest.approx(getattr(want, name), rel=1e-12)


# -- CUPED --------------------------------------------------------------------------------
def test_no_pre_period_means_no_theta():
    """Users without pre-period data have x = 0: var(x) = 0 = the threshold, theta 0."""
    arms = [moments([1.0, 2.0, 6.0], [0.0, 0.0, 0.0]), moments([3.0, 5.0], [0.0, 0.0])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cuped_theta(arms) == 0.0
    y = np.array([1.0, 2.0, 6.0, 3.0, 5.0])
    assert np.array_equal(cuped(y, np.zeros(5), [0, 0, 0, 1, 1]), y)


@pytest.mark.parametrize(("var_x", "varies"), [(2e-18, True), (0.5e-18, False)])
def test_theta_threshold_is_a_1e_12_relative_sd(var_x, varies):
    """Mean x 1000: var(x) must exceed (1e-12 * 1000)^2 = 1e-18 to count as variance."""
    arm = Moments(10.0, 1.0, 1.0, 1000.0, var_x, 3 * var_x)
    assert cuped_theta([arm]) == pytest.approx(3.0 if varies else 0.0, rel=1e-9)


@pytest.mark.parametrize(("scale", "theta"), [(1e-6, 2.0), (1e-9, 2.0)])
def test_a_small_real_variance_is_a_variance(scale, theta):
    """sd 1e-6 and 1e-9 around a mean of 1 are far above rounding: theta is the slope."""
    rng = np.random.default_rng(3)
    x = 1 + scale * rng.normal(size=200)
    y = 2 * x + rng.normal(0, 1e-3, 200) * scale
    assert cuped_theta([moments(y[:90], x[:90]), moments(y[90:], x[90:])]) == pytest.approx(
        theta, rel=1e-2
    )


def test_cuped_adjust_is_the_moments_of_the_adjusted_users():
    rng = np.random.default_rng(4)
    x = rng.gamma(2, 3, 300)
    y = 1 + 0.6 * x + rng.normal(0, 1, 300)
    theta, mean_x_all = 0.55, 4.25
    got = cuped_adjust(moments(y, x), theta, mean_x_all)
    want = moments(y - theta * (x - mean_x_all), x)
    assert_moments(got, want, rel=1e-9)


def test_cuped_without_arms_is_the_regression_on_everyone():
    rng = np.random.default_rng(5)
    x = rng.gamma(2, 3, 500)
    y = 2 + 0.8 * x + rng.normal(0, 2, 500)
    slope = np.polyfit(x, y, 1)[0]
    assert np.allclose(cuped(y, x), y - slope * (x - x.mean()), rtol=0, atol=1e-9)
    assert np.allclose(cuped(list(y), list(x)), cuped(y, x, np.zeros(500)), rtol=0, atol=1e-12)


# -- Welch and compare --------------------------------------------------------------------
def test_welch_returns_every_field():
    rng = np.random.default_rng(6)
    yc, yt = rng.gamma(2, 5, 800), rng.gamma(2, 5.4, 600)
    r = welch(yc, yt)
    assert r == welch(yc, yt, 0.95)  # the default confidence
    ref = stats.ttest_ind(yt, yc, equal_var=False)
    mc, mt = yc.mean(), yt.mean()
    se_rel = np.sqrt(yt.var(ddof=1) / 600 / mc**2 + mt**2 * yc.var(ddof=1) / 800 / mc**4)
    rel, crit = mt / mc - 1, stats.t.ppf(0.975, ref.df)
    mde = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * r["se"]
    want = {
        "control_mean": mc, "variant_mean": mt, "lift": mt - mc, "relative_lift": rel,
        "relative_ci_low": rel - crit * se_rel, "relative_ci_high": rel + crit * se_rel,
        "se": np.sqrt(yc.var(ddof=1) / 800 + yt.var(ddof=1) / 600), "df": ref.df,
        "t": ref.statistic, "p_value": ref.pvalue, "mde": mde, "relative_mde": mde / mc,
        "n_control": 800, "n_variant": 600,
        "ci_low": ref.confidence_interval(0.95).low, "ci_high": ref.confidence_interval(0.95).high,
    }  # fmt: skip
    assert set(r) == set(want)
    for key, value in want.items():
        assert r[key] == pytest.approx(value, rel=1e-9), key


def test_a_degenerate_arm_answers_nan_or_inf_without_warnings():
    """Control mean 0 (relative lift undefined), one-user arms, a zero raw variance: the
    numbers are NaN or infinite (None in the report), never a RuntimeWarning."""
    zero = Moments(5.0, 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = welch_moments(zero, Moments(5.0, 0.0, 2.0), 0.95)
        assert math.isnan(r["relative_lift"]) and math.isinf(r["relative_mde"])
        assert math.isinf(welch_moments(zero, Moments(5.0, 1.0, 2.0), 0.95)["relative_lift"])
        r = welch_moments(Moments(1.0, 2.0, 0.5), Moments(1.0, 3.0, 0.5), 0.95)
        assert math.isnan(r["p_value"])
        constant_y = Moments(4.0, 1.0, 0.0, 2.0, 1.0, 0.0)
        c = compare(constant_y, constant_y, 0.95, 0.5, 2.0, cuped=True)
        assert c["variance_reduction"] == -math.inf
        c = compare(Moments(4.0, 1.0, 0.0), Moments(4.0, 1.0, 0.0), 0.95, 0.0, 0.0, cuped=True)
        assert math.isnan(c["variance_reduction"])


def test_compare_defaults_to_no_cuped():
    control, variant = (
        Moments(100.0, 5.0, 4.0, 2.0, 1.0, 0.5),
        Moments(90.0, 5.5, 4.0, 2.1, 1.0, 0.4),
    )
    raw = welch_moments(control, variant, 0.9)
    assert compare(control, variant, 0.9) == {
        **raw,
        "cuped": False,
        "theta": None,
        "variance_reduction": 0.0,
    }
    # cuped with the default theta 0 changes nothing but the labels
    same = compare(control, variant, 0.9, cuped=True)
    assert same["cuped"] is True and same["theta"] == 0.0 and same["variance_reduction"] == 0.0
    assert (same["control_mean_raw"], same["variant_mean_raw"]) == (5.0, 5.5)
    # mean_x_all defaults to 0: the adjusted means are mean y - theta * mean x
    adj = compare(control, variant, 0.9, theta=0.5, cuped=True)
    assert adj["control_mean"] == pytest.approx(4.0) and adj["variant_mean"] == pytest.approx(4.45)
    assert adj["theta"] == 0.5
    assert (adj["control_mean_raw"], adj["variant_mean_raw"]) == (5.0, 5.5)


# -- SRM, BH, the decision ----------------------------------------------------------------
def test_srm_reports_counts_and_the_statistic():
    got = srm({"control": 520, "treatment": 480, "other": 9}, {"control": 0.5, "treatment": 0.5})
    ref = stats.chisquare([520, 480])
    assert got["observed"] == {"control": 520, "treatment": 480}
    assert got["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
    assert got["statistic"] == pytest.approx(1.6)  # (20^2 + 20^2) / 500
    none = srm({}, {"control": 0.5, "treatment": 0.5})
    assert none["statistic"] == 0.0 and none["p_value"] is None and not none["detected"]
    assert none["observed"] == {"control": 0, "treatment": 0}


def test_benjamini_hochberg_edges():
    assert benjamini_hochberg([0.03]).tolist() == [0.03]
    assert np.isnan(benjamini_hochberg([np.nan, 0.2])[0])
    q = benjamini_hochberg([0.02, None, 0.04])  # a missing p-value is NaN
    assert np.isnan(q[1]) and np.allclose(q[[0, 2]], [0.04, 0.04])
