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

The write is content-aware (`feature_repo.online_batch`): a batch's stored `_ts:<view>`
times are checked first in Redis at full precision (as Feast 0.67 compares), and a row is
written when there is none, when the row is strictly newer (plain `HSET`s of Feast's bytes),
or when the time is equal but a value differs (a re-run day's corrected row, through the
`UPSERT_LUA` script, which compares the values in Redis); an older row, or an equal one, is
skipped. So re-running a day makes the store hold the warehouse's rows of that day, and an
older row never overwrites a newer one: between a batch's check and its write the writer
holds the store's writer lease, so another clipflow writer cannot land in between (Feast's
own write skips equal times, and checks and writes in two round trips, unguarded).

Other online stores (SQLite) use Feast's own write, after the same decision made in Python
at the store's precision, whole seconds (Feast's SQLite store upserts unconditionally).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo import online_batch
from feature_repo.online_batch import Encoder, ViewPlan
from feature_repo.online_values import bulk_values
from feature_repo.redis_layout import DECIDE_LUA, UPSERT_LUA, ViewFields, send_packed
from models.core.redis_url import redis_client

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore, FeatureView

FEATURE_VIEW = "clip_features"
DEFAULT_CHUNK = 50_000  # rows encoded and sent as one write


@dataclass(frozen=True)
class WriteResult:
    rows: int  # rows offered, after keeping the latest per entity
    written: int  # keys written (corrected ones included)
    skipped: int  # rows older than what the store holds, or equal to it
    seconds: float
    method: str  # "fast" or "stock"
    corrected: int = 0  # of `written`: rows of the stored event time with changed values


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
    """Write the latest row per entity of `data`: `write_fast` on a Redis online store
    (one server or a cluster), else Feast's own write (SQLite, Redis Sentinel) of the rows newer
    than what the store holds (Feast's SQLite store would let an older row win)."""
    if fast_redis(store):
        return write_fast(store, data, feature_view, chunk_size=chunk_size)
    start = time.perf_counter()
    fv = store.get_feature_view(feature_view)
    key_col, ts_col = _join_key(fv), fv.batch_source.timestamp_field
    table = latest_per_entity(_to_arrow(data), key_col, ts_col)
    decided = [
        _changed_online(store, fv, table.slice(offset, chunk_size), key_col, ts_col)
        for offset in range(0, table.num_rows, chunk_size)
    ]
    keep = np.concatenate([d[0] for d in decided] or [np.zeros(0, dtype=bool)])
    changed = table.filter(pa.array(keep))
    if changed.num_rows:
        store.write_to_online_store(feature_view, changed.to_pandas())
    seconds = time.perf_counter() - start
    skipped, corrected = table.num_rows - changed.num_rows, sum(d[1] for d in decided)
    return WriteResult(table.num_rows, changed.num_rows, skipped, seconds, "stock", corrected)


def write_stream(
    store: FeatureStore,
    batches: Iterable[pa.Table | pa.RecordBatch],
    feature_view: str = FEATURE_VIEW,
) -> WriteResult:
    """`write_online` of rows that come in batches, one row per entity across them (a
    streamed read: `models.core.stream.latest`): memory follows the batch."""
    start = time.perf_counter()
    if fast_redis(store):
        (res,) = write_views_fast(store, batches, [(feature_view, {})]).values()
    else:
        parts = [write_online(store, b if isinstance(b, pa.Table) else pa.Table.from_batches([b]),
                              feature_view) for b in batches if b.num_rows]  # fmt: skip
        res = WriteResult(sum(p.rows for p in parts), sum(p.written for p in parts),
                          sum(p.skipped for p in parts), 0.0, "stock",
                          sum(p.corrected for p in parts))  # fmt: skip
    return dataclasses.replace(res, seconds=time.perf_counter() - start)


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
    if not fast_redis(store):
        raise ValueError("write_fast needs a Redis online store (redis_type: redis or "
                         "redis_cluster)")  # fmt: skip
    fv = store.get_feature_view(feature_view)
    table = latest_per_entity(_to_arrow(data), _join_key(fv), fv.batch_source.timestamp_field)
    batches = (table.slice(o, chunk_size) for o in range(0, table.num_rows, chunk_size))
    (result,) = write_views_fast(store, batches, [(feature_view, {})]).values()
    return WriteResult(result.rows, result.written, result.skipped,
                       time.perf_counter() - start, "fast", result.corrected)  # fmt: skip


def write_views_fast(
    store: FeatureStore,
    batches: Iterable[pa.Table | pa.RecordBatch],
    views: list[tuple[str, Mapping[str, str]]],
) -> dict[str, WriteResult]:
    """Write batches of rows holding several views of the same entities to the Redis online
    store of `store`, each row's views in one `HSET` (`online_batch`).

    `views`: (view name, {feature or "event_timestamp": the batch's column}) where a
    column's name differs from the feature's; a view's time column null: the row has none
    of that view. A batch holds an entity once (ValueError otherwise: keep the newest, as
    `latest_per_entity`); across batches an entity may come again (the later batch is
    checked against what the earlier wrote: the older row never wins)."""
    start = time.perf_counter()
    if not fast_redis(store):
        raise ValueError("write_fast needs a Redis online store (redis_type: redis or "
                         "redis_cluster)")  # fmt: skip
    plans, key_col = [], None
    for name, rename in views:
        fv = store.get_feature_view(name)
        key_col = key_col or _join_key(fv)
        plans.append(view_plan(store, fv, rename))
    encoder = Encoder(key_col, plans, store.config, store.config.online_store.key_ttl_seconds)
    with _client(store) as client:
        loaded: set[int] = set()

        def send(c, payload: bytes, n: int) -> list:
            if id(c) not in loaded:  # EVALSHA finds the scripts (a restart forgets them)
                c.script_load(UPSERT_LUA)
                c.script_load(DECIDE_LUA)
                loaded.add(id(c))  # per server: each node of a cluster has its own cache
            return _send_packed(c, payload, n)

        counts = online_batch.write_batches(client, encoder, _checked(batches, plans), send)
    seconds = time.perf_counter() - start
    out = {}
    for (name, _), rows, (skipped, written, corrected) in zip(
        views, counts.rows.tolist(), counts.status.tolist(), strict=True
    ):
        out[name] = WriteResult(rows, written + corrected, skipped, seconds, "fast", corrected)
    return out


def view_plan(store: FeatureStore, fv, rename: Mapping[str, str]) -> ViewPlan:
    return ViewPlan(
        fields=ViewFields.of(fv, store.config),
        columns=tuple(rename.get(f.name, f.name) for f in fv.features),
        value_types=tuple(f.dtype.to_value_type() for f in fv.features),
        ts_col=rename.get("event_timestamp", fv.batch_source.timestamp_field),
    )


def _checked(batches, plans: list[ViewPlan]):
    """The batches, each refused with the missing columns named when it lacks any."""
    for batch in batches:
        for plan in plans:
            missing = sorted((set(plan.columns) | {plan.ts_col}) - set(batch.schema.names))
            if missing:
                raise ValueError(f"{plan.fields.view}: columns missing from the rows: {missing}")
        yield batch


def _changed_online(
    store: FeatureStore, fv, chunk: pa.Table, key_col: str, ts_col: str
) -> tuple[np.ndarray, int]:
    """(which rows of `chunk` to write, how many of them are corrections): rows newer than
    the stored event time of their entity, or of that time with a value that differs, read
    through `get_online_features` (its response proto keeps the values and timestamps)."""
    ids = chunk.column(key_col).to_pylist()
    response = store.get_online_features(
        features=[f"{fv.name}:{f.name}" for f in fv.features],
        entity_rows=[{key_col: i} for i in ids],
    )
    names = list(response.proto.metadata.feature_names.val)
    results = [response.proto.results[names.index(f.name)] for f in fv.features]
    stamps = results[0].event_timestamps
    stored = np.array([ts.seconds * 1_000_000_000 + ts.nanos for ts in stamps], dtype=np.int64)
    # Feast's SQLite store keeps whole seconds: compare at that precision
    micros = _micros(chunk.column(ts_col)) // 1_000_000 * 1_000_000
    newer = _newer(micros, stored)
    tied = np.flatnonzero(~newer & (micros * 1000 == stored))
    differs = np.zeros(len(ids), dtype=bool)
    for f, result in zip(fv.features, results, strict=True):
        ours = bulk_values(chunk.column(f.name).take(tied), f.dtype.to_value_type()).to_pylist()
        for i, raw in zip(tied.tolist(), ours, strict=True):
            held = result.values[i].SerializeToString()
            differs[i] |= raw[raw.index(b"\r\n") + 2 : -2] != held
    return newer | differs, int(differs.sum())


def _newer(micros: np.ndarray, stored_nanos: np.ndarray) -> np.ndarray:
    """Rows strictly newer than the stored event time, or with none (Feast's rule)."""
    return (stored_nanos == 0) | (micros * 1000 > stored_nanos)


def _micros(column: pa.ChunkedArray) -> np.ndarray:
    return online_batch.micros(column).to_numpy(zero_copy_only=False)


def _send_packed(client, payload: bytes, n: int) -> list:
    """Send RESP-encoded commands in one write and return one reply per command (an error
    reply raises and drops the connection)."""
    return send_packed(client.connection_pool, payload, n)


# -- plumbing ----------------------------------------------------------------------------


def fast_redis(store: FeatureStore) -> bool:
    """A single Redis server or a Redis Cluster (Feast's store or clipflow's
    faster-reading subclass), not Sentinel."""
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    online = store.config.online_store
    return isinstance(online, RedisOnlineStoreConfig) and online.redis_type in (
        "redis",
        "redis_cluster",
    )


def _client(store: FeatureStore):
    """A redis-py client on the online store's Redis (its database, password and TLS kept;
    `RedisCluster` on a cluster)."""
    online = store.config.online_store
    return redis_client(online.connection_string, cluster=online.redis_type == "redis_cluster")


def _join_key(fv: FeatureView) -> str:
    from feast.types import String

    keys = list(fv.entity_columns)
    if len(keys) != 1 or keys[0].dtype != String:
        raise ValueError(f"{fv.name}: expected one string join key, got {keys}")
    return keys[0].name


def _to_arrow(data: pa.Table | pd.DataFrame) -> pa.Table:
    return data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
