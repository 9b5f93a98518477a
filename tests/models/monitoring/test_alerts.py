"""Monitoring alerts: each fires on its condition and explains itself."""

from __future__ import annotations

import numpy as np

from models.monitoring import alerts


def report(share=0.1, drifted=(), dataset=False, perf=None, features=None):
    return {
        "drift_share": share,
        "dataset_drift": dataset,
        "drifted_features": list(drifted),
        "thresholds": {"drift_share": 0.5},
        "performance": perf,
        "features": features or {"a": {"missing_reference": 0.1, "missing_current": 0.12}},
    }


def by_name(found):
    return {a["name"]: a for a in found}


def test_quiet_day_passes_everything():
    found = by_name(alerts.evaluate(report(), alerts.score_stats([10.0, 50.0]), 5.0))
    assert set(found) == set(alerts.ALERTS) and len(found) == 4
    assert all(a["passed"] for a in found.values()), found


def test_dataset_drift_names_the_features():
    a = by_name(alerts.evaluate(report(0.6, ["x", "y"], True), alerts.score_stats([1.0]), None))
    assert not a["dataset_drift"]["passed"]
    assert "x, y" in a["dataset_drift"]["message"] and "60%" in a["dataset_drift"]["message"]


def test_rmse_ceiling_relative_to_the_champion_and_absolute():
    perf = {"rmse": 7.0, "mae": 5.0, "n_labels": 500}
    stats = alerts.score_stats([1.0])
    rel = by_name(alerts.evaluate(report(perf=perf), stats, 5.0))["rmse_ceiling"]
    assert not rel["passed"] and rel["threshold"] == 6.5  # 1.3 x 5.0
    ok = alerts.AlertThresholds(rmse_ceiling=8.0)
    assert by_name(alerts.evaluate(report(perf=perf), stats, 5.0, ok))["rmse_ceiling"]["passed"]
    few = {**perf, "n_labels": 10}
    low = by_name(alerts.evaluate(report(perf=few), stats, 5.0))["rmse_ceiling"]
    assert low["passed"] and "not judged" in low["message"]


def test_missing_features_and_score_range():
    feats = {"a": {"missing_reference": 0.0, "missing_current": 0.4}}
    stats = alerts.score_stats(np.array([5.0, np.nan, 120.0, -1.0]))
    found = by_name(alerts.evaluate(report(features=feats), stats, 5.0))
    assert (
        not found["missing_features"]["passed"]
        and "a (+40%)" in found["missing_features"]["message"]
    )
    assert not found["score_range"]["passed"] and found["score_range"]["value"] == 3
