"""Monitoring alerts: the day's drift report held against configured thresholds.

Each alert is a dict {name, passed, message, value, threshold}; the drift_report asset turns
them into asset checks (failures show in the Dagster UI) and sends each failure to the
notifier. Names: `dataset_drift`, `rmse_ceiling`, `missing_features`, `score_range`,
`interval_coverage`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALERTS = {  # name -> what passing means (the asset checks' descriptions)
    "dataset_drift": "Share of drifted features below the configured share.",
    "rmse_ceiling": "Champion rmse on the labels known so far within the ceiling.",
    "missing_features": "No feature's missing share grew beyond the limit.",
    "score_range": "Every champion score finite and within [0, 100].",
    "interval_coverage": "Prediction intervals cover the labels at their level, within the "
    "tolerance.",
}


@dataclass(frozen=True)
class AlertThresholds:
    rmse_ceiling: float | None = None  # absolute; None: rmse_ratio x the champion's holdout rmse
    rmse_ratio: float = 1.3
    min_labels: int = 50  # fewer labels than this: the rmse alert does not judge
    max_missing_increase: float = 0.1  # share of missing values, current minus reference
    score_min: float = 0.0
    score_max: float = 100.0
    coverage_tolerance: float = 0.05  # coverage below level - this fails (labels >= min_labels)


def score_stats(scores) -> dict:
    """Counts the score_range alert needs: rows, NaN/inf, below/above the range, min, max."""
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    return {
        "n": int(len(s)),
        "not_finite": int(len(s) - len(finite)),
        "min": float(finite.min()) if len(finite) else None,
        "max": float(finite.max()) if len(finite) else None,
        "finite": finite,
    }


def evaluate(
    report: dict, scores: dict, champion_rmse: float | None, t: AlertThresholds | None = None
) -> list[dict]:
    """The five alerts for one day's report (`report` as models.monitoring.report writes it,
    `scores` from `score_stats`, `champion_rmse` the model's holdout rmse)."""
    t = t or AlertThresholds()
    return [
        _dataset_drift(report),
        _rmse(report.get("performance"), champion_rmse, t),
        _missing(report["features"], t),
        _score_range(scores, t),
        _coverage(report.get("performance"), t),
    ]


def _alert(name: str, passed: bool, message: str, value, threshold) -> dict:
    return {
        "name": name,
        "passed": bool(passed),
        "message": message,
        "value": value,
        "threshold": threshold,
    }


def _dataset_drift(report: dict) -> dict:
    share, limit = report["drift_share"], report["thresholds"]["drift_share"]
    drifted = report.get("drifted_features", [])
    msg = f"{len(drifted)} feature(s) drifted, share {share:.0%} (dataset drift at {limit:.0%})"
    if drifted:
        msg += ": " + ", ".join(drifted)
    return _alert("dataset_drift", not report["dataset_drift"], msg, share, limit)


def _rmse(perf: dict | None, champion_rmse: float | None, t: AlertThresholds) -> dict:
    ceiling = t.rmse_ceiling
    if ceiling is None and champion_rmse is not None and math.isfinite(champion_rmse):
        ceiling = t.rmse_ratio * champion_rmse
    if perf is None or perf["n_labels"] < t.min_labels or ceiling is None:
        n = 0 if perf is None else perf["n_labels"]
        why = "no ceiling (no champion rmse)" if ceiling is None else f"{n} labels"
        return _alert(
            "rmse_ceiling", True, f"not judged: {why} (needs {t.min_labels})", None, ceiling
        )
    ok = perf["rmse"] <= ceiling
    msg = (
        f"rmse {perf['rmse']:.3f} on {perf['n_labels']} labels "
        f"{'within' if ok else 'above'} the ceiling {ceiling:.3f}"
    )
    return _alert("rmse_ceiling", ok, msg, perf["rmse"], ceiling)


def _missing(features: dict, t: AlertThresholds) -> dict:
    grew = {
        k: f["missing_current"] - f["missing_reference"]
        for k, f in features.items()
        if f["missing_current"] - f["missing_reference"] > t.max_missing_increase
    }
    worst = max(
        (f["missing_current"] - f["missing_reference"] for f in features.values()), default=0
    )
    if grew:
        listed = ", ".join(f"{k} (+{v:.0%})" for k, v in sorted(grew.items()))
        msg = f"missing values grew by more than {t.max_missing_increase:.0%}: {listed}"
    else:
        msg = f"missing shares stable (largest increase {worst:+.1%})"
    return _alert("missing_features", not grew, msg, worst, t.max_missing_increase)


def _score_range(scores: dict, t: AlertThresholds) -> dict:
    finite = scores["finite"]
    out = int(np.count_nonzero((finite < t.score_min) | (finite > t.score_max)))
    bad = out + scores["not_finite"]
    rng = f"[{t.score_min:g}, {t.score_max:g}]"
    if scores["n"] == 0:
        return _alert("score_range", True, "no scores today", 0, rng)
    msg = (
        f"{scores['not_finite']} NaN/inf and {out} outside {rng} of {scores['n']} scores "
        f"(min {scores['min']}, max {scores['max']})"
    )
    return _alert("score_range", bad == 0, msg, bad, rng)


def _coverage(perf: dict | None, t: AlertThresholds) -> dict:
    """Fails when the intervals' coverage over the labels known so far is below their level
    by more than `t.coverage_tolerance`; not judged under `t.min_labels` labels with an
    interval (the message says so)."""
    n = 0 if perf is None else perf.get("n_interval_labels") or 0
    level = None if perf is None else perf.get("interval_level")
    if n < t.min_labels or level is None:
        return _alert(
            "interval_coverage", True,
            f"not judged: {n} labels with an interval (needs {t.min_labels})", None, None,
        )  # fmt: skip
    floor = level - t.coverage_tolerance
    ok = perf["coverage"] >= floor
    msg = (
        f"coverage {perf['coverage']:.1%} of {n} labels at level {level:.0%}: "
        f"{'within' if ok else 'below'} the tolerance ({floor:.1%} at least)"
    )
    return _alert("interval_coverage", ok, msg, perf["coverage"], floor)
