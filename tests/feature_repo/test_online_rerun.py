"""Re-runs and races in the online write: a row of the stored event time with other values
(a re-run day's correction) overwrites; an equal row is skipped; an older row never wins,
even when another writer writes a newer one while ours is in flight. Real Redis, real Feast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import redis
from support import clip_feature_rows

from feature_repo import online_write
from feature_repo.feature_views import CLIP_FEATURE_NAMES

T = datetime(2025, 4, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def with_time(rows: pa.Table, when: datetime, **values) -> pa.Table:
    """`rows` at event time `when`, with some features set to one value."""
    out = rows.to_pylist()
    for row in out:
        row.update(event_timestamp=when, **values)
    return pa.Table.from_pylist(out, schema=rows.schema)


def read_online(store, ids: list[str]) -> list[dict]:
    """What the Feast SDK serves for the feature service, one dict per clip."""
    got = store.get_online_features(
        features=store.get_feature_service("clip_quality_v1"),
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()
    return [{k: v[i] for k, v in got.items()} for i in range(len(ids))]


def _client(online_redis) -> redis.Redis:
    return online_redis["client"]()


def _served(store, ids: list[str]) -> list[tuple]:
    return [(r["fps"], r["topic"], r[CLIP_FEATURE_NAMES[-1]]) for r in read_online(store, ids)]


@pytest.mark.parametrize("store_kind", ["redis_store", "sqlite_store"])
def test_a_rerun_overwrites_changed_rows_of_the_same_time_and_skips_equal_ones(
    store_kind, online_redis, request, prefix
):
    store = request.getfixturevalue(store_kind)
    base = with_time(online_write.latest_per_entity(clip_feature_rows(4, prefix, seed=2)), T)
    ids = base.column("clip_id").to_pylist()
    assert online_write.write_online(store, base).written == 4
    same = online_write.write_online(store, base)
    assert (same.written, same.skipped, same.corrected) == (0, 4, 0)
    # clips 0 and 1 corrected: one in its first feature, one only in its last
    last = CLIP_FEATURE_NAMES[-1]
    fixed = base.to_pylist()
    fixed[0]["fps"] = fixed[0]["fps"] + 1.0
    fixed[1][last] = (fixed[1][last] or 0) + 7
    rerun = pa.Table.from_pylist(fixed, schema=base.schema)
    result = online_write.write_online(store, rerun)
    assert (result.rows, result.written, result.skipped, result.corrected) == (4, 2, 2, 2)
    want = [(r["fps"], r["topic"], r[last]) for r in fixed]
    assert _served(store, ids) == want


def test_a_stored_hash_missing_a_field_is_rewritten(redis_store, online_redis, prefix):
    """A field the stored hash lacks (a feature added since) counts as a changed value."""
    from feature_repo.redis_layout import ViewFields, string_keys

    rows = with_time(online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=4)), T)
    online_write.write_fast(redis_store, rows)
    fv = redis_store.get_feature_view("clip_features")
    fields = ViewFields.of(fv, redis_store.config)
    key = string_keys("clip_id", rows.column("clip_id").to_pylist()[:1], redis_store.config)[0]
    with _client(online_redis) as client:
        assert client.hdel(key, fields.fields[-1]) == 1
    result = online_write.write_fast(redis_store, rows)
    assert (result.written, result.skipped, result.corrected) == (1, 1, 1)
    with _client(online_redis) as client:
        assert client.hexists(key, fields.fields[-1])


def test_a_newer_row_written_while_ours_is_in_flight_wins(
    redis_store, online_redis, prefix, monkeypatch
):
    """Between our check of the stored times and our write, another clipflow writer's newer
    row cannot land: it waits for the writer lease, then wins over our older row."""
    import threading

    from feature_repo.redis_layout import DECIDE_SHA

    base = online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=6))
    ids = base.column("clip_id").to_pylist()
    real, other, seen = online_write._send_packed, [], threading.Event()
    first_check = threading.Lock()  # on a cluster each node's check runs in its own thread

    def other_writer_after_our_check(client, payload, n):
        replies = real(client, payload, n)
        if DECIDE_SHA in payload[:100]:  # our check: stored times read
            with first_check:
                start = not other
                if start:
                    newer = with_time(base, T, fps=99.0, topic="newer")
                    other.append(threading.Thread(target=online_write.write_fast,
                                                  args=(redis_store, newer)))  # fmt: skip
                    other[0].start()
            if start:
                seen.wait(timeout=2.0)  # gives the other writer time to land, were it able to
        return replies

    monkeypatch.setattr(online_write, "_send_packed", other_writer_after_our_check)
    ours = online_write.write_fast(
        redis_store, with_time(base, T - timedelta(hours=1), topic="older")
    )
    waited = bool(other) and other[0].is_alive()  # still waiting for our lease at our end
    monkeypatch.setattr(online_write, "_send_packed", real)
    other[0].join(timeout=30)
    assert not other[0].is_alive()
    assert ours.written == 2
    assert [(r["fps"], r["topic"]) for r in read_online(redis_store, ids)] == [(99.0, "newer")] * 2
    assert waited


def test_a_writer_that_cannot_get_the_lease_writes_nothing(
    redis_store, online_redis, prefix, monkeypatch
):
    from feature_repo import online_batch

    monkeypatch.setattr(online_batch, "LEASE_WAIT_S", 0.3)
    rows = online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=4))
    name = f"clipflow:online-writer:{redis_store.config.project}"
    with _client(online_redis) as client:
        held = client.lock(name, timeout=30)
        assert held.acquire(blocking=False)
        try:
            message = f"another clipflow writer held the online store's writer lease '{name}'"
            with pytest.raises(redis.exceptions.LockError, match=message):
                online_write.write_fast(redis_store, rows)
            assert not list(client.scan_iter(match=f"*{prefix}*".encode()))
        finally:
            held.release()
    assert online_write.write_fast(redis_store, rows).written == 2


def test_the_upsert_is_loaded_again_after_a_script_flush(redis_store, online_redis, prefix):
    """Redis forgets scripts on a restart or SCRIPT FLUSH: each write loads it again."""
    rows = online_write.latest_per_entity(clip_feature_rows(3, prefix, seed=8))
    online_write.write_fast(redis_store, with_time(rows, T, topic="first"))
    with _client(online_redis) as client:
        client.script_flush()
    result = online_write.write_fast(redis_store, with_time(rows, T, topic="second"))
    assert (result.written, result.corrected) == (3, 3)
    ids = rows.column("clip_id").to_pylist()
    assert [r["topic"] for r in read_online(redis_store, ids)] == ["second"] * 3


def test_a_corrected_row_gets_the_key_ttl_again(redis_store, online_redis, prefix):
    rows = with_time(online_write.latest_per_entity(clip_feature_rows(1, prefix, seed=9)), T)
    online_write.write_fast(redis_store, rows)
    redis_store.config.online_store.key_ttl_seconds = 3600
    online_write.write_fast(redis_store, with_time(rows, T, topic="fixed"))
    with _client(online_redis) as client:
        ttls = [client.ttl(k) for k in client.scan_iter(match=f"*{prefix}*".encode())]
    assert len(ttls) == 1 and 3500 < ttls[0] <= 3600, ttls


def test_a_failed_write_reports_its_own_error_not_the_leases(
    redis_store, online_redis, prefix, monkeypatch
):
    """Redis gone mid-write: the error is the write's, though releasing the lease fails too."""
    import redis.lock

    def down(client, payload, n):
        raise redis.ConnectionError("the write's own error")

    def release_fails(self):
        raise redis.ConnectionError("the lease's release")

    monkeypatch.setattr(online_write, "_send_packed", down)
    monkeypatch.setattr(redis.lock.Lock, "release", release_fails)
    rows = online_write.latest_per_entity(clip_feature_rows(2, prefix, seed=5))
    try:
        with pytest.raises(redis.ConnectionError, match="the write's own error"):
            online_write.write_fast(redis_store, rows)
    finally:  # the lease this test could not release: other tests share the Redis
        monkeypatch.undo()
        with _client(online_redis) as client:
            client.delete(f"clipflow:online-writer:{redis_store.config.project}")
