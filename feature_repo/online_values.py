"""Feature values as the online store holds them: each cell of an Arrow column as the RESP
bulk string of the serialized `ValueProto` Feast would write (`python_values_to_proto_values`;
a null or NaN is the empty Value, b""), and event times as serialized `Timestamp`s.

Every function returns an Arrow `binary` array of bulk strings, one per row, built a column
at a time: numpy for doubles and int64s, protobuf once per distinct value for strings,
bools and timestamps, Feast's own converter for other types. `join_cells` concatenates
them row-wise (Arrow's kernel), so a whole batch of commands is encoded without a Python
loop over rows; `online_write.write_fast` sends what it makes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo.redis_layout import bulk

BIN = pa.binary()
_INT64_TAG = 0x20  # ValueProto field 4 (int64_val), wire type 0 (varint)
_DOUBLE_TAG = 0x29  # ValueProto field 5 (double_val), wire type 1 (64-bit)
_EMPTY = bulk(b"")


def bulk_timestamps(micros: np.ndarray) -> pa.BinaryArray:
    """Bulk strings of the serialized `Timestamp`s of event times in UTC microseconds."""
    from google.protobuf.timestamp_pb2 import Timestamp

    uniq, inverse = np.unique(micros, return_inverse=True)
    encoded = [
        bulk(Timestamp(seconds=int(s), nanos=int(n) * 1000).SerializeToString())
        for s, n in zip(*np.divmod(uniq, 1_000_000), strict=True)
    ]
    return pa.array(encoded, BIN).take(pa.array(inverse.reshape(-1)))


def bulk_values(column: pa.ChunkedArray | pa.Array, value_type) -> pa.BinaryArray:
    """Bulk strings of the serialized `ValueProto`s of a column of Feast `value_type`."""
    from feast.value_type import ValueType

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if value_type == ValueType.DOUBLE:
        return _bulk_doubles(arr)
    if value_type == ValueType.INT64:
        return _bulk_int64s(arr)
    if value_type in (ValueType.STRING, ValueType.BOOL):
        return _bulk_by_dictionary(arr, value_type)
    return _bulk_with_feast(arr, value_type)


def bulk_strings(arr: pa.Array) -> pa.BinaryArray:
    """RESP bulk strings of binary values (`$<length>` CRLF, the bytes, CRLF)."""
    arr = arr.cast(BIN)
    lengths = pc.cast(pc.cast(pc.binary_length(arr), pa.string()), BIN)
    return join_cells([pa.scalar(b"$", BIN), lengths, pa.scalar(b"\r\n", BIN), arr,
                       pa.scalar(b"\r\n", BIN)])  # fmt: skip


def join_cells(cells: list) -> pa.BinaryArray:
    """Row-wise concatenation of binary arrays (and binary scalars, repeated)."""
    if len(cells) == 1:
        return cells[0]
    return pc.binary_join_element_wise(*cells, pa.scalar(b"", BIN))


def _from_records(buf: bytes | np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """A binary array of consecutive records of `lengths` bytes in `buf`."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        BIN, len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(buf)]
    )


def _bulk_doubles(arr: pa.Array) -> pa.BinaryArray:
    """double_val (field 5, 64-bit): `$9 CRLF`, tag 0x29, 8 little-endian bytes, CRLF."""
    values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
    rec = np.empty(len(values), dtype=[("head", "S4"), ("tag", "u1"), ("v", "<f8"), ("end", "S2")])
    rec["head"], rec["tag"], rec["v"], rec["end"] = b"$9\r\n", _DOUBLE_TAG, values, b"\r\n"
    out = _from_records(rec.view(np.uint8), np.full(len(values), rec.itemsize))
    nan = np.isnan(values)
    return pc.if_else(pa.array(nan), pa.scalar(_EMPTY, BIN), out) if nan.any() else out


def _bulk_int64s(arr: pa.Array) -> pa.BinaryArray:
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


def _bulk_padded(payload: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """RESP bulk strings of the first `lengths[i]` bytes of each row of `payload`.

    Each row is laid out as `[pad][$<len>CRLF][payload][CRLF][pad]` in a fixed-width
    record, the header right-aligned; a boolean mask then takes every record's used bytes,
    in row order, as one buffer.
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
    ends = head + 4 + lengths
    cols = np.arange(rec_w)
    used = (cols >= starts[:, None]) & (cols < ends[:, None])
    return _from_records(rec[used], ends - starts)


def _bulk_by_dictionary(arr: pa.Array, value_type) -> pa.BinaryArray:
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
    lookup.append(_EMPTY)
    indices = encoded.indices.fill_null(len(lookup) - 1)
    return pa.array(lookup, BIN).take(indices)


def _bulk_with_feast(arr: pa.Array, value_type) -> pa.BinaryArray:
    from feast.type_map import python_values_to_proto_values

    values = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
    return pa.array([bulk(v.SerializeToString()) for v in values], BIN)
