"""A/B statistics: each estimator against scipy or an independent numpy computation,
and simulated error rates (`analyze` on warehouse data is in test_aggregate.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from models.experiments.stats import (
    Moments,
    benjamini_hochberg,
    compare,
    cuped,
    cuped_theta,
    moments,
    pool,
    srm,
    welch,
    welch_moments,
)

SIMS = 1000


def four_sigma(k: int, n: int, p: float) -> bool:
    return abs(k - n * p) < 4 * np.sqrt(n * p * (1 - p))


# -- Welch, CUPED, pooling ----------------------------------------------------------------
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_welch_equals_scipy(confidence):
    rng = np.random.default_rng(3)
    yc, yt = rng.lognormal(3, 1, 700), rng.lognormal(3.05, 1.2, 450)
    ours = welch(yc, yt, confidence)
    ref = stats.ttest_ind(yt, yc, equal_var=False)
    ci = ref.confidence_interval(confidence)
    assert abs(ours["p_value"] - ref.pvalue) < 1e-9
    assert abs(ours["ci_low"] - ci.low) < 1e-9 and abs(ours["ci_high"] - ci.high) < 1e-9
    assert ours["lift"] == pytest.approx(yt.mean() - yc.mean(), abs=1e-9)
    assert ours["relative_lift"] == pytest.approx(yt.mean() / yc.mean() - 1, abs=1e-12)


def test_relative_ci_is_the_delta_method():
    rng = np.random.default_rng(4)
    yc, yt = rng.gamma(2, 5, 3000), rng.gamma(2, 5.5, 2500)
    r = welch(yc, yt, 0.95)
    mc, mt = yc.mean(), yt.mean()
    se = np.sqrt(yt.var(ddof=1) / len(yt) / mc**2 + mt**2 * yc.var(ddof=1) / len(yc) / mc**4)
    assert r["relative_ci_high"] - r["relative_lift"] == pytest.approx(
        stats.t.ppf(0.975, r["df"]) * se, rel=1e-12
    )


def test_pool_equals_moments_of_the_union():
    rng = np.random.default_rng(5)
    parts = [rng.normal(size=(2, n)) * [[2], [3]] + [[1], [4]] for n in (10, 300, 1)]
    both = np.concatenate(parts, axis=1)
    p, ref = pool([moments(y, x) for x, y in parts]), moments(both[1], both[0])
    for name in ("n", "mean_y", "var_y", "mean_x", "var_x", "cov_xy"):
        assert getattr(p, name) == pytest.approx(getattr(ref, name), rel=1e-12)


def cuped_data(seed=6, n=(4000, 4200), lift=0.5):
    rng = np.random.default_rng(seed)
    arms = np.repeat([0, 1], n)
    x = rng.gamma(2, 3, len(arms))
    y = 2 + 0.8 * x + rng.normal(0, 2, len(arms)) + lift * arms
    return x, y, arms


def test_cuped_equals_an_independent_regression():
    x, y, arms = cuped_data()
    slope = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), y, rcond=None)[0][1]
    y_adj = y - slope * (x - x.mean())
    assert np.allclose(cuped(y, x, arms), y_adj, atol=1e-9)

    ctrl, var = moments(y[arms == 0], x[arms == 0]), moments(y[arms == 1], x[arms == 1])
    theta = cuped_theta([ctrl, var])
    assert theta == pytest.approx(slope, abs=1e-9)
    r = compare(ctrl, var, 0.95, theta, pool([ctrl, var]).mean_x, cuped=True)
    ref = stats.ttest_ind(y_adj[arms == 1], y_adj[arms == 0], equal_var=False)
    assert r["lift"] == pytest.approx(y_adj[arms == 1].mean() - y_adj[arms == 0].mean(), abs=1e-9)
    assert abs(r["p_value"] - ref.pvalue) < 1e-9
    assert abs(r["ci_low"] - ref.confidence_interval(0.95).low) < 1e-9
    raw_se = welch(y[arms == 0], y[arms == 1])["se"]
    assert r["variance_reduction"] == pytest.approx(1 - r["se"] ** 2 / raw_se**2)
    rho2 = np.corrcoef(x, y)[0, 1] ** 2
    assert r["variance_reduction"] == pytest.approx(rho2, abs=0.05) and rho2 > 0.5


def test_cuped_without_correlation_changes_little():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(2, 5000))
    r = compare(moments(y[:2500], x[:2500]), moments(y[2500:], x[2500:]), 0.95,
                cuped_theta([moments(y, x)]), x.mean(), cuped=True)  # fmt: skip
    assert abs(r["variance_reduction"]) < 0.01


# -- SRM and BH ---------------------------------------------------------------------------
def test_srm_detects_a_52_48_split_and_passes_a_fair_one():
    weights = {"control": 0.5, "treatment": 0.5}
    planted = srm({"control": 52_000, "treatment": 48_000}, weights)
    assert planted["detected"] and planted["p_value"] < 1e-20
    assert planted["expected"] == {"control": 50_000.0, "treatment": 50_000.0}
    fair_n = int(np.random.default_rng(8).binomial(100_000, 0.5))
    fair = srm({"control": fair_n, "treatment": 100_000 - fair_n}, weights)
    assert not fair["detected"]
    ref = stats.chisquare([fair_n, 100_000 - fair_n])
    assert fair["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    three = srm({"a": 200, "b": 300, "c": 500}, {"a": 0.2, "b": 0.3, "c": 0.5})
    assert three["p_value"] == pytest.approx(1.0) and not three["detected"]
    assert srm({}, weights)["p_value"] is None


SRM_ALPHA = 0.001  # docs/contract.md and the README: `detected` when p < 0.001


@pytest.mark.parametrize(
    ("control", "detected"),
    [(50_510, False), (50_530, True)],  # p = 0.00126 and 0.00080 of 100,000 users
)
def test_srm_threshold_is_0_001(control, detected):
    """Counts whose p-value sits just above and just below 0.001: a looser or stricter
    alpha (0.01, 0.05, 1e-4) flips one of them."""
    counts = [control, 100_000 - control]
    p = stats.chisquare(counts).pvalue
    assert SRM_ALPHA / 1.5 < p < SRM_ALPHA * 1.5
    assert bool(p < SRM_ALPHA) is detected
    got = srm(dict(zip(("control", "treatment"), counts, strict=True)),
              {"control": 0.5, "treatment": 0.5})  # fmt: skip
    assert got["p_value"] == pytest.approx(p, rel=1e-9)
    assert got["detected"] is detected


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> p*5/rank 0.025, 0.025, 0.05, 0.05, 0.5
    assert np.allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    assert np.allclose(benjamini_hochberg(p), stats.false_discovery_control(p))
    q = benjamini_hochberg([0.02, np.nan, 0.04])
    assert np.isnan(q[1]) and np.allclose(q[[0, 2]], [0.04, 0.04])
    assert benjamini_hochberg([]).shape == (0,)


# -- simulations through the moment functions ------------------------------------------
def simulate(rng, lift: float, n: int = 400):
    """SIMS experiments at once: skewed outcomes y, a correlated pre-period x."""
    activity = rng.gamma(1.5, 1.0, size=(2, SIMS, n))
    x = rng.poisson(3 * activity).astype(float)
    y = rng.poisson(3 * activity).astype(float) * rng.lognormal(0, 0.3, size=activity.shape)
    y[1] += lift
    ctrl, var = moments(y[0], x[0], axis=1), moments(y[1], x[1], axis=1)
    theta = cuped_theta([ctrl, var])
    return ctrl, var, theta, pool([ctrl, var]).mean_x


@pytest.mark.parametrize("use_cuped", [False, True])
def test_aa_false_positive_rate(use_cuped):
    ctrl, var, theta, mx = simulate(np.random.default_rng(9), lift=0.0)
    r = compare(ctrl, var, 0.95, theta, mx, cuped=use_cuped)
    assert four_sigma(int((r["p_value"] < 0.05).sum()), SIMS, 0.05)
    if use_cuped:
        assert np.median(r["variance_reduction"]) > 0.2


@pytest.mark.parametrize("use_cuped", [False, True])
def test_ci_coverage_with_a_planted_lift(use_cuped):
    ctrl, var, theta, mx = simulate(np.random.default_rng(10), lift=0.7)
    r = compare(ctrl, var, 0.9, theta, mx, cuped=use_cuped)
    covered = int(((r["ci_low"] <= 0.7) & (r["ci_high"] >= 0.7)).sum())
    assert four_sigma(covered, SIMS, 0.9)


def test_mde_has_the_promised_power():
    rng = np.random.default_rng(11)
    n, sd = 300, 2.0
    truth = Moments(n, 0.0, sd**2)
    mde = welch_moments(truth, truth, 0.95)["mde"]
    assert mde == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd * np.sqrt(2 / n))
    yc = rng.normal(0, sd, (SIMS, n))
    yt = rng.normal(mde, sd, (SIMS, n))
    p = welch_moments(moments(yc, axis=1), moments(yt, axis=1), 0.95)["p_value"]
    assert four_sigma(int((p < 0.05).sum()), SIMS, 0.8)
