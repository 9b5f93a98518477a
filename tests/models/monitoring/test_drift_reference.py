"""A model's reference profile (day-end rows only, sampled reproducibly, its window) and the
drift report built from two profiles, on a small table whose answer is known row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from models.monitoring import drift

BASE = datetime(2026, 1, 1, tzinfo=UTC)
N = 100
FEATURES = ["clip_id", "duration_s"]
DAY_END = [i for i in range(N) if i % 4]  # every 4th row is a creation row (no engagement)


def training_rows(n: int = N) -> pa.Table:
    created = [BASE + timedelta(hours=i) for i in range(n)]
    event = [c if i % 4 == 0 else c + timedelta(days=1) for i, c in enumerate(created)]
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "clip_id": [f"c{i:02d}" for i in range(n)],
            "event_timestamp": pa.array(event, ts),
            "created_at": pa.array(created, ts),
            "duration_s": [float(i) for i in range(n)],
        }
    )


PREDICTIONS = np.linspace(10.0, 20.0, len(DAY_END))


def test_reference_is_the_day_end_rows_and_the_holdout_predictions():
    table = training_rows()
    prof = drift.reference_profile(table, PREDICTIONS, FEATURES)
    day_end = table.take(pa.array(DAY_END))
    want = drift.profile(day_end, FEATURES, predictions=PREDICTIONS)
    # the window spans every training row: the first is a creation row, the last a day end
    window = {
        "start": "2026-01-01T00:00:00+00:00",
        "end": (BASE + timedelta(hours=99, days=1)).isoformat(),
        "rows": 75,
        "sampled_from": 75,
    }
    assert prof == want | {"window": window}
    assert prof["features"]["clip_id"]["counts"] == {f"c{i:02d}": 1 for i in DAY_END}
    assert prof["prediction"]["mean"] == 15.0
    # exactly max_rows day-end rows: all kept
    assert drift.reference_profile(table, PREDICTIONS, FEATURES, max_rows=75) == prof


def test_reference_samples_day_end_rows_without_replacement_reproducibly():
    table = training_rows()
    prof = drift.reference_profile(table, PREDICTIONS, FEATURES, max_rows=30)
    counts = prof["features"]["clip_id"]["counts"]
    assert len(counts) == 30 and set(counts.values()) == {1}  # 30 distinct rows
    assert set(counts) <= {f"c{i:02d}" for i in DAY_END}
    assert prof["rows"] == 30 and prof["features"]["duration_s"]["n"] == 30
    assert prof["window"]["rows"] == 30 and prof["window"]["sampled_from"] == 75
    assert drift.reference_profile(table, PREDICTIONS, FEATURES, max_rows=30) == prof
    other = drift.reference_profile(table, PREDICTIONS, FEATURES, max_rows=30, seed=7)
    assert other["features"]["clip_id"]["counts"] != counts


def test_reference_of_no_training_rows_has_an_open_window():
    prof = drift.reference_profile(training_rows(0), [], FEATURES)
    assert prof["window"] == {"start": None, "end": None, "rows": 0, "sampled_from": 0}
    assert prof["rows"] == 0 and prof["features"]["duration_s"]["n"] == 0


def test_build_report_carries_every_part():
    t = drift.DriftThresholds(numerical_method="psi")
    table = training_rows()
    reference = drift.reference_profile(table, PREDICTIONS, FEATURES)
    current = drift.profile(table.slice(0, 40), FEATURES)
    result = drift.compare(reference, current, t)
    performance = {"rmse": 1.5, "n_labels": 40}
    history = ({"scored_ds": "2026-01-03", "rmse": 1.4},)
    report = drift.build_report("2026-01-05", "7", reference, current, result, t,
                                performance, history)  # fmt: skip
    assert report == {
        "date": "2026-01-05",
        "model_version": "7",
        "reference": {
            "start": "2026-01-01T00:00:00+00:00",
            "end": "2026-01-06T03:00:00+00:00",
            "rows": 75,
        },
        "current": {"rows": 40},
        **result,
        "performance": performance,
        "performance_history": [history[0]],
        "thresholds": t.asdict(),
    }
    assert {"features", "prediction", "drift_share", "dataset_drift"} <= set(report)


def test_build_report_of_a_reference_without_window():
    t = drift.DriftThresholds()
    table = training_rows(8)
    reference = drift.profile(table, FEATURES)
    result = drift.compare(reference, reference, t)
    report = drift.build_report("2026-01-02", "1", reference, reference, result, t)
    assert report["reference"] == {"start": None, "end": None, "rows": None}
    assert report["current"] == {"rows": 8}
    assert report["performance"] is None and report["performance_history"] == []
