"""Online writes: the fast Redis writer and Feast's own write, read back with the Feast SDK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import redis
from support import clip_feature_rows

from feature_repo import online_values, online_write

SERVICE = "clip_quality_v1"


def newest_per_clip(rows: pa.Table) -> dict[str, dict]:
    """The newest row of each clip, computed independently of the code under test."""
    out: dict[str, dict] = {}
    for row in rows.to_pylist():
        held = out.get(row["clip_id"])
        if held is None or row["event_timestamp"] > held["event_timestamp"]:
            out[row["clip_id"]] = row
    return out


def read_online(store, clip_ids: list[str]) -> list[dict]:
    """What the Feast SDK serves for the feature service, one dict per clip."""
    response = store.get_online_features(
        features=store.get_feature_service(SERVICE),
        entity_rows=[{"clip_id": c} for c in clip_ids],
    ).to_dict()
    return [{k: v[i] for k, v in response.items()} for i in range(len(clip_ids))]


def assert_serves(store, expected: dict[str, dict]) -> None:
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    ids = sorted(expected)
    for clip_id, got in zip(ids, read_online(store, ids), strict=True):
        want = {"clip_id": clip_id, **{k: expected[clip_id][k] for k in CLIP_FEATURE_NAMES}}
        assert got == want, clip_id


def with_time(rows: pa.Table, when: datetime, **values) -> pa.Table:
    """`rows` with every event_timestamp set to `when` and some features overwritten."""
    rows = rows.set_column(
        rows.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array([when] * rows.num_rows, pa.timestamp("us", tz="UTC")),
    )
    for name, value in values.items():
        i = rows.schema.get_field_index(name)
        rows = rows.set_column(
            i, name, pa.array([value] * rows.num_rows, rows.schema.field(i).type)
        )
    return rows


def stored_hashes(redis_server, prefix: str) -> dict[bytes, dict[bytes, bytes]]:
    with redis.Redis(host=redis_server["host"], port=redis_server["port"]) as client:
        return {k: client.hgetall(k) for k in client.scan_iter(match=f"*{prefix}*".encode())}


def test_fast_writer_serves_latest_values_through_feast(redis_store, prefix):
    rows = clip_feature_rows(30, prefix)
    result = online_write.write_fast(redis_store, rows, chunk_size=7)
    assert (result.rows, result.written, result.skipped, result.method) == (30, 30, 0, "fast")
    assert_serves(redis_store, newest_per_clip(rows))


def test_write_online_picks_the_fast_writer_on_redis(redis_store, prefix):
    rows = clip_feature_rows(5, prefix)
    assert online_write.write_online(redis_store, rows.to_pandas()).method == "fast"
    assert_serves(redis_store, newest_per_clip(rows))


def test_fast_and_stock_writers_store_identical_hashes(redis_store, redis_server, prefix):
    rows = clip_feature_rows(40, prefix, seed=3)
    latest = online_write.latest_per_entity(rows)
    online_write.write_stock(redis_store, latest.to_pandas())
    stock = stored_hashes(redis_server, prefix)
    with redis.Redis(host=redis_server["host"], port=redis_server["port"]) as client:
        client.delete(*stock)
    online_write.write_fast(redis_store, rows)
    fast = stored_hashes(redis_server, prefix)
    assert len(stock) == 40
    assert fast == stock


def test_sqlite_store_serves_latest_values_through_feasts_write(sqlite_store, prefix):
    rows = clip_feature_rows(12, prefix, seed=5)
    result = online_write.write_online(sqlite_store, rows)
    assert (result.rows, result.written, result.method) == (12, 12, "stock")
    assert_serves(sqlite_store, newest_per_clip(rows))


@pytest.mark.parametrize("store_kind", ["redis-fast", "redis-stock", "sqlite"])
def test_an_older_row_never_overwrites_a_newer_one(store_kind, request, prefix):
    store = request.getfixturevalue("sqlite_store" if store_kind == "sqlite" else "redis_store")

    def write(rows):
        if store_kind == "redis-stock":
            return online_write.write_stock(store, rows.to_pandas())
        return online_write.write_online(store, rows)

    base = online_write.latest_per_entity(clip_feature_rows(3, prefix, seed=7))
    t = datetime(2025, 4, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    write(with_time(base, t, fps=30.0, topic="new"))
    write(with_time(base, t - timedelta(days=1), fps=1.0, topic="older"))  # skipped
    write(with_time(base, t, fps=2.0, topic="same time"))  # not newer: skipped
    ids = base.column("clip_id").to_pylist()
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [(30.0, "new")] * 3
    # Redis keeps the full timestamp, so 300 ms later is newer; SQLite keeps whole seconds
    write(with_time(base, t + timedelta(milliseconds=300), fps=60.0, topic="300 ms later"))
    expected = (30.0, "new") if store_kind == "sqlite" else (60.0, "300 ms later")
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [expected] * 3
    result = write(with_time(base, t + timedelta(seconds=1), fps=90.0, topic="1 s later"))
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [(90.0, "1 s later")] * 3
    if store_kind != "redis-stock":
        assert (result.written, result.skipped) == (3, 0)


def test_fast_writer_reports_skipped_rows(redis_store, prefix):
    rows = clip_feature_rows(4, prefix)
    online_write.write_fast(redis_store, rows)
    again = online_write.write_fast(redis_store, rows)
    assert (again.written, again.skipped) == (0, 4)


def test_latest_per_entity_keeps_the_newest_row_of_each_clip(prefix):
    rows = clip_feature_rows(20, prefix, seed=11)
    latest = online_write.latest_per_entity(rows)
    expected = newest_per_clip(rows)
    assert latest.num_rows == len(expected)
    for row in latest.to_pylist():
        assert row == expected[row["clip_id"]]


def test_fast_writer_rejects_rows_missing_a_feature(redis_store, prefix):
    rows = clip_feature_rows(2, prefix).drop_columns(["fps"])
    with pytest.raises(ValueError, match="fps"):
        online_write.write_fast(redis_store, rows)


def test_value_encoding_matches_feast_for_edge_values():
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    def feast_bytes(arr: pa.Array, value_type):
        values = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
        return [b"$%d\r\n%s\r\n" % (len(v), v) for v in (p.SerializeToString() for p in values)]

    cases = [
        (pa.array([0, 1, 127, 128, 16383, 16384, 2**63 - 1, -1, -(2**63)]), ValueType.INT64),
        (pa.array([3, None, -300]), ValueType.INT64),
        (pa.array([0.0, -0.0, 1.5, float("inf"), None, float("nan"), 5e-324]), ValueType.DOUBLE),
        (pa.array(["", "a", None, "日本語", "x" * 300]), ValueType.STRING),
        (pa.array([True, False, None]), ValueType.BOOL),
    ]
    for arr, value_type in cases:
        got = online_values.bulk_values(pa.chunked_array([arr]), value_type)
        assert got == feast_bytes(arr, value_type), (arr, value_type)
    # an integer feature that went through a float column (NaN for null)
    floats = pa.chunked_array([pa.array([2.0, float("nan"), None])])
    assert online_values.bulk_values(floats, ValueType.INT64) == feast_bytes(
        pa.array([2, None, None]), ValueType.INT64
    )
