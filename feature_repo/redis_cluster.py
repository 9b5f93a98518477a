"""Redis Cluster for the online store's fast reads and writes: which node serves a key.

A cluster splits its keys into `CLUSTER_SLOTS` slots (CRC16 of the key, or of its
`{hash tag}`), each served by one primary node. A script call (`EVALSHA`) may only touch
keys of one slot, a command goes to the node of its key's slot. So the writer
(`online_batch.write_batches`) splits each batch by node (`ClusterRoutes`), sorted by slot
so that each check or upsert call holds keys of one slot, and sends each node its own
pipelined write; the reader (`online_store`) sends its HMGETs grouped by node
(`send_routed`). The node map is redis-py's `RedisCluster`'s (read from the cluster when the
client starts, refreshed after a `MOVED`).

Feast's keys have no hash tags unless an entity value holds braces; `key_slot` honours
them as Redis does (redis-py's `key_slot`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from feature_repo.redis_layout import send_packed

CLUSTER_SLOTS = 16384  # a Redis Cluster's key slots


def send_routed(client, keys: Sequence[bytes], commands: Sequence[bytes], *,
                retry: bool) -> list:  # fmt: skip
    """`send_packed` of single-key `commands` (one per key of `keys`), replies in their
    order. On a Redis Cluster (`RedisCluster`) they go out grouped by the node serving each
    key's slot: every node's write first, then every node's replies. A `MOVED` or `ASK`
    reply (the slots moved since the client's map was read, or are moving) refreshes the map
    and, under `retry`, tries once more; the other errors as `send_packed`."""
    import redis

    if not is_cluster(client):
        return send_packed(client.connection_pool, b"".join(commands), len(commands),
                           retry=retry)  # fmt: skip
    for attempt in (1, 2):
        groups: dict[str, tuple[object, list[int]]] = {}
        get_node = client.nodes_manager.get_node_from_slot
        for i, key in enumerate(keys):
            node = get_node(key_slot(key))
            groups.setdefault(node.name, (node, []))[1].append(i)
        try:
            return _send_groups(groups.values(), commands, len(keys))
        except redis.exceptions.AskError:  # MOVED (or ASK, a slot migrating): a new map
            client.nodes_manager.initialize()
            if not retry or attempt == 2:
                raise
        except (redis.ConnectionError, redis.TimeoutError):
            if not retry or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _send_groups(groups, commands: Sequence[bytes], n: int) -> list:
    """Each (node, indices)'s commands in one write on a connection of its own, all
    written before any is read; the replies in the commands' order."""
    import redis

    out: list = [None] * n
    held = []
    try:
        for node, idxs in groups:
            pool = node.redis_connection.connection_pool
            conn = pool.get_connection()
            held.append((pool, conn, idxs))
            conn.send_packed_command([b"".join(commands[i] for i in idxs)])
        for _, conn, idxs in held:
            try:
                for i in idxs:
                    out[i] = conn.read_response()
            except AttributeError as e:  # redis-py 7.4's torn-down hiredis parser
                raise redis.ConnectionError("connection closed during the read") from e
    except BaseException:
        for _, conn, _ in held:  # replies may be left unread on them
            conn.disconnect()
        raise
    finally:
        for pool, conn, _ in held:
            pool.release(conn)
    return out


def is_cluster(client) -> bool:
    """Whether `client` is redis-py's `RedisCluster`."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def key_slot(key: bytes) -> int:
    """The Redis Cluster slot of a key (CRC16 of its `{hash tag}` when it has one)."""
    from redis.crc import key_slot as slot

    return slot(key)


class ClusterRoutes:
    """Where a batch's rows go on a Redis Cluster: per row its key's slot (CRC16, hash tags
    honoured: `redis_layout.key_slot`), the node serving that slot in the client's map (read
    once per write; a slot moved since is answered `MOVED` by its old node, which fails the
    write: re-running it after the move completes it, writes being idempotent)."""

    def __init__(self, client, key_col: str, raw_keys: Callable[[pa.Array], pa.Array]) -> None:
        self.key_col, self.raw_keys = key_col, raw_keys
        nodes = client.get_primaries()
        index = {node.name: i for i, node in enumerate(nodes)}
        cache = client.nodes_manager.slots_cache
        missing = [s for s in range(CLUSTER_SLOTS) if not cache.get(s)]
        if missing:
            raise ValueError(f"the Redis Cluster serves no node for {len(missing)} slot(s) "
                             f"(first {missing[0]}): nothing was written")  # fmt: skip
        self.owner = np.array([index[cache[s][0].name] for s in range(CLUSTER_SLOTS)])
        self.clients = [node.redis_connection for node in nodes]

    def split(self, batch: pa.Table) -> list[tuple[Any, pa.Table, np.ndarray]]:
        """(node client, its rows sorted by slot, their slots) per node with rows."""
        ids = batch.column(self.key_col).combine_chunks().cast(pa.string())
        raw = self.raw_keys(ids).to_pylist()
        slots = np.fromiter((key_slot(k) for k in raw), dtype=np.int64, count=len(raw))
        node = self.owner[slots]
        order = np.lexsort((slots, node))
        cuts = np.flatnonzero(np.diff(node[order])) + 1
        out = []
        for rows in np.split(order, cuts):
            if len(rows):
                out.append((self.clients[node[rows[0]]], batch.take(rows), slots[rows]))
        return out
