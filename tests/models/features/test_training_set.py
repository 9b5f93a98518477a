"""Point-in-time training sets: Feast's offline store and the DuckDB ASOF join agree, and
nothing known only after a scoring moment (a later feature row, a later label) leaks in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.core.warehouse import Warehouse, connect
from models.features import training_set as ts

DAY0 = datetime(2025, 3, 1, tzinfo=UTC)
CUTOFF = datetime(2025, 3, 4, 12, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def day_end(d: datetime) -> datetime:
    return datetime.combine(d.date(), datetime.max.time(), UTC)


def feature_rows(clip_id: str, n: int, created: datetime) -> list[dict]:
    """A clip's creation row and 7 day-end rows; every feature encodes (clip n, moment m)."""
    from feast.types import Bool, Float64, Int64

    from feature_repo.feature_views import CLIP_FEATURE_FIELDS

    moments = [created] + [day_end(created + timedelta(days=d)) for d in range(7)]
    rows = []
    for m, at in enumerate(moments):
        row = {
            "clip_id": clip_id,
            "creator_id": f"creator{n % 2}",
            "created_at": created,
            "event_timestamp": at,
        }
        for f in CLIP_FEATURE_FIELDS:
            if f.dtype == Float64:
                row[f.name] = n * 100 + m + 0.25
            elif f.dtype == Int64:
                row[f.name] = n * 100 + m
            elif f.dtype == Bool:
                row[f.name] = m % 2 == 0
            else:
                row[f.name] = f"s{m}"
        row["creator_label_mean"] = None if m == 0 else row["creator_label_mean"]
        rows.append(row)
    return rows


def write_table(home, table: str, rows: list[dict], time_cols: list[str]) -> None:
    """Write `rows` as the Hive-partitioned warehouse table (ds from the first time column)."""
    by_ds: dict[str, list[dict]] = {}
    for row in rows:
        by_ds.setdefault(row[time_cols[0]].date().isoformat(), []).append(row)
    for ds, part in by_ds.items():
        t = pa.Table.from_pylist(part)
        for c in time_cols:
            t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(TS))
        t = t.append_column("ds", pa.array([datetime.fromisoformat(ds).date()] * len(part)))
        out = home / "warehouse" / table / f"ds={ds}" / "part-0.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, out)


@pytest.fixture
def warehouse(home, monkeypatch) -> Warehouse:
    """Three clips. c0: labelled before the cutoff, relabelled after it. c1: labelled only
    after the cutoff. c2: created after day 0, labelled twice before the cutoff."""
    monkeypatch.delenv("CLIPFLOW_REDIS", raising=False)
    rows = (
        feature_rows("c0", 0, DAY0 + timedelta(hours=9, microseconds=123))
        + feature_rows("c1", 1, DAY0 + timedelta(hours=10))
        + feature_rows("c2", 2, DAY0 + timedelta(days=2, hours=8))
    )
    write_table(home, "clip_features", rows, ["event_timestamp", "created_at"])
    labels = [
        {"clip_id": "c0", "labeled_at": DAY0 + timedelta(days=2), "quality_score": 40.0},
        {"clip_id": "c0", "labeled_at": CUTOFF + timedelta(seconds=1), "quality_score": 95.0},
        {"clip_id": "c1", "labeled_at": CUTOFF + timedelta(days=1), "quality_score": 70.0},
        {"clip_id": "c2", "labeled_at": DAY0 + timedelta(days=3), "quality_score": 20.0},
        {"clip_id": "c2", "labeled_at": CUTOFF, "quality_score": 25.0},
    ]
    write_table(home, "labels", labels, ["labeled_at"])
    return Warehouse(home)


@pytest.fixture
def store(warehouse):
    from feature_repo import config

    store = config.feature_store()
    config.apply(store)
    return store


def test_entity_rows_are_labelled_scoring_moments_up_to_the_cutoff(warehouse):
    rows = ts.entity_rows(connect(), warehouse, CUTOFF).to_pylist()
    c0 = DAY0 + timedelta(hours=9, microseconds=123)
    c2 = DAY0 + timedelta(days=2, hours=8)
    # the cutoff is day 3 noon: c0's day-ends of days 0-2, c2's of day 2; the newest
    # labels known then (c0 is relabelled, c1 labelled, only after it)
    expected = [("c0", c0, 40.0)] + [
        ("c0", day_end(DAY0 + timedelta(days=d)), 40.0) for d in range(3)
    ]
    expected += [("c2", c2, 25.0), ("c2", day_end(c2), 25.0)]
    assert [(r["clip_id"], r["event_timestamp"], r["quality_score"]) for r in rows] == expected
    assert {r["creator_id"] for r in rows if r["clip_id"] == "c2"} == {"creator0"}
    assert all(r["created_at"] in (c0, c2) for r in rows)


def test_a_label_known_only_after_the_cutoff_does_not_leak(warehouse):
    early = ts.entity_rows(connect(), warehouse, DAY0 + timedelta(days=2, hours=1))
    assert set(early.column("clip_id").to_pylist()) == {"c0"}  # c2 labelled on day 3
    late = ts.entity_rows(connect(), warehouse, CUTOFF + timedelta(days=2))
    scores = dict(
        zip(
            late.column("clip_id").to_pylist(),
            late.column("quality_score").to_pylist(),
            strict=True,
        )
    )
    assert scores == {"c0": 95.0, "c1": 70.0, "c2": 25.0}  # the newest label known then


def test_feast_and_duckdb_training_sets_agree_row_for_row(warehouse, store):
    con = connect()
    entity = ts.entity_rows(con, warehouse, CUTOFF)
    via_feast = ts.training_set_feast(store, entity)
    via_duckdb = ts.training_set_duckdb(con, warehouse, entity, ts.service_features(store))
    assert via_duckdb.num_rows == entity.num_rows == 6
    assert ts.compare(via_feast, via_duckdb) == []
    # each moment gets the feature row of that very moment (feature m of clip n = 100n + m)
    got = via_duckdb.select(["clip_id", "views_7d", "creator_label_mean"]).to_pylist()
    assert [r["views_7d"] for r in got] == [0, 1, 2, 3, 200, 201]
    assert got[0]["creator_label_mean"] is None and got[1]["creator_label_mean"] == 1.25


def test_a_future_feature_row_does_not_leak(warehouse, store):
    """Entity moments between feature rows get the row before; the planted next row (one
    microsecond later than the moment, or a day later) never shows."""
    c0 = DAY0 + timedelta(hours=9, microseconds=123)
    moments = [
        c0 - timedelta(seconds=1),  # before the clip existed: nulls
        c0,  # exactly the creation row
        day_end(c0) - timedelta(microseconds=1),  # the day-end row is 1 us in the future
        day_end(c0) + timedelta(hours=5),
    ]
    entity = pa.table(
        {
            "clip_id": ["c0"] * 4,
            "event_timestamp": pa.array(moments, TS),
            "quality_score": [1.0] * 4,
        }
    )
    via_feast = ts.training_set_feast(store, entity)
    via_duckdb = ts.training_set_duckdb(connect(), warehouse, entity, ts.service_features(store))
    assert ts.compare(via_feast, via_duckdb) == []
    assert via_duckdb.column("views_1d").to_pylist() == [None, 0, 0, 1]
    assert via_duckdb.column("topic").to_pylist() == [None, "s0", "s0", "s1"]


def test_compare_reports_differences():
    a = pa.table(
        {
            "clip_id": ["x", "y"],
            "event_timestamp": pa.array([DAY0, DAY0], TS),
            "f": [1.0, None],
            "s": ["a", None],
        }
    )
    b = a.take([1, 0])  # order does not matter
    assert ts.compare(a, b) == []
    nudged = a.set_column(2, "f", pa.array([1.0 + 1e-12, None]))
    assert ts.compare(a, nudged) == []
    changed = a.set_column(2, "f", pa.array([1.0, 2.0]))
    assert ts.compare(a, changed)[0].startswith("f: 1 rows differ")
    assert ts.compare(a, a.set_column(3, "s", pa.array(["a", "b"])))[0].startswith("s:")
    assert "row counts differ" in ts.compare(a, a.slice(0, 1))[-1]
    assert "columns differ" in ts.compare(a, a.drop_columns(["s"]))[0]
