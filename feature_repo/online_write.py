"""Write the latest feature row per clip to the online store, fast and Feast-compatible.

Feast 0.67's own Redis write (`FeatureStore.write_to_online_store`) converts Arrow to
protobuf one value at a time, hashes every field name again for every row and reads the
stored timestamp key by key. `write_fast` writes exactly the bytes Feast writes (the Redis
key per entity, hash fields and `_ts:<view>` timestamp of `feature_repo.redis_layout`, which
the reader `FastRedisOnlineStore` uses too, and the serialized `ValueProto`s of
`feature_repo.online_values`), so Feast's `get_online_features` and `feast serve` read them
back, but it encodes a column at a time (numpy, or protobuf once per distinct value) and
sends a chunk of keys as one pre-encoded RESP pipeline, on a client built from the store's
connection string by `models.core.redis_url` (database, password and TLS kept).

Like Feast it never lets an older row overwrite a newer one: the stored `_ts` fields of a
chunk are read in one pipelined round trip and a row is written only if its event time is
strictly newer (Feast 0.67 compares at full precision, not whole seconds). As in Feast,
check and write are two round trips, not atomic: two writers racing on one clip can still
let the older row win; the online store has one writer (the online push sensor).

Other online stores (SQLite) use Feast's own write, after the same check at the store's
precision, whole seconds (Feast's SQLite store upserts unconditionally).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo.online_values import bulk_timestamps, bulk_values
from feature_repo.redis_layout import (
    ViewFields,
    bulk,
    command,
    command_head,
    send_packed,
    string_keys,
)
from models.core.redis_url import redis_client

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore, FeatureView

FEATURE_VIEW = "clip_features"
DEFAULT_CHUNK = 5_000


@dataclass(frozen=True)
class WriteResult:
    rows: int  # rows offered, after keeping the latest per entity
    written: int  # keys written
    skipped: int  # rows not newer than what the store holds
    seconds: float
    method: str  # "fast" or "stock"


def latest_per_entity(
    table: pa.Table, key: str = "clip_id", ts: str = "event_timestamp"
) -> pa.Table:
    """The newest row of each `key` (by `ts`; the first of them when tied)."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[(key, "ascending"), (ts, "descending")])
    table = table.take(order)
    ids = table.column(key).combine_chunks()
    first = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    keep = pa.concat_arrays([pa.array([True]), first.fill_null(True)])
    return table.filter(keep)


def write_online(
    store: FeatureStore,
    data: pa.Table | pd.DataFrame,
    feature_view: str = FEATURE_VIEW,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> WriteResult:
    """Write the latest row per entity of `data`: `write_fast` on a plain Redis online
    store, else Feast's own write (SQLite, Redis cluster or sentinel) of the rows newer
    than what the store holds (Feast's SQLite store would let an older row win)."""
    if _plain_redis(store):
        return write_fast(store, data, feature_view, chunk_size=chunk_size)
    start = time.perf_counter()
    fv = store.get_feature_view(feature_view)
    key_col, ts_col = _join_key(fv), fv.batch_source.timestamp_field
    table = latest_per_entity(_to_arrow(data), key_col, ts_col)
    keep = np.concatenate(
        [
            _newer_than_online(store, fv, table.slice(offset, chunk_size), key_col, ts_col)
            for offset in range(0, table.num_rows, chunk_size)
        ]
        or [np.zeros(0, dtype=bool)]
    )
    newer = table.filter(pa.array(keep))
    if newer.num_rows:
        store.write_to_online_store(feature_view, newer.to_pandas())
    seconds = time.perf_counter() - start
    return WriteResult(
        table.num_rows, newer.num_rows, table.num_rows - newer.num_rows, seconds, "stock"
    )


def write_stock(
    store: FeatureStore, df: pd.DataFrame, feature_view: str = FEATURE_VIEW
) -> WriteResult:
    """Feast's own `write_to_online_store` (the reference `write_fast` is measured against)."""
    start = time.perf_counter()
    store.write_to_online_store(feature_view, df)
    return WriteResult(len(df), len(df), 0, time.perf_counter() - start, "stock")


def write_fast(
    store: FeatureStore,
    data: pa.Table | pd.DataFrame,
    feature_view: str = FEATURE_VIEW,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> WriteResult:
    """Write the latest row per entity of `data` to the Redis online store of `store`."""
    start = time.perf_counter()
    if not _plain_redis(store):
        raise ValueError("write_fast needs a Redis online store (redis_type: redis)")
    plan = _Plan.of(store, store.get_feature_view(feature_view))
    table = latest_per_entity(_to_arrow(data), plan.key_col, plan.ts_col)
    missing = sorted(set(plan.fields.features) - set(table.column_names))
    if missing:
        raise ValueError(f"{feature_view}: columns missing from the rows: {missing}")
    ttl = store.config.online_store.key_ttl_seconds
    written = skipped = 0
    with _client(store) as client:
        for offset in range(0, table.num_rows, chunk_size):
            chunk = table.slice(offset, chunk_size)
            w, s = _write_chunk(client, plan, chunk, ttl)
            written, skipped = written + w, skipped + s
    return WriteResult(table.num_rows, written, skipped, time.perf_counter() - start, "fast")


def _newer_than_online(store: FeatureStore, fv, chunk: pa.Table, key_col: str, ts_col: str):
    """Rows of `chunk` newer than the stored event time of their entity, read through
    `get_online_features` (its response proto keeps the stored timestamps)."""
    feature = f"{fv.name}:{fv.features[0].name}"
    ids = chunk.column(key_col).to_pylist()
    response = store.get_online_features(
        features=[feature], entity_rows=[{key_col: i} for i in ids]
    )
    names = list(response.proto.metadata.feature_names.val)
    stamps = response.proto.results[names.index(fv.features[0].name)].event_timestamps
    stored = np.array([ts.seconds * 1_000_000_000 + ts.nanos for ts in stamps], dtype=np.int64)
    # Feast's SQLite store keeps whole seconds: compare at that precision
    return _newer(_micros(chunk.column(ts_col)) // 1_000_000 * 1_000_000, stored)


# -- Feast's storage format (feature_repo.redis_layout) ------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What a write of a view's rows needs, built once: where the values go (the layout's
    keys and hash fields) and how they are encoded (the features' value types)."""

    config: Any  # the store's RepoConfig: project, key serialization
    fields: ViewFields
    value_types: list[Any]
    key_col: str
    ts_col: str

    @staticmethod
    def of(store: FeatureStore, fv: FeatureView) -> _Plan:
        return _Plan(
            config=store.config,
            fields=ViewFields.of(fv, store.config),
            value_types=[f.dtype.to_value_type() for f in fv.features],
            key_col=_join_key(fv),
            ts_col=fv.batch_source.timestamp_field,
        )

    def hset_parts(self) -> list[bytes]:
        """`HSET key ts_field ts (field value)*` with the key, ts and values left empty."""
        fields = self.fields.fields
        parts: list[bytes] = [b""] * (4 + 2 * len(fields))
        parts[0] = command_head(b"HSET", 3 + 2 * len(fields))
        parts[2] = bulk(self.fields.ts_field)
        parts[4::2] = [bulk(f) for f in fields]
        return parts


def _write_chunk(client, plan: _Plan, chunk: pa.Table, ttl) -> tuple[int, int]:
    ids = chunk.column(plan.key_col).combine_chunks().cast(pa.string()).to_pylist()
    keys = string_keys(plan.key_col, ids, plan.config)
    micros = _micros(chunk.column(plan.ts_col))
    hget = command_head(b"HGET", 2)
    ts_field = bulk(plan.fields.ts_field)
    stored = _send_packed(client, [hget + bulk(key) + ts_field for key in keys])
    rows = np.flatnonzero(_newer(micros, _stored_nanos(stored)))
    if len(rows) < len(keys):
        chunk, micros = chunk.take(rows), micros[rows]
        keys = [keys[i] for i in rows.tolist()]
    if not keys:
        return 0, len(stored)
    columns = [
        bulk_values(chunk.column(name), vt)
        for name, vt in zip(plan.fields.features, plan.value_types, strict=True)
    ]
    parts = plan.hset_parts()
    commands = []
    for key, ts, *values in zip(keys, bulk_timestamps(micros), *columns, strict=True):
        parts[1], parts[3], parts[5::2] = bulk(key), ts, values
        commands.append(b"".join(parts))
        if ttl:
            commands.append(command(b"EXPIRE", key, str(int(ttl)).encode()))
    _send_packed(client, commands)
    return len(keys), len(stored) - len(keys)


def _stored_nanos(stored: list[bytes | None]) -> np.ndarray:
    """Nanoseconds since the epoch of serialized `_ts` Timestamps (0 where none)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    prev = np.zeros(len(stored), dtype=np.int64)
    for i, raw in enumerate(stored):
        if raw:
            ts = Timestamp.FromString(raw)
            prev[i] = ts.seconds * 1_000_000_000 + ts.nanos
    return prev


def _newer(micros: np.ndarray, stored_nanos: np.ndarray) -> np.ndarray:
    """Rows strictly newer than the stored event time, or with none (Feast's rule)."""
    return (stored_nanos == 0) | (micros * 1000 > stored_nanos)


def _micros(column: pa.ChunkedArray) -> np.ndarray:
    col = column.combine_chunks()
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        col = pc.assume_timezone(col, "UTC")
    col = col.cast(pa.timestamp("us", tz="UTC"), safe=False)
    return col.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _send_packed(client, commands: list[bytes]) -> list:
    """Send RESP-encoded commands in one write and return one reply per command (an error
    reply raises and drops the connection)."""
    return send_packed(client.connection_pool, b"".join(commands), len(commands))


# -- plumbing ----------------------------------------------------------------------------


def _plain_redis(store: FeatureStore) -> bool:
    """A single Redis server (Feast's store or clipflow's faster-reading subclass)."""
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    online = store.config.online_store
    return isinstance(online, RedisOnlineStoreConfig) and online.redis_type == "redis"


def _client(store: FeatureStore):
    """A redis-py client on the online store's Redis (its database, password and TLS kept)."""
    return redis_client(store.config.online_store.connection_string)


def _join_key(fv: FeatureView) -> str:
    from feast.types import String

    keys = list(fv.entity_columns)
    if len(keys) != 1 or keys[0].dtype != String:
        raise ValueError(f"{fv.name}: expected one string join key, got {keys}")
    return keys[0].name


def _to_arrow(data: pa.Table | pd.DataFrame) -> pa.Table:
    return data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
