"""The A/B decision of one look, under the experiment's method, and the decision history.

One look (a day's cumulative analysis) decides, in this order (the first that applies):

1. `invalid_srm`: the traffic split does not match the weights (checked every day: an SRM
   is a broken assignment, never a peeking problem).
2. `running` (fixed_horizon only): the horizon (`end`, or every variant at `horizon_users`)
   or the minimum runtime is not reached; the interim figures are shown, not decision-grade.
3. `inconclusive` (sequential): fewer than `min_runtime_days` days since the start.
4. `inconclusive`: some variant has fewer than `min_sample_size` users.
5. `inconclusive`: no outcome variation yet (no post-assignment data: the standard error
   is 0 or unknown), which is never a `no_ship`.
6. `no_ship`: some variant is significantly up on the primary metric, but a guardrail
   metric is significantly down for it.
7. `ship`: some variant significantly up on the primary metric.
8. `no_ship`: every variant significantly down.
9. `inconclusive` (sequential): no clear result yet and the experiment has not ended.
10. `no_ship`: the experiment ended (or reached its horizon) without a significant rise.

"Significantly" means the method's interval at the experiment's confidence level excludes
zero: the confidence sequence (always valid, models/experiments/sequential.py) or, at a
fixed horizon, Welch's interval. Guardrails use their marginal interval (no correction:
stricter, as befits a safety check).

A decision is final the first time it is `ship` or `no_ship` (sequential: a confidence
sequence may be stopped at any look) or at the horizon (fixed_horizon); later looks report
the final decision, `decided_on` its day, and the figures keep updating. So an experiment
promotes once, on its final decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

SEQUENTIAL, FIXED_HORIZON = "sequential", "fixed_horizon"
FINAL = ("ship", "no_ship")

_RULES = [  # (reason, decision); the conditions are in `decide`
    ("srm", "invalid_srm"),
    ("before_horizon", "running"),
    ("min_runtime", "inconclusive"),
    ("min_sample", "inconclusive"),
    ("no_outcome_data", "inconclusive"),
    ("guardrail_down", "no_ship"),
    ("primary_up", "ship"),
    ("primary_down", "no_ship"),
    ("no_effect_yet", "inconclusive"),
    ("no_effect", "no_ship"),
]
REASONS = {
    "srm": "the traffic split does not match the configured weights (SRM)",
    "before_horizon": "before the fixed horizon: interim figures, not decision-grade",
    "min_runtime": "before the minimum runtime",
    "min_sample": "some variant has fewer users than min_sample_size",
    "no_outcome_data": "no outcome data yet (no variation since assignment)",
    "guardrail_down": "the primary metric rose but a guardrail metric fell",
    "primary_up": "the primary metric rose significantly",
    "primary_down": "the primary metric fell significantly in every variant",
    "no_effect_yet": "no significant change yet; the experiment runs on",
    "no_effect": "no significant rise by the end",
}


def decide(
    method: str,
    *,
    srm_detected,
    runtime_reached,
    horizon_reached,
    ended,
    sample_reached,
    informative,
    up,
    guardrail_down,
    all_down,
) -> tuple[np.ndarray, np.ndarray]:
    """(decision, reason) arrays of one look for every experiment (or simulated run) of
    the boolean arrays: `up` some variant's primary interval above 0, `guardrail_down`
    every such variant has a guardrail interval below 0, `all_down` every variant's primary
    interval below 0,
    `informative` every primary standard error finite and > 0."""
    fixed = method == FIXED_HORIZON
    b = [np.asarray(v, dtype=bool) for v in (srm_detected, runtime_reached, horizon_reached,
                                              ended, sample_reached, informative, up,
                                              guardrail_down, all_down)]  # fmt: skip
    srm, runtime, horizon, ended_, sample, info, up_, guard, down = np.broadcast_arrays(*b)
    conditions = [
        srm,
        np.full(srm.shape, fixed) & ~(horizon & runtime),
        ~runtime,
        ~sample,
        ~info,
        up_ & guard,
        up_,
        down,
        np.full(srm.shape, not fixed) & ~ended_,
    ]  # and otherwise the last rule
    (*rules, (last_reason, last_decision)) = _RULES
    reasons = np.select(conditions, [r for r, _ in rules], default=last_reason)
    decisions = np.select(conditions, [d for _, d in rules], default=last_decision)
    return decisions, reasons


def is_final(method: str, decision, horizon_reached):
    """Whether a look's decision ends the experiment (see the module doc): a bool, or an
    array of them for arrays of decisions."""
    decision = np.asarray(decision)
    if method == FIXED_HORIZON:
        out = np.asarray(horizon_reached, dtype=bool) & ~np.isin(
            decision, ("invalid_srm", "running")
        )
    else:
        out = np.isin(decision, FINAL)
    return bool(out) if out.ndim == 0 else out


def runtime_reached(start: datetime, as_of: datetime, min_runtime_days: int) -> bool:
    """Whether `min_runtime_days` whole days have passed since the start at `as_of`."""
    return as_of >= start + timedelta(days=min_runtime_days) - timedelta(microseconds=1)


def settle(result: dict, history: list[dict]) -> dict:
    """The look's result with the history applied: the first final decision of the earlier
    looks (in `analyzed_at` order) stands, with `decided_on`; `history` is the earlier looks
    plus this one (as_of, decision, reason and the primary metric's intervals)."""
    looks = sorted(history, key=lambda h: h["analyzed_at"])
    final = next((h for h in looks if h.get("final")), None)
    now = {
        "analyzed_at": result["analyzed_at"],
        "decision": result["decision"],
        "decision_reason": result["decision_reason"],
        "final": result["final"],
        "intervals": _intervals(result["metrics"]),
    }
    if final is not None:
        result = {
            **result,
            "decision": final["decision"],
            "decision_reason": final["decision_reason"],
            "final": True,
            "decided_on": final["analyzed_at"],
            "look_decision": now["decision"],
        }
    elif result["final"]:
        result = {**result, "decided_on": result["analyzed_at"]}
    return {**result, "history": [*looks, now]}


INTERVAL_KEYS = ("metric", "variant", "lift", "ci_low", "ci_high", "relative_lift",
                 "relative_ci_low", "relative_ci_high", "p_value")  # fmt: skip


def _intervals(rows: list[dict]) -> list[dict]:
    return [{k: r.get(k) for k in INTERVAL_KEYS} for r in rows if r.get("primary")]
