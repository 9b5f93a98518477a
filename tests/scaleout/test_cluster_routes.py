"""How the fast reader and writer find a key's node on a real 3-node Redis Cluster (#21):
reads grouped by node come back in the keys' order, a stale slot map is refreshed on
`MOVED` (and fails without a retry), a batch is split by node and sorted by slot, a script
call never holds keys of two slots, and a cluster with an unserved slot writes nothing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import redis

from feature_repo import online_batch
from feature_repo import redis_cluster as routing
from feature_repo.redis_cluster import CLUSTER_SLOTS, ClusterRoutes, key_slot, send_routed
from feature_repo.redis_layout import command


@pytest.fixture
def cluster(redis_cluster):
    client = redis_cluster["client"]()
    yield client
    client.close()


def _keys(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


def test_reads_grouped_by_node_come_back_in_order(cluster):
    keys = _keys("routes-a-", 60)
    for i, key in enumerate(keys):
        cluster.set(key, i)
    nodes = {cluster.nodes_manager.get_node_from_slot(key_slot(k)).name for k in keys}
    assert len(nodes) == 3  # the keys are on every node
    got = send_routed(cluster, keys, [command(b"GET", k) for k in keys], retry=False)
    assert got == [str(i).encode() for i in range(60)]
    assert send_routed(cluster, [], [], retry=False) == []


def test_a_stale_slot_map_is_refreshed_on_moved(cluster, monkeypatch):
    keys = _keys("routes-b-", 20)
    for i, key in enumerate(keys):
        cluster.set(key, i)
    moved = []
    real = routing._send_groups

    def counted(groups, commands, n):
        try:
            return real(groups, commands, n)
        except redis.exceptions.MovedError:
            moved.append(1)
            raise

    monkeypatch.setattr(routing, "_send_groups", counted)

    def stale() -> None:  # every slot of the keys mapped to another node than its own
        cache = cluster.nodes_manager.slots_cache  # a refresh makes a new map: read it now
        primaries = cluster.get_primaries()
        for key in keys:
            slot = key_slot(key)
            own = cache[slot][0]
            cache[slot] = [next(n for n in primaries if n.name != own.name)]

    stale()
    with pytest.raises(redis.exceptions.MovedError):
        send_routed(cluster, keys, [command(b"GET", k) for k in keys], retry=False)
    assert len(moved) == 1
    stale()
    got = send_routed(cluster, keys, [command(b"GET", k) for k in keys], retry=True)
    assert got == [str(i).encode() for i in range(20)]
    assert len(moved) == 2  # the stale map was met, refreshed, and the read tried again


def test_a_batch_is_split_by_node_and_sorted_by_slot(cluster):
    ids = [f"clip-{i}" for i in range(500)]
    raw = {c: f"key:{c}".encode() for c in ids}
    routes = ClusterRoutes(cluster, "clip_id",
                           lambda a: pa.array([raw[c] for c in a.to_pylist()], pa.binary()))  # fmt: skip
    batch = pa.table({"clip_id": ids, "n": list(range(500))})
    parts = routes.split(batch)
    assert sum(p[1].num_rows for p in parts) == 500 and len(parts) == 3
    seen = set()
    for client, rows, slots in parts:
        assert list(slots) == sorted(slots)
        node = client.connection_pool.connection_kwargs["port"]
        for cid, slot in zip(rows.column("clip_id").to_pylist(), slots.tolist(), strict=True):
            assert slot == key_slot(raw[cid])
            assert cluster.nodes_manager.get_node_from_slot(slot).port == node
            seen.add(cid)
    assert seen == set(ids)


def test_a_script_call_holds_keys_of_one_slot_and_at_most_the_call_size():
    slots = np.array([3] * 120 + [7] + [9] * 49 + [9])
    bounds = online_batch._call_bounds(len(slots), slots)
    assert bounds.tolist() == [0, 50, 100, 120, 121, 171]
    assert online_batch._call_bounds(120, None).tolist() == [0, 50, 100, 120]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        assert len(set(slots[lo:hi])) == 1 and hi - lo <= online_batch.KEYS_PER_CALL


def test_a_cluster_with_an_unserved_slot_writes_nothing(cluster):
    cache = cluster.nodes_manager.slots_cache
    held = cache.pop(CLUSTER_SLOTS - 1)
    try:
        with pytest.raises(ValueError, match=r"serves no node for 1 slot\(s\) \(first 16383\)"):
            ClusterRoutes(cluster, "clip_id", lambda a: a)
    finally:
        cache[CLUSTER_SLOTS - 1] = held


def test_a_parser_torn_down_mid_read_is_a_dropped_connection(cluster):
    """redis-py 7.4's hiredis parser, torn down by a disconnect while it reads, fails with
    AttributeError: on a cluster too it is a dropped connection (which a read may retry)."""
    keys = _keys("routes-c-", 30)
    send_routed(cluster, keys, [command(b"EXISTS", k) for k in keys], retry=False)  # connected

    def torn(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'feed'")

    for node in cluster.get_primaries():  # the connection each node's pool hands out next
        pool = node.redis_connection.connection_pool
        conn = pool.get_connection()
        conn.read_response = torn
        pool.release(conn)
    with pytest.raises(redis.ConnectionError, match="^connection closed during the read$"):
        send_routed(cluster, keys, [command(b"EXISTS", k) for k in keys], retry=False)


def test_a_read_retried_after_a_dropped_connection_gets_its_replies(cluster):
    keys = _keys("routes-d-", 30)
    for i, key in enumerate(keys):
        cluster.set(key, i)
    send_routed(cluster, keys, [command(b"GET", k) for k in keys], retry=False)  # connected
    failed = []

    def torn_once(conn):
        real = conn.read_response

        def read(*args, **kwargs):
            if not failed:
                failed.append(conn)
                raise AttributeError("'NoneType' object has no attribute 'feed'")
            return real(*args, **kwargs)

        return read

    for node in cluster.get_primaries():
        pool = node.redis_connection.connection_pool
        conn = pool.get_connection()
        conn.read_response = torn_once(conn)
        pool.release(conn)
    got = send_routed(cluster, keys, [command(b"GET", k) for k in keys], retry=True)
    assert len(failed) == 1 and got == [str(i).encode() for i in range(30)]
