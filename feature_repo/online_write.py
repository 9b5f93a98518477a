"""Write the latest feature row per clip to the online store, fast and Feast-compatible.

Feast 0.67's own Redis write (`FeatureStore.write_to_online_store`) converts Arrow to
protobuf one value at a time, hashes every field name again for every row and reads the
stored timestamp key by key. `write_fast` writes exactly the bytes Feast writes (same Redis
key per entity, same hash fields, same serialized `ValueProto`s and `_ts:<view>` timestamp,
see `feast/infra/online_stores/redis.py`), so Feast's `get_online_features` and
`feast serve` read them back, but it encodes a column at a time (numpy, or protobuf once
per distinct value) and sends a chunk of keys as one pre-encoded RESP pipeline.

Like Feast it never lets an older row overwrite a newer one: the stored `_ts` fields of a
chunk are read in one pipelined round trip and a row is written only if its event time is
strictly newer (Feast 0.67 compares at full precision, not whole seconds). As in Feast,
check and write are two round trips, not atomic: two writers racing on one clip can still
let the older row win; the online store has one writer (the online push sensor).

Other online stores (SQLite) use Feast's own write, after the same check at the store's
precision, whole seconds (Feast's SQLite store upserts unconditionally).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore, FeatureView

FEATURE_VIEW = "clip_features"
DEFAULT_CHUNK = 5_000

_STRING = 2  # feast.types.Value_pb2.ValueType.STRING
_INT64_TAG = 0x20  # ValueProto field 4 (int64_val), wire type 0 (varint)
_DOUBLE_TAG = 0x29  # ValueProto field 5 (double_val), wire type 1 (64-bit)


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
    fv = store.get_feature_view(feature_view)
    key_col, ts_col = _join_key(fv), fv.batch_source.timestamp_field
    table = latest_per_entity(_to_arrow(data), key_col, ts_col)
    layout = _Layout.of(store, fv)
    missing = sorted(set(layout.names) - set(table.column_names))
    if missing:
        raise ValueError(f"{feature_view}: columns missing from the rows: {missing}")
    ttl = store.config.online_store.key_ttl_seconds
    written = skipped = 0
    with _client(store) as client:
        for offset in range(0, table.num_rows, chunk_size):
            chunk = table.slice(offset, chunk_size)
            w, s = _write_chunk(client, layout, chunk, key_col, ts_col, ttl)
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


# -- Feast's storage format --------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What does not change from row to row: hash field names, value types, key parts."""

    ts_field: bytes  # `_ts:<feature_view>`
    fields: list[bytes]  # mmh3 of `<feature_view>:<feature>`, in feature order
    names: list[str]
    value_types: list[Any]
    key_prefix: bytes  # serialized entity key up to the value length
    project: bytes

    @property
    def hset_header(self) -> bytes:
        """RESP array header and command name of `HSET key ts_field ts (field value)*`."""
        return b"*%d\r\n$4\r\nHSET\r\n" % (4 + 2 * len(self.fields))

    @staticmethod
    def of(store: FeatureStore, fv: FeatureView) -> _Layout:
        from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name

        versioning = getattr(store.config.registry, "enable_online_feature_view_versioning", False)
        name = compute_versioned_name(fv, versioning)
        join_key = _join_key(fv).encode()
        # serialize_entity_key, version 3, one STRING join key: count, type, len, name,
        # then the value's type and length and bytes.
        prefix = struct.pack("<III", 1, _STRING, len(join_key)) + join_key
        return _Layout(
            ts_field=f"_ts:{name}".encode(),
            fields=[_mmh3(f"{name}:{f.name}") for f in fv.features],
            names=[f.name for f in fv.features],
            value_types=[f.dtype.to_value_type() for f in fv.features],
            key_prefix=prefix + struct.pack("<I", _STRING),
            project=store.config.project.encode(),
        )

    def redis_keys(self, ids: pa.Array) -> list[bytes]:
        prefix, project = self.key_prefix, self.project
        out = []
        for value in ids.to_pylist():
            b = value.encode()
            out.append(prefix + struct.pack("<I", len(b)) + b + project)
        return out


def _write_chunk(client, layout: _Layout, chunk: pa.Table, key_col: str, ts_col: str, ttl):
    keys = layout.redis_keys(chunk.column(key_col).combine_chunks().cast(pa.string()))
    micros = _micros(chunk.column(ts_col))
    hget = b"*3\r\n$4\r\nHGET\r\n"
    ts_field = _bulk(layout.ts_field)
    stored = _send_packed(client, [hget + _bulk(key) + ts_field for key in keys])
    rows = np.flatnonzero(_newer(micros, _stored_nanos(stored)))
    if len(rows) < len(keys):
        chunk, micros = chunk.take(rows), micros[rows]
        keys = [keys[i] for i in rows.tolist()]
    if not keys:
        return 0, len(stored)
    columns = [
        _bulk_values(chunk.column(name), vt)
        for name, vt in zip(layout.names, layout.value_types, strict=True)
    ]
    parts: list[bytes] = [b""] * (4 + 2 * len(layout.fields))
    parts[0] = layout.hset_header
    parts[2] = _bulk(layout.ts_field)
    parts[4::2] = [_bulk(f) for f in layout.fields]
    commands = []
    for key, ts, *values in zip(keys, _bulk_timestamps(micros), *columns, strict=True):
        parts[1], parts[3], parts[5::2] = _bulk(key), ts, values
        commands.append(b"".join(parts))
        if ttl:
            commands.append(_command(b"EXPIRE", key, str(int(ttl)).encode()))
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


# -- values, encoded once per distinct value or a column at a time -----------------------
# Every cell ends up as a RESP bulk string of the serialized ValueProto Feast would write
# (`python_values_to_proto_values`): a null (or NaN) is the empty Value, b"".


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def _bulk_timestamps(micros: np.ndarray) -> list[bytes]:
    from google.protobuf.timestamp_pb2 import Timestamp

    uniq, inverse = np.unique(micros, return_inverse=True)
    encoded = [
        _bulk(Timestamp(seconds=int(s), nanos=int(n) * 1000).SerializeToString())
        for s, n in zip(*np.divmod(uniq, 1_000_000), strict=True)
    ]
    return [encoded[j] for j in inverse.tolist()]


def _bulk_values(column: pa.ChunkedArray, value_type) -> list[bytes]:
    from feast.value_type import ValueType

    arr = column.combine_chunks()
    if value_type == ValueType.DOUBLE:
        return _bulk_doubles(arr)
    if value_type == ValueType.INT64:
        return _bulk_int64s(arr)
    if value_type in (ValueType.STRING, ValueType.BOOL):
        return _bulk_by_dictionary(arr, value_type)
    return _bulk_with_feast(arr, value_type)


def _bulk_doubles(arr: pa.Array) -> list[bytes]:
    """double_val (field 5, 64-bit): `$9 CRLF`, tag 0x29, 8 little-endian bytes, CRLF."""
    values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
    rec = np.empty(len(values), dtype=[("head", "S4"), ("tag", "u1"), ("v", "<f8"), ("end", "S2")])
    rec["head"], rec["tag"], rec["v"], rec["end"] = b"$9\r\n", _DOUBLE_TAG, values, b"\r\n"
    buf, size = rec.tobytes(), rec.itemsize
    out = [buf[i : i + size] for i in range(0, len(buf), size)]
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = _bulk(b"")
    return out


def _bulk_int64s(arr: pa.Array) -> list[bytes]:
    """int64_val (field 4, varint): tag 0x20 and the two's-complement varint, 1-10 bytes."""
    if pa.types.is_floating(arr.type):  # an int feature read back with NaNs
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    arr = arr.cast(pa.int64(), safe=False)
    null = arr.is_null().to_numpy(zero_copy_only=False)
    u = arr.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    groups = np.stack([(u >> np.uint64(7 * j)) & np.uint64(0x7F) for j in range(10)], axis=1)
    nbytes = 1 + sum((u >> np.uint64(7 * j)) != 0 for j in range(1, 10))
    more = np.arange(10) < (nbytes - 1)[:, None]  # continuation bit on all but the last
    payload = np.empty((len(u), 11), dtype=np.uint8)
    payload[:, 0] = _INT64_TAG
    payload[:, 1:] = groups.astype(np.uint8) | (more * 0x80).astype(np.uint8)
    return _bulk_padded(payload, np.where(null, 0, 1 + nbytes))


def _bulk_padded(payload: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """RESP bulk strings of the first `lengths[i]` bytes of each row of `payload`.

    Each record is laid out as `[pad][$<len>CRLF][payload][CRLF][pad]` in one numpy array,
    with the header right-aligned, so every bulk string is one contiguous slice.
    """
    n, width = payload.shape
    head = 2 + len(str(width))  # "$", the digits, CRLF
    rec_w = head + 2 + width + 2
    rec = np.zeros((n, rec_w), dtype=np.uint8)
    rec[:, head + 2 : head + 2 + width] = payload
    rows = np.arange(n)
    rec[rows, head + 2 + lengths] = 13
    rec[rows, head + 3 + lengths] = 10
    starts = np.empty(n, dtype=np.int64)
    for length in np.unique(lengths).tolist():
        prefix = np.frombuffer(b"$%d\r\n" % length, dtype=np.uint8)
        sel = lengths == length
        rec[sel, head + 2 - len(prefix) : head + 2] = prefix
        starts[sel] = head + 2 - len(prefix)
    starts += rows * rec_w
    ends = rows * rec_w + head + 4 + lengths
    buf = rec.tobytes()
    return [buf[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _bulk_by_dictionary(arr: pa.Array, value_type) -> list[bytes]:
    """Serialize each distinct value once with protobuf itself, then look them up."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.value_type import ValueType

    if value_type == ValueType.STRING:
        arr = arr.cast(pa.string())
    encoded = arr.dictionary_encode()
    field = "string_val" if value_type == ValueType.STRING else "bool_val"
    lookup = [
        _bulk(ValueProto(**{field: v}).SerializeToString()) for v in encoded.dictionary.to_pylist()
    ]
    lookup.append(_bulk(b""))
    indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return [lookup[j] for j in indices.tolist()]


def _bulk_with_feast(arr: pa.Array, value_type) -> list[bytes]:
    from feast.type_map import python_values_to_proto_values

    values = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
    return [_bulk(v.SerializeToString()) for v in values]


def _send_packed(client, commands: list[bytes]) -> list:
    """Send RESP-encoded commands in one write and return one reply per command.

    What a redis-py pipeline does, without its per-command Python work (about a third
    of the time of a 33-field HSET); an error reply raises and drops the connection.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(commands)])
        return [conn.read_response() for _ in commands]
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


# -- plumbing ----------------------------------------------------------------------------


def _plain_redis(store: FeatureStore) -> bool:
    """A single Redis server (Feast's store or clipflow's faster-reading subclass)."""
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    online = store.config.online_store
    return isinstance(online, RedisOnlineStoreConfig) and online.redis_type == "redis"


def _client(store: FeatureStore):
    """A redis-py client built from the Feast connection string, as Feast builds its own."""
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, kwargs = RedisOnlineStore._parse_connection_string(
        store.config.online_store.connection_string
    )
    return redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)


def _join_key(fv: FeatureView) -> str:
    from feast.types import String

    keys = list(fv.entity_columns)
    if len(keys) != 1 or keys[0].dtype != String:
        raise ValueError(f"{fv.name}: expected one string join key, got {keys}")
    return keys[0].name


def _to_arrow(data: pa.Table | pd.DataFrame) -> pa.Table:
    return data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
