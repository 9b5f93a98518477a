"""Looking every day (#18): simulated experiments through the pipeline's analysis code
(models/experiments/simulate.py: `stats.compare`, `decision.decide`, the first final
decision standing), 2,000 runs of 14 daily looks with 200 new users per arm a day.

The stated bound: an A/A experiment ships on some look in at most alpha/2 = 2.5% of runs
plus 3 binomial standard deviations (3 x sqrt(0.025 x 0.975 / 2000) = 1.05 points), so at
most 3.55%. Daily Welch tests without a sequence (the peeking the issue measured at 11%)
break it, which this file checks too, so the simulation can fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.experiments.simulate import simulate

RUNS, ALPHA = 2000, 0.05
BOUND = ALPHA / 2 + 3 * math.sqrt(ALPHA / 2 * (1 - ALPHA / 2) / RUNS)


@pytest.mark.parametrize("cuped", [False, True])
@pytest.mark.parametrize("min_runtime_days", [7, 0])
def test_aa_under_sequential_ships_within_the_bound(cuped, min_runtime_days):
    o = simulate("sequential", runs=RUNS, cuped=cuped, min_runtime_days=min_runtime_days,
                 seed=11)  # fmt: skip
    print(f"A/A sequential cuped={cuped} min_runtime={min_runtime_days}: {o.ship_rate:.2%}")
    assert o.ship_rate <= BOUND
    assert (o.ship_day[o.shipped] >= min_runtime_days).all()


@pytest.mark.parametrize("cuped", [False, True])
def test_aa_under_fixed_horizon_ships_only_at_the_horizon(cuped):
    o = simulate("fixed_horizon", runs=RUNS, cuped=cuped, seed=12)
    print(f"A/A fixed_horizon cuped={cuped}: {o.ship_rate:.2%}")
    assert o.shipped.any() and (o.ship_day[o.shipped] == 14).all()
    assert (o.decided_day == 14).all()  # every run decided once, at the horizon
    sd = math.sqrt(ALPHA / 2 * (1 - ALPHA / 2) / RUNS)
    assert abs(o.ship_rate - ALPHA / 2) <= 4 * sd  # one look: alpha / 2, two-sided test


def test_daily_welch_without_a_sequence_breaks_the_bound():
    """The peeking problem itself: Welch every day from day 1, the first ship standing."""
    o = simulate("sequential", runs=RUNS, cuped=False, min_runtime_days=0, seed=13,
                 interval="welch")  # fmt: skip
    print(f"A/A daily Welch: {o.ship_rate:.2%}")
    assert o.ship_rate > 2 * BOUND


@pytest.mark.parametrize(("lift", "min_rate", "before_day"), [(0.10, 0.5, 11), (0.20, 0.99, 8)])
def test_planted_lifts_are_found_and_by_which_day(lift, min_rate, before_day):
    """The README's sizes (+10% and +20% watch time at 200 users per arm a day): the share
    found and the mean day of the ship under each method (README "A/B experiments")."""
    seq = simulate("sequential", runs=RUNS, lift=lift, cuped=True, seed=14)
    fixed = simulate("fixed_horizon", runs=RUNS, lift=lift, cuped=True, seed=14)
    print(f"+{lift:.0%}: sequential {seq.ship_rate:.1%} by day {seq.mean_ship_day():.1f}; "
          f"fixed {fixed.ship_rate:.1%} on day {fixed.mean_ship_day():.1f}")  # fmt: skip
    assert seq.ship_rate >= min_rate and seq.mean_ship_day() < before_day
    assert fixed.ship_rate >= seq.ship_rate - 0.01 and fixed.mean_ship_day() == 14.0
    assert np.isin(seq.decision[seq.shipped], ["ship"]).all()
