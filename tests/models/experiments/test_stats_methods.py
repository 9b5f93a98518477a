"""`summarize` under each method (#18): a day without outcome data is never `no_ship`, a
guardrail that falls blocks a `ship`, secondaries keep Benjamini-Hochberg on the sequential
p-values, a fixed horizon reached by users; all from per-user numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from models.experiments.config import ExperimentConfig
from models.experiments.sequential import always_valid_p, best_rho2
from models.experiments.stats import benjamini_hochberg, moments, summarize

START = datetime(2026, 1, 1, tzinfo=UTC)
N = 3000


def config(**kw) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "experiment_id": "m", "name": "methods", "variants": {"control": 0.5, "treatment": 0.5},
        "start": START.isoformat(), "end": (START + timedelta(days=14)).isoformat(),
        "primary_metric": "watch", "secondary_metrics": ["likes", "shares"],
        "min_sample_size": 1000, "confidence_level": 0.95, **kw})  # fmt: skip


def arms(rng, shift: float, scale: float = 1.0) -> dict:
    y0 = rng.gamma(2.0, 3.0, N) * scale
    return {"control": moments(y0), "treatment": moments(rng.gamma(2.0, 3.0, N) * scale + shift)}


def data(seed=0, watch=2.0, guard=0.0, likes=0.0, shares=0.0) -> dict:
    rng = np.random.default_rng(seed)
    return {"watch": arms(rng, watch), "likes": arms(rng, likes), "shares": arms(rng, shares),
            "quality": arms(rng, guard)}  # fmt: skip


COUNTS = {"control": N, "treatment": N}
DAY10 = START + timedelta(days=10)


def test_no_outcome_data_yet_is_never_no_ship():
    zeros = {"control": moments(np.zeros(N)), "treatment": moments(np.zeros(N))}
    by = {m: zeros for m in ("watch", "likes", "shares")}
    for as_of in (DAY10, START + timedelta(days=14)):  # running, and at the end
        out = summarize(config(), COUNTS, by, as_of, 14)
        assert (out["decision"], out["decision_reason"]) == ("inconclusive", "no_outcome_data")
        assert not out["final"]


@pytest.mark.parametrize(("guard", "decision"), [(-1.0, "no_ship"), (-0.05, "ship")])
def test_a_guardrail_that_falls_blocks_the_ship(guard, decision):
    exp = config(guardrail_metrics=["quality"])
    out = summarize(exp, COUNTS, data(guard=guard), DAY10, 14)
    g = next(r for r in out["metrics"] if r["metric"] == "quality")
    assert g["guardrail"] and g["p_value_adjusted"] == g["p_value"]  # marginal, no BH
    assert g["significant"] == (g["p_value"] < 0.05) == (decision == "no_ship")
    assert out["decision"] == decision and out["final"]
    primary = next(r for r in out["metrics"] if r["primary"])
    assert primary["significant"] and primary["guardrail_blocked"] == (decision == "no_ship")
    if decision == "no_ship":
        assert out["decision_reason"] == "guardrail_down"


def test_secondaries_get_bh_of_the_always_valid_p_values():
    exp = config()
    by = data(likes=0.6, shares=0.3)
    out = summarize(exp, COUNTS, by, DAY10, 14)
    rho2 = best_rho2(0.05, exp.tuning_n)
    rows = {r["metric"]: r for r in out["metrics"]}
    ps = []
    for m in ("likes", "shares"):
        c, t = by[m]["control"], by[m]["treatment"]
        z = (t.mean_y - c.mean_y) / np.sqrt(c.var_y / N + t.var_y / N)
        ps.append(float(always_valid_p(z, 2 * N, rho2)))
        assert rows[m]["p_value"] == pytest.approx(ps[-1], rel=1e-12)
    q = benjamini_hochberg(ps)
    assert [rows[m]["p_value_adjusted"] for m in ("likes", "shares")] == pytest.approx(q)


@pytest.mark.parametrize(("users", "decision"), [(N, "ship"), (N + 1, "running")])
def test_a_fixed_horizon_in_users_at_its_boundary(users, decision):
    exp = config(method="fixed_horizon", horizon_users=users)
    out = summarize(exp, COUNTS, data(), DAY10, 14)
    assert out["decision"] == decision and out["horizon_reached"] == (decision == "ship")
    assert out["decision_grade"] == (decision != "running") == out["final"]


END = START + timedelta(days=14)


@pytest.mark.parametrize(
    ("as_of", "watch", "want"),
    [
        (DAY10, 0.0, ("inconclusive", "no_effect_yet")),  # running, nothing yet
        (END - timedelta(microseconds=2), 0.0, ("inconclusive", "no_effect_yet")),
        (END - timedelta(microseconds=1), 0.0, ("no_ship", "no_effect")),  # the end's last µs
        (END, 0.0, ("no_ship", "no_effect")),
        (DAY10, -0.05, ("inconclusive", "no_effect_yet")),  # down, but not significantly
        (DAY10, -2.0, ("no_ship", "primary_down")),  # significantly down: stop
        (DAY10, 2.0, ("ship", "primary_up")),
    ],
)  # fmt: skip
def test_sequential_looks_until_the_end(as_of, watch, want):
    exp = config()
    out = summarize(exp, COUNTS, data(watch=watch), as_of, 14)
    assert (out["decision"], out["decision_reason"]) == want
    assert out["final"] == (want[0] in ("ship", "no_ship"))
    assert out["sequential_tuning_n"] == exp.tuning_n == 2000


def test_outcome_data_is_judged_on_the_primary_metric_of_every_variant():
    rng = np.random.default_rng(3)
    zero = moments(np.zeros(N))
    live = {"control": moments(rng.gamma(2.0, 3.0, N)), "b": moments(rng.gamma(2.0, 3.0, N)),
            "c": moments(rng.gamma(2.0, 3.0, N))}  # fmt: skip
    exp = config(variants={"control": 0.4, "b": 0.3, "c": 0.3}, min_sample_size=10)
    counts = {"control": 4 * N, "b": 3 * N, "c": 3 * N}  # the weights' split: no SRM
    # the primary without data in control and b (c has data): not decision-grade
    by = {"watch": {"control": zero, "b": zero, "c": live["c"]}, "likes": live, "shares": live}
    out = summarize(exp, counts, by, END, 14)
    assert (out["decision"], out["decision_reason"]) == ("inconclusive", "no_outcome_data")
    # data everywhere but in the primary: the same
    by = {"watch": {v: zero for v in live}, "likes": live, "shares": live}
    assert summarize(exp, counts, by, END, 14)["decision_reason"] == "no_outcome_data"


def test_a_guardrail_that_rises_never_blocks():
    out = summarize(config(guardrail_metrics=["quality"]), COUNTS, data(guard=0.5), DAY10, 14)
    g = next(r for r in out["metrics"] if r["metric"] == "quality")
    assert g["significant"] and 0 < g["lift"] < 1
    assert out["decision"] == "ship"


@pytest.mark.parametrize(
    ("counts", "srm", "want"),
    [({"control": 1}, False, ("running", "before_horizon")),  # no treatment user yet
     ({"control": N, "treatment": 10}, True, ("invalid_srm", "srm")),
     ({"control": N, "treatment": N}, False, ("ship", "primary_up"))],
)  # fmt: skip
def test_a_fixed_horizon_of_users_counts_every_variant(counts, srm, want):
    exp = config(method="fixed_horizon", horizon_users=1)
    out = summarize(exp, counts, data(), DAY10, 14)
    assert (out["decision"], out["decision_reason"]) == want and out["srm"]["detected"] == srm
    assert out["final"] == (want[0] == "ship")


def test_fixed_horizon_at_the_end_is_final_even_when_inconclusive():
    exp = config(method="fixed_horizon", min_sample_size=N + 1)
    out = summarize(exp, COUNTS, data(), END, 14)
    assert (out["decision"], out["decision_reason"], out["final"]) == (
        "inconclusive", "min_sample", True)  # fmt: skip
    assert out["sequential_tuning_n"] is None
