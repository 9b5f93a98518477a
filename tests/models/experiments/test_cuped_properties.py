"""CUPED moves each arm's mean by theta times its pre-period offset from the pooled pre mean,
and nothing else: on any data the adjusted lift is the raw lift minus theta times the
difference of the arms' pre means (an identity), the grand mean is unchanged, and when the
pre-period is independent of assignment the adjusted lift is, averaged over experiments,
the raw lift (no bias), only less noisy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.experiments.stats import compare, cuped, cuped_adjust, cuped_theta, moments, pool

# metric values: 0 or 1e-6 to 1e6 in size (1e-158 makes theta**2 overflow, a float's limit)
values = st.floats(-1e6, 1e6).filter(lambda v: v == 0 or abs(v) >= 1e-6)


@st.composite
def experiment(draw):
    """Per-user outcome y, pre-period x and arm (0 = control, 1 = variant), each arm >= 2."""
    n_c, n_t = draw(st.integers(2, 40)), draw(st.integers(2, 40))
    y = draw(arrays(np.float64, n_c + n_t, elements=values))
    x = draw(arrays(np.float64, n_c + n_t, elements=values))
    arms = np.array(draw(st.permutations([0] * n_c + [1] * n_t)))  # arms interleaved
    return y, x, arms


def close(a, b, scale) -> bool:
    return abs(a - b) <= 1e-9 * scale


@settings(max_examples=200, deadline=None)
@given(data=experiment())
def test_cuped_shifts_each_arm_by_theta_times_its_pre_offset(data):
    y, x, arms = data
    ctrl, var = moments(y[arms == 0], x[arms == 0]), moments(y[arms == 1], x[arms == 1])
    theta = float(cuped_theta([ctrl, var]))
    adjusted = cuped(y, x, arms)
    pre = x.mean()
    scale = np.abs(y).max() + abs(theta) * np.abs(x).max() + 1.0  # rounding of theta * x
    for arm in (0, 1):
        y_a, x_a = y[arms == arm], x[arms == arm]
        shift = -theta * (x_a.mean() - pre)
        assert close(adjusted[arms == arm].mean(), y_a.mean() + shift, scale)
    assert close(adjusted.mean(), y.mean(), scale)  # the grand mean is kept

    raw_lift = y[arms == 1].mean() - y[arms == 0].mean()
    adj_lift = adjusted[arms == 1].mean() - adjusted[arms == 0].mean()
    pre_diff = x[arms == 1].mean() - x[arms == 0].mean()
    assert close(adj_lift - raw_lift, -theta * pre_diff, scale)

    # the moment path the report uses says the same
    with np.errstate(all="ignore"):  # the relative lift of a control mean near 0 overflows
        r = compare(ctrl, var, 0.95, theta, pool([ctrl, var]).mean_x, cuped=True)
    assert close(r["lift"], adj_lift, scale)
    raw_moment_lift = r["variant_mean_raw"] - r["control_mean_raw"]
    assert close(r["lift"] - raw_moment_lift, -theta * pre_diff, scale)
    for arm, m in ((0, ctrl), (1, var)):
        assert close(cuped_adjust(m, theta, pre).mean_y, adjusted[arms == arm].mean(), scale)


@settings(max_examples=200, deadline=None)
@given(data=experiment(), pre=values)
@example(data=(np.array([0.0, 1, 1, 1, 1]), None, np.array([0, 0, 1, 1, 1])), pre=0.95)
def test_without_pre_period_variance_cuped_changes_nothing(data, pre):
    """A pre-period value every user shares explains nothing: theta is 0 and the adjusted
    outcomes, means and lift are the raw ones (also when the arms' means of that constant
    differ in the last bit, as the mean of 0.95 over 2 and 3 users does)."""
    y, _, arms = data
    x = np.full(len(y), pre)
    ctrl, var = moments(y[arms == 0], x[arms == 0]), moments(y[arms == 1], x[arms == 1])
    assert cuped_theta([ctrl, var]) == 0.0
    assert np.array_equal(cuped(y, x, arms), y)
    theta, mean_x = cuped_theta([ctrl, var]), pool([ctrl, var]).mean_x
    with np.errstate(all="ignore"):
        r = compare(ctrl, var, 0.95, theta, mean_x, cuped=True)
    assert r["lift"] == r["variant_mean_raw"] - r["control_mean_raw"]


SIMS, N = 2000, 100


def simulated(seed: int, lift: float):
    """SIMS experiments: x ~ gamma independent of the arm, y linear in x plus the lift."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 3.0, size=(SIMS, 2 * N))
    arms = np.repeat([0, 1], N)
    y = 5.0 + 0.8 * x + rng.normal(0, 2.0, size=x.shape) + lift * arms
    return y, x, arms


@pytest.mark.parametrize("lift", [0.0, 0.5])
def test_cuped_lift_is_unbiased_for_the_raw_lift(lift):
    y, x, arms = simulated(seed=12 + int(lift * 10), lift=lift)
    raw = np.empty(SIMS)
    adj = np.empty(SIMS)
    adj_control = np.empty(SIMS)
    for i in range(SIMS):
        a = cuped(y[i], x[i], arms)
        raw[i] = y[i, arms == 1].mean() - y[i, arms == 0].mean()
        adj[i] = a[arms == 1].mean() - a[arms == 0].mean()
        adj_control[i] = a[arms == 0].mean()
    diff = adj - raw  # = -theta * (difference of pre means): mean 0 when x ignores the arm
    assert abs(diff.mean()) < 5 * diff.std(ddof=1) / np.sqrt(SIMS)
    assert abs(adj.mean() - lift) < 5 * adj.std(ddof=1) / np.sqrt(SIMS)
    assert adj.var() < 0.5 * raw.var()  # and less noisy: x explains most of y
    # each arm's adjusted mean is unbiased for its raw mean
    raw_control = y[:, arms == 0].mean(axis=1)
    gap = adj_control - raw_control
    assert abs(gap.mean()) < 5 * gap.std(ddof=1) / np.sqrt(SIMS)
