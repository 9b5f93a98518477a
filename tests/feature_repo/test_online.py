"""Online writes: the fast Redis writer and Feast's own write, read back with the Feast SDK."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
from support import clip_feature_rows, newest_per_clip

from feature_repo import online_values, online_write

SERVICE = "clip_quality_v1"


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


def stored_hashes(online_redis, prefix: str) -> dict[bytes, dict[bytes, bytes]]:
    with online_redis["client"]() as client:
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


def test_fast_and_stock_writers_store_identical_hashes(redis_store, online_redis, prefix):
    rows = clip_feature_rows(40, prefix, seed=3)
    latest = online_write.latest_per_entity(rows)
    online_write.write_stock(redis_store, latest.to_pandas())
    stock = stored_hashes(online_redis, prefix)
    with online_redis["client"]() as client:
        client.delete(*stock)
    online_write.write_fast(redis_store, rows)
    fast = stored_hashes(online_redis, prefix)
    assert len(stock) == 40
    assert fast == stock


def test_sqlite_store_serves_latest_values_through_feasts_write(sqlite_store, prefix):
    rows = clip_feature_rows(12, prefix, seed=5)
    result = online_write.write_online(sqlite_store, rows)
    assert (result.rows, result.written, result.method) == (12, 12, "stock")
    assert_serves(sqlite_store, newest_per_clip(rows))


@pytest.mark.parametrize("store_kind", ["redis-fast", "redis-stock", "sqlite"])
def test_an_older_row_never_overwrites_a_newer_one(store_kind, online_redis, request, prefix):
    store = request.getfixturevalue("sqlite_store" if store_kind == "sqlite" else "redis_store")

    def write(rows):
        if store_kind == "redis-stock":
            return online_write.write_stock(store, rows.to_pandas())
        return online_write.write_online(store, rows)

    base = online_write.latest_per_entity(clip_feature_rows(3, prefix, seed=7))
    t = datetime(2025, 4, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    write(with_time(base, t, fps=30.0, topic="new"))
    write(with_time(base, t - timedelta(days=1), fps=1.0, topic="older"))  # skipped
    ids = base.column("clip_id").to_pylist()
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [(30.0, "new")] * 3
    # the same time with other values (a re-run's correction) overwrites; Feast's own
    # write skips equal times
    result = write(with_time(base, t, fps=2.0, topic="same time"))
    expected = (30.0, "new") if store_kind == "redis-stock" else (2.0, "same time")
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [expected] * 3
    if store_kind != "redis-stock":
        assert (result.written, result.skipped, result.corrected) == (3, 0, 3)
    # Redis keeps the full timestamp: 300 ms later is newer; SQLite keeps whole seconds, so
    # it is the same time there, with other values: written too
    write(with_time(base, t + timedelta(milliseconds=300), fps=60.0, topic="300 ms later"))
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [(60.0, "300 ms later")] * 3
    result = write(with_time(base, t + timedelta(seconds=1), fps=90.0, topic="1 s later"))
    assert [(r["fps"], r["topic"]) for r in read_online(store, ids)] == [(90.0, "1 s later")] * 3
    if store_kind != "redis-stock":
        assert (result.written, result.skipped, result.corrected) == (3, 0, 0)


def test_fast_writer_reports_skipped_rows(redis_store, prefix):
    rows = clip_feature_rows(4, prefix)
    online_write.write_fast(redis_store, rows)
    again = online_write.write_fast(redis_store, rows)
    assert (again.written, again.skipped, again.corrected) == (0, 4, 0)
    assert [type(n) for n in (again.written, again.skipped, again.corrected)] == [int] * 3


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
        got = online_values.bulk_values(pa.chunked_array([arr]), value_type).to_pylist()
        assert got == feast_bytes(arr, value_type), (arr, value_type)
    # an integer feature that went through a float column (NaN for null)
    floats = pa.chunked_array([pa.array([2.0, float("nan"), None])])
    assert online_values.bulk_values(floats, ValueType.INT64).to_pylist() == feast_bytes(
        pa.array([2, None, None]), ValueType.INT64
    )


# -- the edges: no rows, chunks, a second view, the reported counts and times, key expiry, a
# chunk of newer and older rows, naive and nanosecond event times, the epoch, the join key
T = datetime(2025, 4, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def _timed(write):
    """(result, seconds measured around the call)."""
    start = time.perf_counter()
    result = write()
    return result, time.perf_counter() - start


def _stored_ts(store, ids: list[str]) -> list[datetime]:
    """The event time Feast reads back for each clip."""
    response = store.get_online_features(
        features=store.get_feature_service(SERVICE), entity_rows=[{"clip_id": c} for c in ids]
    )
    stamps = response.proto.results[1].event_timestamps  # [0] is the join key
    return [s.ToDatetime(tzinfo=UTC) for s in stamps]


def test_latest_per_entity_of_no_rows_is_no_rows(prefix):
    empty = clip_feature_rows(2, prefix).slice(0, 0)
    assert online_write.latest_per_entity(empty).equals(empty)


def test_latest_per_entity_keeps_each_row_without_a_clip_id(prefix):
    """Not merged as one clip, not dropped: left for the writer to refuse."""
    rows = clip_feature_rows(2, prefix).slice(0, 4)
    ids = pa.array([None, "a", None, "a"], pa.string())
    rows = rows.set_column(rows.schema.get_field_index("clip_id"), "clip_id", ids)
    latest = online_write.latest_per_entity(rows)
    assert latest.column("clip_id").to_pylist() == ["a", None, None]


@pytest.mark.parametrize("store_kind", ["redis_store", "sqlite_store"])
def test_no_rows_write_nothing(store_kind, online_redis, request, prefix):
    store = request.getfixturevalue(store_kind)
    result = online_write.write_online(store, clip_feature_rows(2, prefix).slice(0, 0))
    method = "fast" if store_kind == "redis_store" else "stock"
    assert (result.rows, result.written, result.skipped, result.method) == (0, 0, 0, method)


def test_stock_write_checks_every_chunk(sqlite_store, prefix):
    rows = clip_feature_rows(12, prefix, seed=5)
    first = online_write.write_online(sqlite_store, rows, chunk_size=5)
    assert (first.rows, first.written, first.skipped) == (12, 12, 0)
    assert_serves(sqlite_store, newest_per_clip(rows))
    again = online_write.write_online(sqlite_store, rows, chunk_size=5)
    assert (again.rows, again.written, again.skipped) == (12, 0, 12)


def test_write_online_passes_the_chunk_size_on(redis_store, prefix, monkeypatch):
    from feature_repo import online_batch

    sizes = []
    real = online_batch._non_empty

    def spy(batches):
        for batch in real(batches):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(online_batch, "_non_empty", spy)
    result = online_write.write_online(redis_store, clip_feature_rows(5, prefix), chunk_size=2)
    assert sizes == [2, 2, 1]
    assert (result.rows, result.written) == (5, 5)


def test_write_online_writes_the_view_it_is_given(redis_store, prefix):
    ids = [f"{prefix}s{i}" for i in range(3)]
    scores = pa.table(
        {
            "clip_id": ids,
            "event_timestamp": pa.array([T] * 3, pa.timestamp("us", tz="UTC")),
            "score": [10.0, 55.5, 99.0],
            "model_version": ["7", "7", "8"],
            "score_low": [5.0, 50.5, None],  # the last one: a model without intervals
            "score_high": [15.0, 60.5, None],
            "interval_level": [0.8, 0.8, None],
        }
    )
    result = online_write.write_online(redis_store, scores, "clip_scores")
    assert (result.written, result.method) == (3, "fast")
    fields = ["score", "model_version", "score_low", "score_high", "interval_level"]
    got = redis_store.get_online_features(
        features=[f"clip_scores:{f}" for f in fields],
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()
    assert {f: got[f] for f in fields} == {f: scores[f].to_pylist() for f in fields}


@pytest.mark.parametrize("writer", ["fast", "online-stock", "stock"])
def test_result_counts_and_seconds(writer, online_redis, request, prefix):
    store = request.getfixturevalue("sqlite_store" if writer == "online-stock" else "redis_store")
    rows = online_write.latest_per_entity(clip_feature_rows(4, prefix, seed=2))
    if writer == "fast":
        result, took = _timed(lambda: online_write.write_fast(store, rows))
    elif writer == "online-stock":
        result, took = _timed(lambda: online_write.write_online(store, rows))
    else:
        result, took = _timed(lambda: online_write.write_stock(store, rows.to_pandas()))
    method = "fast" if writer == "fast" else "stock"
    assert (result.rows, result.written, result.skipped, result.method) == (4, 4, 0, method)
    assert 0 < result.seconds <= took


def test_write_fast_refuses_a_store_that_is_not_fast_redis(sqlite_store, prefix):
    message = r"^write_fast needs a Redis online store \(redis_type: redis or redis_cluster\)$"
    with pytest.raises(ValueError, match=message):
        online_write.write_fast(sqlite_store, clip_feature_rows(1, prefix))


def test_key_ttl_expires_every_written_key(redis_store, online_redis, prefix):
    redis_store.config.online_store.key_ttl_seconds = 3600
    assert online_write.write_fast(redis_store, clip_feature_rows(3, prefix)).written == 3
    with online_redis["client"]() as client:
        keys = list(client.scan_iter(match=f"*{prefix}*".encode()))
        ttls = [client.ttl(k) for k in keys]
    assert len(keys) == 3
    assert all(3500 < t <= 3600 for t in ttls), ttls


def test_no_key_ttl_no_expiry(redis_store, online_redis, prefix):
    assert redis_store.config.online_store.key_ttl_seconds is None
    online_write.write_fast(redis_store, clip_feature_rows(2, prefix))
    with online_redis["client"]() as client:
        ttls = [client.ttl(k) for k in client.scan_iter(match=f"*{prefix}*".encode())]
    assert ttls == [-1, -1]


def test_a_chunk_of_newer_and_older_rows_writes_only_the_newer(redis_store, prefix):
    base = online_write.latest_per_entity(clip_feature_rows(4, prefix, seed=7))
    online_write.write_fast(redis_store, with_time(base, T, fps=30.0, topic="first"))
    ids = base.column("clip_id").to_pylist()
    mixed = pa.concat_tables(
        [
            with_time(base.slice(0, 2), T + timedelta(microseconds=1), fps=60.0, topic="newer"),
            with_time(base.slice(2, 2), T - timedelta(microseconds=1), fps=1.0, topic="older"),
        ]
    )
    result = online_write.write_fast(redis_store, mixed)
    assert (result.written, result.skipped) == (2, 2)
    served = [(r["fps"], r["topic"]) for r in read_online(redis_store, ids)]
    assert served == [(60.0, "newer")] * 2 + [(30.0, "first")] * 2


def test_naive_event_times_are_utc(redis_store, prefix):
    base = online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=3))
    ids = base.column("clip_id").to_pylist()
    naive = with_time(base, T, topic="naive")
    i = naive.schema.get_field_index("event_timestamp")
    naive = naive.set_column(
        i, "event_timestamp", pa.array([T.replace(tzinfo=None)] * 2, pa.timestamp("us"))
    )
    assert online_write.write_fast(redis_store, naive).written == 2
    assert _stored_ts(redis_store, ids) == [T, T]
    same = online_write.write_fast(redis_store, with_time(base, T, topic="naive"))
    assert (same.written, same.skipped) == (0, 2)  # the same time, the same values
    later = with_time(base, T + timedelta(microseconds=1))
    assert online_write.write_fast(redis_store, later).written == 2


def test_nanosecond_event_times_are_cut_to_microseconds(redis_store, prefix):
    base = online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=4)).to_pandas()
    ids = base["clip_id"].tolist()
    base["event_timestamp"] = pd.Series(
        [pd.Timestamp(T) + pd.Timedelta(nanoseconds=999)] * 2, dtype="datetime64[ns, UTC]"
    )
    assert online_write.write_online(redis_store, base).written == 2
    assert _stored_ts(redis_store, ids) == [T, T]
    base["event_timestamp"] = pd.Timestamp(T) + pd.Timedelta(microseconds=1)
    assert online_write.write_online(redis_store, base).written == 2


@pytest.mark.parametrize("store_kind", ["redis_store", "sqlite_store"])
def test_a_first_write_at_the_epoch_is_written(store_kind, online_redis, request, prefix):
    store = request.getfixturevalue(store_kind)
    rows = online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=6))
    epoch = with_time(rows, datetime(1970, 1, 1, tzinfo=UTC))
    result = online_write.write_online(store, epoch)
    assert (result.written, result.corrected) == (2, 0)  # new keys, not corrections


@pytest.mark.parametrize(
    "join_keys",
    [[("clip_number", "INT64")], [("clip_id", "STRING"), ("creator_id", "STRING")]],
    ids=["int", "two"],
)
def test_the_join_key_must_be_one_string(join_keys):
    from feast import Entity, FeatureView, Field, PushSource, ValueType
    from feast.types import Float64, from_value_type

    entities = [Entity(name=k, join_keys=[k], value_type=ValueType[t]) for k, t in join_keys]
    fv = FeatureView(
        name="odd_view",
        entities=entities,
        schema=[
            *[Field(name=k, dtype=from_value_type(ValueType[t])) for k, t in join_keys],
            Field(name="x", dtype=Float64),
        ],
        source=PushSource(name="odd_push", batch_source=clip_push_batch_source()),
    )
    with pytest.raises(ValueError, match="^odd_view: expected one string join key, got "):
        online_write._join_key(fv)


def clip_push_batch_source():
    from feature_repo.data_sources import clip_features_push

    return clip_features_push.batch_source
