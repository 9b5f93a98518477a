"""A model's reference profile (day-end rows only, sampled reproducibly, its window) and the
drift report built from two profiles, on a small table whose answer is known row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


# -- like with like (#17): the reference's cohorts, worked out row by row ------------------
def test_the_reference_cohorts_are_its_creation_rows_and_its_day_end_rows_by_age():
    from bench.feature_data import make_clip_features
    from models.core.names import FEATURE_COLUMNS, FEATURE_MONITORING
    from models.training.intervals import AGE_BUCKETS

    table, _ = make_clip_features(60, all_moments=True, seed=4)  # 60 creations, 420 day ends
    created = pc.equal(table["event_timestamp"], table["created_at"]).to_numpy(False)
    ages = table["clip_age_hours"].to_numpy()
    preds = np.linspace(0.0, 100.0, int((~created).sum()))
    pred_ages = ages[~created][::-1].copy()  # the holdout's own ages, not the rows'
    prof = drift.reference_profile(table, preds, FEATURE_COLUMNS, holdout_ages=pred_ages)
    arrival = [n for n, h in FEATURE_MONITORING.items() if h == "arrival"]
    by_age = [n for n, h in FEATURE_MONITORING.items() if h == "by_age"]
    want = {"arrival": drift.profile(table.filter(pa.array(created)), arrival)}
    day_end = table.filter(pa.array(~created))
    for name, lo, hi in AGE_BUCKETS:
        rows = (ages[~created] >= lo) & (ages[~created] < hi)
        mine = (pred_ages >= lo) & (pred_ages < hi)
        want[name] = drift.profile(day_end.filter(pa.array(rows)), by_age,
                                   predictions=pa.array(preds[mine]))  # fmt: skip
    assert prof["cohorts"] == want
    assert [prof["cohorts"][n]["rows"] for n, _, _ in AGE_BUCKETS] == [60, 120, 180, 60]
    # at most max_rows creation rows, drawn with the seed as the day-end rows are
    few = drift.reference_profile(table, preds[:30], FEATURE_COLUMNS, max_rows=30,
                                  holdout_ages=pred_ages[:30])  # fmt: skip
    assert few["cohorts"]["arrival"]["rows"] == 30
    keep = np.sort(np.random.default_rng(0).choice(60, 30, replace=False))
    assert few["cohorts"]["arrival"] == drift.profile(
        table.filter(pa.array(created)).take(pa.array(keep)), arrival)
    # no ages given, or no ages in the rows: no cohorts (compared the old way)
    assert "cohorts" not in drift.reference_profile(table, preds, FEATURE_COLUMNS)
    plain = table.drop_columns(["clip_age_hours"])
    assert "cohorts" not in drift.reference_profile(
        plain, preds, [c for c in FEATURE_COLUMNS if c != "clip_age_hours"], holdout_ages=pred_ages)


def test_compare_goes_like_with_like_only_when_both_sides_have_cohorts():
    from bench.feature_data import make_clip_features
    from models.core.names import FEATURE_COLUMNS
    from models.monitoring.daily import current_profile

    table, _ = make_clip_features(200, all_moments=True, seed=5)
    created = pc.equal(table["event_timestamp"], table["created_at"]).to_numpy(False)
    ages = table["clip_age_hours"].to_numpy()[~created]
    ref = drift.reference_profile(table, ages, FEATURE_COLUMNS, holdout_ages=ages)
    day = table.filter(pa.array(~created))
    cur = current_profile(day.append_column("score", pa.array(ages)))
    t = drift.DriftThresholds()
    cohorts = drift.compare(ref, cur, t)
    assert cohorts["features"]["duration_s"]["cohort"] == "arrival"
    assert cohorts["prediction"]["cohort"] in ("creation_day", "1d", "3d", "7d")
    # the thresholds given reach the cohort comparison: at 0 every judged feature drifts
    zero = drift.DriftThresholds(wasserstein=0.0, jensen_shannon=0.0, noise_alpha=0)
    every = drift.compare(ref, cur, zero)
    judged = [n for n, f in every["features"].items() if f["statistic"] is not None]
    assert judged and every["drifted_features"] == sorted(judged)
    plain = {k: v for k, v in cur.items() if k != "cohorts"}
    for a, b in ((ref, plain), ({k: v for k, v in ref.items() if k != "cohorts"}, cur)):
        old = drift.compare(a, b, t)
        assert "cohort" not in old["features"]["duration_s"]
        assert old == drift.compare(
            {k: v for k, v in a.items() if k != "cohorts"},
            {k: v for k, v in b.items() if k != "cohorts"}, t)
