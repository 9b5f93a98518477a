"""The decision of one look under each method (models/experiments/decision.py), each rule
against its neighbour, the minimum runtime at its boundary, and a final decision standing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from models.experiments.decision import decide, is_final, runtime_reached, settle

GO = dict(srm_detected=False, runtime_reached=True, horizon_reached=False, ended=False,
          sample_reached=True, informative=True, up=False, guardrail_down=False,
          all_down=False)  # fmt: skip


def one(method="sequential", **kw) -> tuple[str, str]:
    d, r = decide(method, **{**GO, **kw})
    return str(d), str(r)


@pytest.mark.parametrize(
    ("method", "change", "want"),
    [
        ("sequential", {"srm_detected": True, "runtime_reached": False}, ("invalid_srm", "srm")),
        ("sequential", {"runtime_reached": False, "up": True}, ("inconclusive", "min_runtime")),
        ("sequential", {"sample_reached": False, "up": True}, ("inconclusive", "min_sample")),
        ("sequential", {"informative": False}, ("inconclusive", "no_outcome_data")),
        ("sequential", {"informative": False, "ended": True}, ("inconclusive", "no_outcome_data")),
        ("sequential", {"up": True, "guardrail_down": True}, ("no_ship", "guardrail_down")),
        ("sequential", {"up": True}, ("ship", "primary_up")),
        ("sequential", {"all_down": True}, ("no_ship", "primary_down")),
        ("sequential", {}, ("inconclusive", "no_effect_yet")),
        ("sequential", {"ended": True}, ("no_ship", "no_effect")),
        ("fixed_horizon", {"up": True}, ("running", "before_horizon")),
        ("fixed_horizon", {"up": True, "horizon_reached": True, "runtime_reached": False},
         ("running", "before_horizon")),
        ("fixed_horizon", {"up": True, "horizon_reached": True}, ("ship", "primary_up")),
        ("fixed_horizon", {"horizon_reached": True}, ("no_ship", "no_effect")),
        ("fixed_horizon", {"srm_detected": True}, ("invalid_srm", "srm")),
    ],
)  # fmt: skip
def test_each_rule(method, change, want):
    assert one(method, **change) == want


def test_arrays_decide_every_run_at_once():
    d, r = decide("sequential", **{**GO, "up": np.array([True, False, False]),
                                   "all_down": np.array([False, True, False])})  # fmt: skip
    assert d.tolist() == ["ship", "no_ship", "inconclusive"]
    assert r.tolist() == ["primary_up", "primary_down", "no_effect_yet"]


def test_flags_given_as_0_and_1_are_booleans():
    ints = {k: int(v) for k, v in GO.items()}
    d, r = decide("sequential", **{**ints, "up": 1, "runtime_reached": 1})
    assert (str(d), str(r)) == ("ship", "primary_up")
    d, r = decide("sequential", **{**ints, "up": 1, "runtime_reached": 0})
    assert (str(d), str(r)) == ("inconclusive", "min_runtime")


def test_the_minimum_runtime_at_its_boundary():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    day7_end = start + timedelta(days=7) - timedelta(microseconds=1)  # the 7th day's end
    assert runtime_reached(start, day7_end, 7)
    assert not runtime_reached(start, day7_end - timedelta(microseconds=1), 7)
    assert runtime_reached(start, start, 0)


@pytest.mark.parametrize(
    ("method", "decision", "horizon", "final"),
    [("sequential", "ship", False, True), ("sequential", "no_ship", False, True),
     ("sequential", "inconclusive", True, False), ("sequential", "invalid_srm", False, False),
     ("fixed_horizon", "no_ship", True, True), ("fixed_horizon", "inconclusive", True, True),
     ("fixed_horizon", "running", False, False), ("fixed_horizon", "invalid_srm", True, False),
     ("fixed_horizon", "running", True, False)],  # the horizon, before the minimum runtime
)  # fmt: skip
def test_what_is_final(method, decision, horizon, final):
    assert is_final(method, decision, horizon) is final


def _look(day: int, decision: str, final: bool) -> dict:
    return {"analyzed_at": f"2026-01-{day:02d}T23:59:59.999999+00:00", "decision": decision,
            "decision_reason": f"why {day}", "final": final, "metrics": [], "intervals": []}  # fmt: skip


def test_the_first_final_decision_stands_and_the_history_grows():
    earlier = [_look(9, "ship", True), _look(8, "inconclusive", False), _look(10, "ship", True)]
    today = {**_look(11, "inconclusive", False), "metrics": [
        {"primary": True, "metric": "m", "variant": "t", "lift": 1.0, "ci_low": -1.0},
        {"primary": False, "metric": "s", "variant": "t", "lift": 2.0}]}  # fmt: skip
    got = settle(today, earlier)
    assert (got["decision"], got["final"], got["look_decision"]) == ("ship", True, "inconclusive")
    assert got["decided_on"].startswith("2026-01-09") and got["decision_reason"] == "why 9"
    assert {k: got["history"][-1][k] for k in ("decision", "decision_reason", "final")} == {
        "decision": "inconclusive", "decision_reason": "why 11", "final": False}  # fmt: skip
    assert [h["analyzed_at"][:10] for h in got["history"]] == [
        "2026-01-08", "2026-01-09", "2026-01-10", "2026-01-11"]  # fmt: skip
    assert got["history"][-1]["intervals"] == [{"metric": "m", "variant": "t", "lift": 1.0,
        "ci_low": -1.0, "ci_high": None, "relative_lift": None, "relative_ci_low": None,
        "relative_ci_high": None, "p_value": None}]  # fmt: skip


def test_without_a_final_look_today_decides():
    got = settle(_look(9, "ship", True), [_look(8, "inconclusive", False)])
    assert got["decision"] == "ship" and got["decided_on"].startswith("2026-01-09")
    got = settle(_look(9, "inconclusive", False), [_look(8, "invalid_srm", False)])
    assert got["decision"] == "inconclusive" and "decided_on" not in got


def test_what_is_final_for_arrays_of_runs():
    looks = np.array(["ship", "no_ship", "inconclusive", "running", "invalid_srm"])
    assert is_final("sequential", looks, False).tolist() == [True, True, False, False, False]
    assert is_final("fixed_horizon", looks, True).tolist() == [True, True, True, False, False]
    assert is_final("fixed_horizon", looks, np.zeros(5, dtype=bool)).tolist() == [False] * 5
    flags = is_final("fixed_horizon", looks[:2], np.array([0, 1]))  # 0/1 flags are booleans
    assert flags.dtype == bool and flags.tolist() == [False, True]
