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
