"""Feast's Redis layout of the online store, once: its reader (`online_store`) and its
writer (`online_write`) both take it from here, so what one writes the other finds.

The layout, as Feast 0.67 (`feast/infra/online_stores/redis.py`) reads and writes it:

* one Redis hash per entity, at the key `serialize_entity_key(entity key) + project`; for
  one STRING join key (version 3) that is, in little-endian uint32s and bytes,
  `1, STRING, len(join key), join key, STRING, len(value), value, project`;
* per feature of a view, the field `mmh3("<view>:<feature>")` (4 bytes, Feast's `_mmh3`),
  holding the serialized `ValueProto` (b"" for null);
* per view, the field `_ts:<view>`, the serialized `Timestamp` of the row's event time;
* `<view>` is the view's name, `<name>_v<N>` when the registry versions online views
  (Feast's `compute_versioned_name`).

The writer's content-aware upsert (`UPSERT_LUA`: newer, or the same time with other values,
overwrites; older or equal is skipped; atomic per key and view, many keys and views a call)
is a Lua script on that layout.

It also packs Redis commands in RESP, as redis-py would send them, so that a chunk of
commands goes out in one write (`send_packed`). Feast and redis-py are imported inside the
functions: importing the writer stays light.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

_STRING = 2  # feast.value_type.ValueType.STRING: the entity key's type tag
_UINT32 = struct.Struct("<I")


# -- fields --------------------------------------------------------------------------------


def view_name(view, config) -> str:
    """The name a view's fields are made of: its name, versioned when the registry says so."""
    from feast.infra.online_stores.helpers import compute_versioned_name

    versioning = getattr(config.registry, "enable_online_feature_view_versioning", False)
    return compute_versioned_name(view, versioning)


@dataclass(frozen=True)
class ViewFields:
    """The hash fields of a view: its features' (in feature order) and its timestamp's."""

    view: str  # the (versioned) view name
    features: tuple[str, ...]
    fields: tuple[bytes, ...]  # mmh3 of `<view>:<feature>`, one per feature
    ts_field: bytes  # `_ts:<view>`

    @classmethod
    def of(cls, view, config, features: Iterable[str] | None = None) -> ViewFields:
        """The fields of `features` of a Feast feature view (all of them when None or empty)."""
        features = tuple(features or ())
        return cls.named(view_name(view, config), features or [f.name for f in view.features])

    @classmethod
    def named(cls, view: str, features: Iterable[str]) -> ViewFields:
        from feast.infra.online_stores.helpers import _mmh3

        features = tuple(features)
        fields = tuple(_mmh3(f"{view}:{f}") for f in features)
        return cls(view, features, fields, f"_ts:{view}".encode())


# -- keys ----------------------------------------------------------------------------------


def string_keys(join_key: str, ids: Sequence[str], config) -> list[bytes]:
    """The Redis keys of entities with the one STRING join key `join_key` = each of `ids`
    (built without protos at serialization version 3)."""
    if config.entity_key_serialization_version != 3:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        protos = [
            EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=i)])
            for i in ids
        ]
        return proto_keys(protos, config)
    prefix, project, pack = string_key_prefix(join_key), config.project.encode(), _UINT32.pack
    out = []
    for value in ids:
        b = value.encode()
        out.append(prefix + pack(len(b)) + b + project)
    return out


def proto_keys(entity_keys: Sequence[EntityKeyProto], config) -> list[bytes]:
    """The Redis keys of any entity keys, by Feast's own `serialize_entity_key`."""
    from feast.infra.key_encoding_utils import serialize_entity_key

    version, project = config.entity_key_serialization_version, config.project.encode()
    return [
        serialize_entity_key(ek, entity_key_serialization_version=version) + project
        for ek in entity_keys
    ]


@functools.lru_cache(maxsize=256)
def string_key_prefix(join_key: str) -> bytes:
    """A key up to the value's length: one key, STRING, the join key, STRING."""
    name = join_key.encode()
    return struct.pack("<III", 1, _STRING, len(name)) + name + _UINT32.pack(_STRING)


# -- RESP ----------------------------------------------------------------------------------


def bulk(value: bytes) -> bytes:
    """A RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command_head(name: bytes, n_args: int) -> bytes:
    """The start of a command of `n_args` arguments: array header and command name."""
    return b"*%d\r\n" % (1 + n_args) + bulk(name)


def command(*args: bytes) -> bytes:
    """A whole command: its name and arguments."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def send_packed(pool, payload: bytes, n: int, *, retry: bool = False) -> list:
    """Send RESP-encoded commands in one write on a connection of `pool` and read `n`
    replies: a redis-py pipeline without its per-command Python work. An error drops the
    connection (replies may be left unread on it); `retry`: one try more on a dropped
    connection (for commands that may run twice, reads)."""
    import redis

    for attempt in (1, 2):
        conn = pool.get_connection()
        try:
            try:
                conn.send_packed_command([payload])
                return [conn.read_response() for _ in range(n)]
            except AttributeError as e:
                # redis-py 7.4's hiredis parser, torn down by a disconnect while it reads,
                # fails with AttributeError ('NoneType' object has no attribute 'feed'):
                # a dropped connection, as later redis-py says (its issue #4003)
                raise redis.ConnectionError("connection closed during the read") from e
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()
            if not retry or attempt == 2:
                raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")


# -- the content-aware upsert ----------------------------------------------------------------

# A Timestamp read as (seconds, nanos) from its varints (fields 1 and 2); nil gives (0, 0).
_STAMP_LUA = b"""
local function varint(s, i)
  local v, m = 0, 1
  while i <= #s do
    local b = string.byte(s, i)
    i = i + 1
    v = v + (b % 128) * m
    if b < 128 then break end
    m = m * 128
  end
  return v, i
end
local function stamp(s)
  local sec, nanos, i = 0, 0, 1
  while s and i <= #s do
    local tag = string.byte(s, i)
    local v
    v, i = varint(s, i + 1)
    if tag == 8 then sec = v elseif tag == 16 then nanos = v end
  end
  if sec >= 9223372036854775808 then sec = sec - 18446744073709551616 end
  return sec, nanos
end
"""

# One call upserts the rows of several entities into several views (the same entity's
# hash holds every view's fields, so a clip's features and its score go in one HSET).
# KEYS: the entities' keys. ARGV: the key TTL in seconds ('' for none), the number of
# views V, then per view its `_ts:<view>` field, its number of features F and their F hash
# fields; then per key, per view: the row's serialized Timestamp ('-' when the key has no
# row of that view: the epoch's Timestamp is '') and its F serialized values. Returns per
# key the sum over views v (0-based) of status * 3^v, a view's status being 0 when skipped
# (no row; or the stored time is newer, or equal with the same values), 1 when written as
# new or newer, 2 when written over an equal time with changed values. A Timestamp is read
# as (seconds, nanos) from its varints (fields 1 and 2); a stored (0, 0) counts as none (as
# in `online_write`); seconds before 1970 (ten-byte varints) compare approximately.
UPSERT_LUA = _STAMP_LUA + b"""
local function decide(key, ts_field, ts, fields, first)
  local old_s, old_n = stamp(redis.call('HGET', key, ts_field))
  if old_s == 0 and old_n == 0 then return 1 end
  local new_s, new_n = stamp(ts)
  if new_s < old_s or (new_s == old_s and new_n < old_n) then return 0 end
  if new_s > old_s or new_n > old_n then return 1 end
  local held = redis.call('HMGET', key, unpack(fields))
  for j = 1, #fields do
    if held[j] ~= ARGV[first + j] then return 2 end
  end
  return 0
end
local ttl, nviews, at = ARGV[1], tonumber(ARGV[2]), 3
local views = {}
for v = 1, nviews do
  local nf, fields = tonumber(ARGV[at + 1]), {}
  for j = 1, nf do fields[j] = ARGV[at + 1 + j] end
  views[v] = {ARGV[at], fields}
  at = at + 2 + nf
end
local out = {}
for k = 1, #KEYS do
  local key, code, weight, args = KEYS[k], 0, 1, {}
  for v = 1, nviews do
    local ts_field, fields = views[v][1], views[v][2]
    local ts = ARGV[at]
    if ts ~= '-' then
      local status = decide(key, ts_field, ts, fields, at)
      if status > 0 then
        args[#args + 1] = ts_field
        args[#args + 1] = ts
        for j = 1, #fields do
          args[#args + 1] = fields[j]
          args[#args + 1] = ARGV[at + j]
        end
        code = code + status * weight
      end
    end
    weight = weight * 3
    at = at + 1 + #fields
  end
  if #args > 0 then
    redis.call('HSET', key, unpack(args))
    if ttl ~= '' then redis.call('EXPIRE', key, ttl) end
  end
  out[k] = code
end
return out
"""
UPSERT_SHA = hashlib.sha1(UPSERT_LUA).hexdigest().encode()  # noqa: S324 (Redis's script id)

# The check before a plain write (`online_batch`): KEYS: the entities' keys; ARGV: the
# number of views V, their V `_ts:<view>` fields, then per key, per view, the row's
# serialized Timestamp ('-' for no row). Returns one string of a digit per key and view:
# 0 skip (no row, or the stored time is newer), 1 write (none stored, or the row is
# strictly newer), 2 the same time (the values decide: `UPSERT_LUA` writes those rows).
# Only reads; the writer holds the online store's writer lease (`WRITER_LEASE`) from this
# check to its write, so no other clipflow writer lands in between.
# A call parses each distinct (stored, offered) pair of times once (a night's rows share both).
DECIDE_LUA = _STAMP_LUA + b"""
local nviews = tonumber(ARGV[1])
local fields = {}
for v = 1, nviews do fields[v] = ARGV[1 + v] end
local at, out, memo = 2 + nviews, {}, {}
local function decide(old, ts)
  local old_s, old_n = stamp(old)
  if old_s == 0 and old_n == 0 then return '1' end
  local new_s, new_n = stamp(ts)
  if new_s > old_s or (new_s == old_s and new_n > old_n) then return '1' end
  if new_s == old_s and new_n == old_n then return '2' end
  return '0'
end
for k = 1, #KEYS do
  local held = redis.call('HMGET', KEYS[k], unpack(fields))
  for v = 1, nviews do
    local ts, status = ARGV[at], '0'
    if ts ~= '-' then
      local old = held[v] or ''
      local seen = memo[ts]
      if seen == nil then seen = {}; memo[ts] = seen end
      status = seen[old]
      if status == nil then status = decide(old, ts); seen[old] = status end
    end
    out[#out + 1] = status
    at = at + 1
  end
end
return table.concat(out)
"""
DECIDE_SHA = hashlib.sha1(DECIDE_LUA).hexdigest().encode()  # noqa: S324 (Redis's script id)
WRITER_LEASE = "clipflow:online-writer:{project}"  # a redis-py Lock's name, per Feast project
