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
    assert set(found) == set(alerts.ALERTS) and len(found) == 5
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


def alert(name, passed, message, value, threshold):
    return {
        "name": name,
        "passed": passed,
        "message": message,
        "value": value,
        "threshold": threshold,
    }


def test_dataset_drift_alert_says_how_many_drifted_and_which():
    stats = alerts.score_stats([1.0])
    found = by_name(alerts.evaluate(report(0.6, ["x", "y"], True), stats, None))
    assert found["dataset_drift"] == alert(
        "dataset_drift",
        False,
        "2 feature(s) drifted, share 60% (dataset drift at 50%): x, y",
        0.6,
        0.5,
    )
    quiet = report()
    del quiet["drifted_features"]  # an older report without the list
    assert by_name(alerts.evaluate(quiet, stats, None))["dataset_drift"] == alert(
        "dataset_drift", True, "0 feature(s) drifted, share 10% (dataset drift at 50%)", 0.1, 0.5
    )


def test_rmse_ceiling_is_inclusive_and_judges_from_min_labels():
    stats = alerts.score_stats([1.0])

    def rmse_alert(perf, champion_rmse=5.0):
        return by_name(alerts.evaluate(report(perf=perf), stats, champion_rmse))["rmse_ceiling"]

    at = {"rmse": 6.5, "n_labels": 50}  # the ceiling is 1.3 x 5.0; exactly min_labels labels
    assert rmse_alert(at) == alert(
        "rmse_ceiling", True, "rmse 6.500 on 50 labels within the ceiling 6.500", 6.5, 6.5
    )
    above = {"rmse": 7.0, "n_labels": 500}
    assert rmse_alert(above) == alert(
        "rmse_ceiling", False, "rmse 7.000 on 500 labels above the ceiling 6.500", 7.0, 6.5
    )
    not_judged = "rmse_ceiling", True
    assert rmse_alert({"rmse": 99.0, "n_labels": 49}) == alert(
        *not_judged, "not judged: 49 labels (needs 50)", None, 6.5
    )
    assert rmse_alert(None) == alert(*not_judged, "not judged: 0 labels (needs 50)", None, 6.5)
    for no_champion in (None, float("nan")):
        assert rmse_alert(above, no_champion) == alert(
            *not_judged, "not judged: no ceiling (no champion rmse) (needs 50)", None, None
        )


def test_missing_features_fire_only_above_the_limit():
    def missing(features):
        day = {**report(), "features": features}
        return by_name(alerts.evaluate(day, alerts.score_stats([1.0]), 5.0))["missing_features"]

    at_limit = {"a": {"missing_reference": 0.0, "missing_current": 0.1}}
    assert missing(at_limit) == alert(
        "missing_features", True, "missing shares stable (largest increase +10.0%)", 0.1, 0.1
    )
    fewer = {"a": {"missing_reference": 0.5, "missing_current": 0.25}}
    assert missing(fewer) == alert(
        "missing_features", True, "missing shares stable (largest increase -25.0%)", -0.25, 0.1
    )
    assert missing({}) == alert(
        "missing_features", True, "missing shares stable (largest increase +0.0%)", 0, 0.1
    )
    two = {
        "b": {"missing_reference": 0.1, "missing_current": 0.3},
        "a": {"missing_reference": 0.1, "missing_current": 0.5},
    }
    assert missing(two) == alert(
        "missing_features",
        False,
        "missing values grew by more than 10%: a (+40%), b (+20%)",
        0.4,
        0.1,
    )


def test_score_range_bounds_are_inclusive_and_an_empty_day_passes():
    def score_range(scores):
        found = by_name(alerts.evaluate(report(), alerts.score_stats(scores), 5.0))
        return found["score_range"]

    assert score_range([0.0, 100.0]) == alert(
        "score_range",
        True,
        "0 NaN/inf and 0 outside [0, 100] of 2 scores (min 0.0, max 100.0)",
        0,
        "[0, 100]",
    )
    assert score_range([5.0, None, 120.0, -1.0]) == alert(
        "score_range",
        False,
        "1 NaN/inf and 2 outside [0, 100] of 4 scores (min -1.0, max 120.0)",
        3,
        "[0, 100]",
    )
    assert score_range([np.nan]) == alert(
        "score_range",
        False,
        "1 NaN/inf and 0 outside [0, 100] of 1 scores (min None, max None)",
        1,
        "[0, 100]",
    )
    assert score_range([]) == alert("score_range", True, "no scores today", 0, "[0, 100]")


def test_interval_coverage_at_its_tolerance_passes_and_just_below_fails():
    stats = alerts.score_stats([1.0])
    floor = 0.8 - 0.05  # level 0.8, the default tolerance
    perf = {"rmse": 1.0, "mae": 1.0, "n_labels": 400, "coverage": floor,
            "interval_level": 0.8, "n_interval_labels": 400}  # fmt: skip
    at = by_name(alerts.evaluate(report(perf=perf), stats, 5.0))["interval_coverage"]
    assert at == alert(
        "interval_coverage", True,
        "coverage 75.0% of 400 labels at level 80%: within the tolerance (75.0% at least)",
        floor, floor,
    )  # fmt: skip
    below = {**perf, "coverage": float(np.nextafter(floor, 0.0))}
    low = by_name(alerts.evaluate(report(perf=below), stats, 5.0))["interval_coverage"]
    assert low["passed"] is False and "below the tolerance" in low["message"]
    wide = alerts.AlertThresholds(coverage_tolerance=0.1)  # the tolerance is configurable
    assert by_name(alerts.evaluate(report(perf=below), stats, 5.0, wide))["interval_coverage"][
        "passed"]
    # under min_labels labels with an interval, or no interval at all: not judged, said so
    for few in ({**below, "n_interval_labels": 49}, {**below, "interval_level": None}, None):
        got = by_name(alerts.evaluate(report(perf=few), stats, 5.0))["interval_coverage"]
        assert got["passed"] is True and got["message"].startswith("not judged")
    at_min = {**below, "n_interval_labels": 50}
    assert not by_name(alerts.evaluate(report(perf=at_min), stats, 5.0))["interval_coverage"][
        "passed"]


def test_interval_coverage_not_judged_says_how_many_labels_it_had():
    stats = alerts.score_stats([1.0])
    old = {"rmse": 1.0, "mae": 1.0, "n_labels": 400}  # pooled before intervals existed
    for perf in (None, old, {**old, "n_interval_labels": None, "interval_level": 0.8}):
        got = by_name(alerts.evaluate(report(perf=perf), stats, 5.0))["interval_coverage"]
        assert got == alert("interval_coverage", True,
                            "not judged: 0 labels with an interval (needs 50)", None, None)  # fmt: skip
