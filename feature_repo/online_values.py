"""Feature values as the online store holds them: each cell of an Arrow column as the RESP
bulk string of the serialized `ValueProto` Feast would write (`python_values_to_proto_values`;
a null or NaN is the empty Value, b""), and event times as serialized `Timestamp`s.

It encodes a column at a time (numpy for doubles and int64s) or once per distinct value
(strings, bools), where Feast converts value by value; other types go through Feast's own
converter. `online_write.write_fast` sends what it makes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo.redis_layout import bulk

_INT64_TAG = 0x20  # ValueProto field 4 (int64_val), wire type 0 (varint)
_DOUBLE_TAG = 0x29  # ValueProto field 5 (double_val), wire type 1 (64-bit)


def bulk_timestamps(micros: np.ndarray) -> list[bytes]:
    """Bulk strings of the serialized `Timestamp`s of event times in UTC microseconds."""
    from google.protobuf.timestamp_pb2 import Timestamp

    uniq, inverse = np.unique(micros, return_inverse=True)
    encoded = [
        bulk(Timestamp(seconds=int(s), nanos=int(n) * 1000).SerializeToString())
        for s, n in zip(*np.divmod(uniq, 1_000_000), strict=True)
    ]
    return [encoded[j] for j in inverse.tolist()]


def bulk_values(column: pa.ChunkedArray, value_type) -> list[bytes]:
    """Bulk strings of the serialized `ValueProto`s of a column of Feast `value_type`."""
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
        out[i] = bulk(b"")
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
        bulk(ValueProto(**{field: v}).SerializeToString()) for v in encoded.dictionary.to_pylist()
    ]
    lookup.append(bulk(b""))
    indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return [lookup[j] for j in indices.tolist()]


def _bulk_with_feast(arr: pa.Array, value_type) -> list[bytes]:
    from feast.type_map import python_values_to_proto_values

    values = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
    return [bulk(v.SerializeToString()) for v in values]
