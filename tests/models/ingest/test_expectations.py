"""When a day must have rows: the rule the contract check states."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("table", "ds", "clip_days", "expected"),
    [
        ("clips", "2026-01-01", [], True),  # new clips every day, the first day too
        ("engagement", "2026-01-01", [], False),  # nothing exists to be watched
        ("engagement", "2026-01-01", ["2026-01-01"], False),  # the same day is not before
        ("engagement", "2026-01-02", ["2026-01-01"], True),  # the day after: expected
        ("engagement", "2026-01-02", ["2026-01-02", "2026-01-03"], False),
        ("labels", "2026-01-05", ["2026-01-01"], False),
        ("experiment_events", "2026-01-05", ["2026-01-01"], False),
    ],
)
def test_rows_expected_states_the_rule(table, ds, clip_days, expected):
    from models.ingest.expectations import rows_expected

    got, why = rows_expected(table, ds, clip_days)
    assert got is expected and why


@pytest.mark.parametrize("late_us,passed", [(0, True), (1, False)])
def test_the_contract_check_holds_timestamps_to_the_future_bound(late_us, passed):
    """The GE suite agrees with the ingestion: on now + skew passes, a microsecond later
    fails, naming the column (#16, case 6)."""
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa

    from models.core.contract import LABELS, NotAfter
    from models.ingest.expectations import validate

    rule = NotAfter(datetime(2026, 1, 1, 21, tzinfo=UTC), timedelta(hours=2))
    at = rule.bound + timedelta(microseconds=late_us)
    df = pa.table(
        {
            "clip_id": ["c1", "c2"],
            "labeled_at": pa.array([rule.now, at], pa.timestamp("us", tz="UTC")),
            "quality_score": [50.0, 60.0],
            "ds": pa.array([at.date()] * 2, pa.date32()),
        }
    ).to_pandas()
    res = validate(df, LABELS, require_rows=True, not_after=rule)
    assert res.success is passed
    assert [(o.expectation, o.column, o.unexpected) for o in res.failed] == (
        [] if passed else [("expect_column_values_to_be_between", "labeled_at", 1)]
    )
    assert validate(df, LABELS, require_rows=True).success  # no bound given: not checked


def test_validation_does_not_fingerprint_the_rows(monkeypatch):
    """GE's batch fingerprint (an md5 over every row, twice per validation: 11 of 18 s on
    5M engagement rows) is never computed; the verdict is the suite's all the same."""
    import pyarrow as pa
    from great_expectations.execution_engine import pandas_execution_engine as engine

    from models.core.contract import LABELS
    from models.ingest.expectations import validate

    def hashed(df):
        raise AssertionError("the batch was fingerprinted")

    monkeypatch.setattr(engine, "hash_pandas_dataframe", hashed)
    monkeypatch.setattr(engine, "HASH_THRESHOLD", 1e9)  # GE's own value, restored after
    df = pa.table(
        {
            "clip_id": ["c1", "c1"],
            "labeled_at": pa.array([0, 0], pa.timestamp("us", tz="UTC")),
            "quality_score": [50.0, 160.0],
            "ds": pa.array([0, 0], pa.date32()),
        }
    ).to_pandas()
    res = validate(df, LABELS, require_rows=True)
    assert not res.success
    assert sorted((o.expectation, o.unexpected) for o in res.failed) == [
        ("expect_column_values_to_be_between", 1),
        ("expect_compound_columns_to_be_unique", 2),
    ]
