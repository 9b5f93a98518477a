"""The response of `FastRedisOnlineStore`'s reads, framed from the stored bytes.

`fill_response` appends a call's feature names and `FeatureVector`s to Feast's response
proto by one `MergeFromString` of their wire format: the stored `ValueProto` bytes of a
column framed as a vector's values (in C, by `RawVector`, a bytes-only twin of the message
type, for more than a few rows), statuses PRESENT for every requested entity (as stock), and
event timestamps through stock's float/`datetime` rounding. `FastOnlineResponse.to_dict`
takes plain scalar values as they are, where Feast's per-value converter would return them
unchanged. Both give exactly what the stock store gives (tests/feature_repo/test_fast_read.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from feast.online_response import OnlineResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_STAMPS = 1 << 16  # converted event timestamps kept

# wire-format tags of GetOnlineFeaturesResponse, its metadata and FeatureVectors
_META = b"\x0a"  # response.metadata (field 1, length-delimited)
_NAMES = b"\x0a"  # metadata.feature_names (field 1), FeatureList.val (field 1)
_RESULT = b"\x12"  # response.results (field 2)
_VALUE = b"\x0a"  # FeatureVector.values (field 1)
_STATUSES = b"\x12"  # FeatureVector.statuses (field 2, packed FieldStatus)
_TIMESTAMP = b"\x1a"  # FeatureVector.event_timestamps (field 3)
_PRESENT = b"\x01"  # FieldStatus.PRESENT
_NULL = _VALUE + b"\x00"  # an empty Value (null)
_PYTHON_FRAMING_MAX = 24  # up to this many rows, frame values in Python, not with upb


def _varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (a length)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, varint length, payload."""
    return tag + _varint(len(payload)) + payload


class _Varints(dict):
    """`tag + varint(n)` of each n asked for, computed once (a bounded cache)."""

    def __init__(self, tag: bytes):
        super().__init__()
        self.tag = tag

    def __missing__(self, n: int) -> bytes:
        if len(self) >= 1 << 14:
            self.clear()
        out = self[n] = self.tag + _varint(n)
        return out


_VALUE_HEAD = _Varints(_VALUE)  # FeatureVector.values entry of a stored value of n bytes
_TS_HEAD = _Varints(_TIMESTAMP)
_STATUSES_HEAD = _Varints(_STATUSES)
_RESULT_HEAD = _Varints(_RESULT)


class _RawVectorType:
    """`RawVector`: a message type with the wire format of a response `FeatureVector`'s
    values but the values left as bytes, so that upb frames the stored value bytes of a
    column in C (a tag and a length each), not Python value by value."""

    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

            fdp = descriptor_pb2.FieldDescriptorProto
            proto = descriptor_pb2.FileDescriptorProto(
                name="clipflow_fast_read.proto", package="clipflow_fast_read", syntax="proto3"
            )
            vector = proto.message_type.add(name="RawVector")
            vector.field.add(name="values", number=1, type=fdp.TYPE_BYTES, label=fdp.LABEL_REPEATED)
            pool = descriptor_pool.DescriptorPool()
            pool.Add(proto)
            cls.cls = message_factory.GetMessageClass(
                pool.FindMessageTypeByName("clipflow_fast_read.RawVector")
            )
        return cls.cls


_STAMPS: dict[bytes, bytes] = {}


def _ts_bytes(raw: bytes | None) -> bytes:
    """The response's serialized event timestamp for a stored `_ts:<view>` value.

    Stock Feast turns the stored Timestamp into a float of seconds, a `datetime` (rounded
    to microseconds, half to even) and back into a Timestamp, and a missing one into
    Timestamp(0, 0); the same steps here, once per distinct stored value.
    """
    if not raw:
        return b""
    out = _STAMPS.get(raw)
    if out is None:
        stored = Timestamp.FromString(raw)
        dt = datetime.fromtimestamp(stored.seconds + stored.nanos / 1_000_000_000.0, tz=UTC)
        delta = dt - _EPOCH  # what Timestamp.FromDatetime(dt) keeps: seconds, microseconds
        ts = Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)
        out = ts.SerializeToString()
        if len(_STAMPS) >= _MAX_STAMPS:
            _STAMPS.clear()
        _STAMPS[raw] = out
    return out


def names_metadata(refs: list[str]) -> bytes:
    """The response's `metadata` field naming the features `refs`."""
    names = b"".join(_field(_NAMES, r.encode()) for r in refs)
    return _field(_META, _field(_NAMES, names))


def fill_response(response, reads: list, replies: list, include_version_meta: bool):
    """Append each read's feature names and FeatureVectors to the response, as stock's
    `_populate_response_from_feature_data` does, from the stored bytes in one merge.

    A read (`online_store._Read`) is one view's part of the call: its table, its plan (the
    response's `metadata` bytes and its features), its keys and, per unique entity, the
    output rows it fills (`idxs`, of `output_len`); `replies` are the HMGET replies of all
    reads' keys in that order, each the features' values then `_ts:<view>`."""
    raw_vector = _RawVectorType.get()
    value_head, result_head = _VALUE_HEAD, _RESULT_HEAD
    parts = []
    offset = 0
    for read in reads:
        plan, n_keys, n_out = read.plan, len(read.keys), read.output_len
        rows = replies[offset : offset + n_keys]
        offset += n_keys
        order = [0] * n_out  # the unique entity of each output row
        for e, dests in enumerate(read.idxs):
            for dest in dests:
                order[dest] = e
        rows = [rows[e] for e in order]
        # what every feature's vector ends with: PRESENT statuses (stock marks every
        # requested entity present, found or not) and the entities' event timestamps
        stamps = [_ts_bytes(row[-1]) for row in rows]
        tail = b"".join(
            [_STATUSES_HEAD[n_out], _PRESENT * n_out, *(_TS_HEAD[len(t)] + t for t in stamps)]
        )
        parts.append(plan.metadata)
        # a vector per feature: its values (b"" or None, a field the hash lacks: null), then
        # the tail; the last column of the rows, `_ts:<view>`, is left out
        if n_out == 1:
            bodies = [(value_head[len(v)] + v if v else _NULL) + tail for v in rows[0][:-1]]
        elif n_out <= _PYTHON_FRAMING_MAX:
            columns = list(zip(*rows, strict=True))[:-1]
            bodies = [
                b"".join([value_head[len(v)] + v if v else _NULL for v in column]) + tail
                for column in columns
            ]
        else:
            columns = list(zip(*rows, strict=True))[:-1]
            bodies = [
                raw_vector(values=[v or b"" for v in column] if None in column else column)
                .SerializeToString() + tail
                for column in columns
            ]  # fmt: skip
        parts += [result_head[len(body)] + body for body in bodies]
        if include_version_meta:
            _add_version_metadata(response, read.table)
        _track_statuses(read.table.name, len(plan.features), n_out)
    response.MergeFromString(b"".join(parts))


def _add_version_metadata(response, table) -> None:
    name = table.projection.name_alias or table.projection.name
    if name not in [m.name for m in response.metadata.feature_view_metadata]:
        meta = response.metadata.feature_view_metadata.add()
        meta.name = name
        meta.version = getattr(table, "current_version_number", 0) or 0


def _track_statuses(view: str, n_features: int, n_rows: int) -> None:
    """Feast's feature-status metrics, with stock's counts (its `_ts:` column included)."""
    try:
        from feast.metrics import track_feature_statuses

        track_feature_statuses(view, n_features * n_rows, n_rows)
    except Exception:
        pass


def online_read_rows(features: list[str], replies: list):
    """`online_read`'s rows from HMGET replies (the features' fields, then `_ts:<view>`), as
    stock's `_get_features_for_entity`."""
    parse = ValueProto.FromString
    out = []
    for row in replies:
        raw_ts = row[-1]
        ts = Timestamp.FromString(raw_ts) if raw_ts else Timestamp()
        values = {
            name: parse(v) if v else ValueProto() for name, v in zip(features, row, strict=False)
        }
        when = datetime.fromtimestamp(ts.seconds + ts.nanos / 1_000_000_000.0, tz=UTC)
        out.append((when, values))
    return out


# -- the response: to_dict without the per-value converter for plain scalars -------------

# Value kinds that feast_value_type_to_python_type returns as they are (getattr)
_PLAIN = frozenset(
    ("double_val", "float_val", "int64_val", "int32_val", "bool_val", "string_val", "bytes_val")
)
# declared types for which it converts plain strings (to uuid.UUID); a tuple: `in` compares
# identities in C, where a set would call Enum.__hash__ in Python
_CONVERTED_TYPES = (
    ValueType.UUID,
    ValueType.TIME_UUID,
    ValueType.UUID_LIST,
    ValueType.TIME_UUID_LIST,
    ValueType.UUID_SET,
    ValueType.TIME_UUID_SET,
)


class FastOnlineResponse(OnlineResponse):
    """Feast's `OnlineResponse` (the same proto, the same feature types) whose `to_dict`
    (behind `to_df` and `to_arrow` too) takes plain scalar values as they are, where
    `feast_value_type_to_python_type` would return them unchanged; any other value goes
    through it, as in stock."""

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        from feast.online_response import TIMESTAMP_POSTFIX

        names = list(self.proto.metadata.feature_names.val)
        vectors = list(self.proto.results)
        containers = [vector.values for vector in vectors]
        types = [self._feature_types.get(name) for name in names]
        converted = None
        if sum(map(len, containers)) <= _FLAT_MAX:
            converted = _plain_columns(list(map(list, containers)), types)
        if converted is None:  # a column at a time: fewer Value objects alive at once
            converted = [
                _python_values(list(values), feature_type)
                for values, feature_type in zip(containers, types, strict=False)
            ]
        response: dict[str, list[Any]] = {}
        for name, values, vector in zip(names, converted, vectors, strict=False):
            response[name] = values
            if include_event_timestamps:
                response[name + TIMESTAMP_POSTFIX] = [ts.seconds for ts in vector.event_timestamps]
        return response


_which = ValueProto.WhichOneof
_FLAT_MAX = 1024  # up to this many values in all, convert them in one pass


def _plain_columns(columns: list[list], types: list) -> list[list[Any]] | None:
    """The Python values of all columns in one pass (no per-column overhead: for few values
    in all), where every value is plain or null; None otherwise."""
    if any(map(_CONVERTED_TYPES.__contains__, types)):
        return None
    flat = [v for column in columns for v in column]
    kinds = [_which(v, "val") for v in flat]
    present = set(kinds)
    present.discard(None)
    if not _PLAIN.issuperset(present):
        return None
    values = [None if k is None else getattr(v, k) for v, k in zip(flat, kinds, strict=True)]
    out, start = [], 0
    for column in columns:
        end = start + len(column)
        out.append(values[start:end])
        start = end
    return out


def _python_values(values: list, feature_type) -> list[Any]:
    """`feast_value_type_to_python_type` of each Value: a plain kind (or null) directly."""
    if feature_type in _CONVERTED_TYPES:
        return [feast_value_type_to_python_type(v, feature_type) for v in values]
    kinds = [_which(v, "val") for v in values]
    if _PLAIN.issuperset(kinds):  # only plain kinds, no null
        return [getattr(v, k) for v, k in zip(values, kinds, strict=True)]
    return [
        None if k is None else getattr(v, k) if k in _PLAIN
        else feast_value_type_to_python_type(v, feature_type)
        for v, k in zip(values, kinds, strict=True)
    ]  # fmt: skip


def fast_response(config, response: OnlineResponse) -> OnlineResponse:
    if (
        not getattr(config.online_store, "fast_to_dict", False)
        or type(response) is not OnlineResponse
    ):
        return response
    fast = FastOnlineResponse.__new__(FastOnlineResponse)
    fast.__dict__.update(response.__dict__)
    return fast
