"""A faster Feast read path on the same Redis data: `FastRedisOnlineStore`.

Feast 0.67's `RedisOnlineStore` spends most of a `get_online_features` call in Python, per
value: it hashes every field name again for every call, sends one redis-py pipeline command
per entity, parses each stored `ValueProto` into its own message, copies those messages into
the response's `FeatureVector`s one by one, and `OnlineResponse.to_dict` then converts each
value back to Python with `feast_value_type_to_python_type`.

This store reads and returns exactly what the stock store does, from exactly what Feast (or
`feature_repo.online_write`) stores (same keys, hash fields, serialized `ValueProto`s and `_ts:`
timestamps). It only does the work differently:

* the hash fields (mmh3 of `<view>:<feature>`, then `_ts:<view>`), their RESP encoding and
  the response's feature names are built once per (view, requested features) and cached;
* the entity keys of the usual single string join key are serialized without protos;
* all HMGETs of a call go out as one pre-encoded RESP write, replies come back through the
  connection's (hiredis) parser;
* the stored value bytes are not parsed one by one: a column of them is framed (in C, by
  a bytes-only twin of the message type) as the wire format of a response `FeatureVector`,
  and the response is filled by one `MergeFromString`. Statuses and event timestamps are
  what stock computes: PRESENT for every requested entity, found or not, as stock does, and
  timestamps through the same float/`datetime` rounding;
* `to_dict` (behind `to_df` and `to_arrow`) of the returned response takes plain scalar
  values (double, float, int64, int32, bool, string, bytes; null) as they are, where
  `feast_value_type_to_python_type` would return them unchanged, and converts every other
  kind of value with it, so the result equals stock's (`fast_to_dict: false` in the config
  returns Feast's own `OnlineResponse`).

The response proto is byte for byte the one the stock store builds (tests/feature_repo/
test_fast_read.py compares them on real Redis).

Writes, deletes and everything else are inherited unchanged. Redis Cluster, Sentinel and the
GLIDE client keep Feast's own read path.

Configure it with the store's class path as the online store `type`:

    online_store:
      type: feature_repo.online_store.FastRedisOnlineStore
      connection_string: localhost:6379
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from feast import utils
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import (
    RedisClient,
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    RedisType,
    _versioned_fv_name,
)
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

STORE_TYPE = "feature_repo.online_store.FastRedisOnlineStore"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STRING = ValueType.STRING.value  # the entity key's type tag (serialize_entity_key)
_MAX_PLANS = 4096  # read plans kept per store (one per view x requested features)
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


class FastRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """`RedisOnlineStoreConfig` (every field of it) with this store's class path as type."""

    type: Literal["feature_repo.online_store.FastRedisOnlineStore"] = STORE_TYPE  # type: ignore[assignment]
    """Online store type selector: this class's path."""

    fast_to_dict: bool = True
    """Return an `OnlineResponse` whose `to_dict` (and `to_df`, `to_arrow`) converts plain
    scalar values without Feast's per-value converter (same result); false: Feast's own."""


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


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _Plan:
    """What a read of (view, requested features) needs, built once: the hash fields (the
    features', then `_ts:<view>`), their RESP encoding, and the response's feature names."""

    __slots__ = (
        "features",
        "fields",
        "hmget_head",
        "hmget_tail",
        "metadata",
        "refs",
        "ts_field",
    )

    def __init__(self, fv_name: str, table_name: str, features: list[str], full_names: bool):
        self.features = list(features)
        self.ts_field = f"_ts:{fv_name}".encode()
        self.fields = [_mmh3(f"{fv_name}:{f}") for f in features] + [self.ts_field]
        self.hmget_head = b"*%d\r\n$5\r\nHMGET\r\n" % (2 + len(self.fields))
        self.hmget_tail = b"".join(_bulk(f) for f in self.fields)
        self.refs = [f"{table_name}__{f}" if full_names else f for f in features]
        names = b"".join(_field(_NAMES, r.encode()) for r in self.refs)
        self.metadata = _field(_META, _field(_NAMES, names))


class _Read:
    """One feature view's part of a call: its plan, Redis keys and output rows."""

    __slots__ = ("idxs", "keys", "output_len", "plan", "table")

    def __init__(self, table, plan: _Plan, keys: list[bytes], idxs, output_len: int):
        self.table, self.plan, self.keys = table, plan, keys
        self.idxs, self.output_len = idxs, output_len


class FastRedisOnlineStore(RedisOnlineStore):
    """`RedisOnlineStore` with a faster read path; the same data, the same results."""

    _plans: dict | None = None
    _key_prefixes: dict | None = None
    _feature_types: dict | None = None

    # -- the SDK read path (`get_online_features`, sync and async) ----------------------

    def get_online_features(self, config, features, entity_rows, registry, project,
                            full_feature_names=False,
                            include_feature_view_version_metadata=False):  # fmt: skip
        response = super().get_online_features(
            config, features, entity_rows, registry, project,
            full_feature_names=full_feature_names,
            include_feature_view_version_metadata=include_feature_view_version_metadata,
        )  # fmt: skip
        return _fast_response(config, response)

    async def get_online_features_async(self, config, features, entity_rows, registry,
                                        project, full_feature_names=False,
                                        include_feature_view_version_metadata=False):  # fmt: skip
        response = await super().get_online_features_async(
            config, features, entity_rows, registry, project,
            full_feature_names=full_feature_names,
            include_feature_view_version_metadata=include_feature_view_version_metadata,
        )  # fmt: skip
        return _fast_response(config, response)

    def _read_features_per_fv(
        self,
        config,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        reads = self._fast_reads(
            config, grouped_refs, join_key_values, entity_name_to_join_key_map,
            full_feature_names,
        )  # fmt: skip
        if reads is None:
            return super()._read_features_per_fv(
                config, grouped_refs, join_key_values, entity_name_to_join_key_map,
                online_features_response, full_feature_names,
                include_feature_view_version_metadata,
            )  # fmt: skip
        payload = b"".join(
            r.plan.hmget_head + _bulk(key) + r.plan.hmget_tail for r in reads for key in r.keys
        )
        replies = self._hmget_packed(config, payload, sum(len(r.keys) for r in reads))
        _fill_response(online_features_response, reads, replies,
                       include_feature_view_version_metadata)  # fmt: skip

    async def _read_features_per_fv_async(
        self,
        config,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        reads = self._fast_reads(
            config, grouped_refs, join_key_values, entity_name_to_join_key_map,
            full_feature_names,
        )  # fmt: skip
        if reads is None:
            return await super()._read_features_per_fv_async(
                config, grouped_refs, join_key_values, entity_name_to_join_key_map,
                online_features_response, full_feature_names,
                include_feature_view_version_metadata,
            )  # fmt: skip
        client = await self._get_client_async(config.online_store)
        async with client.pipeline(transaction=False) as pipe:
            for r in reads:
                for key in r.keys:
                    pipe.hmget(key, r.plan.fields)
            replies = await pipe.execute()
        _fill_response(online_features_response, reads, replies,
                       include_feature_view_version_metadata)  # fmt: skip

    def _build_feature_types(self, grouped_refs):
        """Stock's feature name -> ValueType map, kept per (views, requested features):
        Feast caches the resolved views of a request until the registry refreshes, so
        the same view objects come back call after call."""
        key = tuple((id(table), tuple(features)) for table, features in grouped_refs)
        cache = self._feature_types
        if cache is None:
            cache = self._feature_types = {}
        hit = cache.get(key)
        if hit is None or any(a is not b for a, (b, _) in zip(hit[0], grouped_refs, strict=True)):
            if len(cache) >= _MAX_PLANS:
                cache.clear()
            tables = tuple(table for table, _ in grouped_refs)
            hit = cache[key] = (tables, super()._build_feature_types(grouped_refs))
        return dict(hit[1])

    # -- the store-level read (`online_read`), as stock returns it ----------------------

    def online_read(
        self,
        config,
        table,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ):
        if not self._fast_config(config):
            return super().online_read(config, table, entity_keys, requested_features)
        plan = self._plan(config, table, requested_features, False)
        keys = self._keys_of_protos(config, entity_keys)
        payload = b"".join(plan.hmget_head + _bulk(key) + plan.hmget_tail for key in keys)
        return _rows_of(plan, self._hmget_packed(config, payload, len(keys)))

    async def online_read_async(
        self,
        config,
        table,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ):
        if not self._fast_config(config):
            return await super().online_read_async(config, table, entity_keys, requested_features)
        plan = self._plan(config, table, requested_features, False)
        keys = self._keys_of_protos(config, entity_keys)
        client = await self._get_client_async(config.online_store)
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, plan.fields)
            replies = await pipe.execute()
        return _rows_of(plan, replies)

    # -- plumbing -----------------------------------------------------------------------

    @staticmethod
    def _fast_config(config) -> bool:
        online = config.online_store
        return (
            isinstance(online, RedisOnlineStoreConfig)
            and online.redis_type == RedisType.redis
            and online.client == RedisClient.redis
        )

    def _plan(self, config, table, requested_features, full_feature_names: bool) -> _Plan:
        fv_name = _versioned_fv_name(table, config)
        features = (
            tuple(requested_features)
            if requested_features
            else tuple(f.name for f in table.features)
        )
        table_name = table.projection.name_to_use()
        cache_key = (fv_name, table_name, features, full_feature_names)
        plans = self._plans
        if plans is None:
            plans = self._plans = {}
        plan = plans.get(cache_key)
        if plan is None:
            plan = _Plan(fv_name, table_name, list(features), full_feature_names)
            if len(plans) >= _MAX_PLANS:
                plans.clear()
            plans[cache_key] = plan
        return plan

    def _fast_reads(self, config, grouped_refs, join_key_values, entity_name_to_join_key_map,
                    full_feature_names: bool) -> list[_Read] | None:  # fmt: skip
        """The reads of a call, or None where Feast's own path must serve it."""
        if not self._fast_config(config) or not grouped_refs:
            return None
        reads = []
        for table, requested_features in grouped_refs:
            if not requested_features:
                return None
            entities, idxs, output_len = utils._get_unique_entities(
                table, join_key_values, entity_name_to_join_key_map
            )
            if not output_len:
                return None
            plan = self._plan(config, table, requested_features, full_feature_names)
            keys = self._keys_of_rows(config, entities)
            reads.append(_Read(table, plan, keys, idxs, output_len))
        return reads

    def _keys_of_rows(self, config, entities: Sequence[dict[str, ValueProto]]) -> list[bytes]:
        """Redis keys of the unique entities (dicts join key -> ValueProto), as stock's
        `serialize_entity_key(...) + project`; a single string join key without protos."""
        first = entities[0]
        if len(first) == 1 and config.entity_key_serialization_version == 3:
            (join_key,) = first
            prefix, project = self._string_key_prefix(join_key), config.project.encode()
            pack = struct.Struct("<I").pack
            keys = []
            for row in entities:
                value = row[join_key]
                if value.WhichOneof("val") != "string_val":
                    break
                b = value.string_val.encode()
                keys.append(prefix + pack(len(b)) + b + project)
            else:
                return keys
        return self._keys_of_protos(config, utils._get_entity_key_protos(entities))

    def _string_key_prefix(self, join_key: str) -> bytes:
        prefixes = self._key_prefixes
        if prefixes is None:
            prefixes = self._key_prefixes = {}
        prefix = prefixes.get(join_key)
        if prefix is None:
            name = join_key.encode()
            prefix = prefixes[join_key] = (
                struct.pack("<III", 1, _STRING, len(name)) + name + struct.pack("<I", _STRING)
            )
        return prefix

    @staticmethod
    def _keys_of_protos(config, entity_keys: list[EntityKeyProto]) -> list[bytes]:
        version, project = config.entity_key_serialization_version, config.project.encode()
        return [
            serialize_entity_key(ek, entity_key_serialization_version=version) + project
            for ek in entity_keys
        ]

    def _hmget_packed(self, config, payload: bytes, n: int) -> list:
        """Send the pre-encoded HMGETs in one write, read `n` replies (one try more on a
        dropped connection: the reads are idempotent)."""
        import redis

        pool = self._get_client(config.online_store).connection_pool
        for attempt in (1, 2):
            conn = pool.get_connection()
            try:
                conn.send_packed_command([payload])
                return [conn.read_response() for _ in range(n)]
            except (redis.ConnectionError, redis.TimeoutError):
                conn.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                conn.disconnect()  # replies may be left unread on it
                raise
            finally:
                pool.release(conn)
        raise AssertionError("unreachable")


def _fill_response(response, reads: list[_Read], replies: list, include_version_meta: bool):
    """Append each read's feature names and FeatureVectors to the response, as stock's
    `_populate_response_from_feature_data` does, from the stored bytes in one merge."""
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


def _rows_of(plan: _Plan, replies: list):
    """`online_read`'s rows from HMGET replies, as stock's `_get_features_for_entity`."""
    features = plan.features
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


def _fast_response(config, response: OnlineResponse) -> OnlineResponse:
    if (
        not getattr(config.online_store, "fast_to_dict", False)
        or type(response) is not OnlineResponse
    ):
        return response
    fast = FastOnlineResponse.__new__(FastOnlineResponse)
    fast.__dict__.update(response.__dict__)
    return fast
