"""A faster Feast read path on the same Redis data: `FastRedisOnlineStore`.

Feast 0.67's `RedisOnlineStore` spends most of a `get_online_features` call in Python, per
value: it hashes every field name again for every call, sends one redis-py pipeline command
per entity, parses each stored `ValueProto` into its own message, copies those messages into
the response's `FeatureVector`s one by one, and `OnlineResponse.to_dict` then converts each
value back to Python with `feast_value_type_to_python_type`.

This store reads and returns exactly what the stock store does, from exactly what Feast (or
`feature_repo.online_write`) stores: the keys, hash fields, serialized `ValueProto`s and `_ts:`
timestamps of `feature_repo.redis_layout`, the one description of that layout, which the
writer uses too. It only does the work differently:

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

The response framing and `FastOnlineResponse` live in `feature_repo.online_response`.

The response proto is byte for byte the one the stock store builds (tests/feature_repo/
test_fast_read.py compares them on real Redis).

Writes, deletes and everything else are inherited unchanged. On a Redis Cluster
(`redis_type: redis_cluster`) the HMGETs are grouped by the node that serves each key's
slot, one write per node, all nodes sent to before any reply is read. Sentinel and the
GLIDE client keep Feast's own read path.

On a single Redis or a cluster its redis-py clients (reads, and Feast's own writes and
deletes) are built by `models.core.redis_url`, the one parser of the connection string, rather than by Feast's:
both of its forms (`rediss://...` too), its TLS options and checks, and values taken as
written (Feast JSON-decodes them: a password `123` would become an integer).

Configure it with the store's class path as the online store `type`:

    online_store:
      type: feature_repo.online_store.FastRedisOnlineStore
      connection_string: localhost:6379
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from feast import utils
from feast.infra.online_stores.redis import (
    RedisClient,
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    RedisType,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feature_repo import redis_layout
from feature_repo.online_response import (
    fast_response,
    fill_response,
    names_metadata,
    online_read_rows,
)
from feature_repo.redis_cluster import send_routed
from feature_repo.redis_layout import ViewFields, bulk, command_head
from models.core.redis_url import async_redis_client, redis_client

STORE_TYPE = "feature_repo.online_store.FastRedisOnlineStore"

_MAX_PLANS = 4096  # read plans kept per store (one per view x requested features)

_OURS = (RedisType.redis, RedisType.redis_cluster)  # the types this store's clients serve

SOCKET_TIMEOUT_S = 5.0
_TIMEOUTS = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S}


class FastRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """`RedisOnlineStoreConfig` (every field of it) with this store's class path as type."""

    type: Literal["feature_repo.online_store.FastRedisOnlineStore"] = STORE_TYPE  # type: ignore[assignment]
    """Online store type selector: this class's path."""

    fast_to_dict: bool = True
    """Return an `OnlineResponse` whose `to_dict` (and `to_df`, `to_arrow`) converts plain
    scalar values without Feast's per-value converter (same result); false: Feast's own."""


class _Plan:
    """What a read of (view, requested features) needs, built once: the hash fields (the
    features', then `_ts:<view>`), their RESP encoding, and the response's feature names."""

    __slots__ = ("features", "fields", "hmget_head", "hmget_tail", "metadata", "refs")

    def __init__(self, layout: ViewFields, table_name: str, full_names: bool):
        self.features = list(layout.features)
        self.fields = [*layout.fields, layout.ts_field]
        self.hmget_head = command_head(b"HMGET", 1 + len(self.fields))
        self.hmget_tail = b"".join(bulk(f) for f in self.fields)
        self.refs = [f"{table_name}__{f}" if full_names else f for f in layout.features]
        self.metadata = names_metadata(self.refs)


class _Read:
    """One feature view's part of a call: its plan, Redis keys and output rows."""

    __slots__ = ("idxs", "keys", "output_len", "plan", "table")

    def __init__(self, table, plan: _Plan, keys: list[bytes], idxs, output_len: int):
        self.table, self.plan, self.keys = table, plan, keys
        self.idxs, self.output_len = idxs, output_len


class FastRedisOnlineStore(RedisOnlineStore):
    """`RedisOnlineStore` with a faster read path; the same data, the same results."""

    _plans: dict | None = None
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
        return fast_response(config, response)

    async def get_online_features_async(self, config, features, entity_rows, registry,
                                        project, full_feature_names=False,
                                        include_feature_view_version_metadata=False):  # fmt: skip
        response = await super().get_online_features_async(
            config, features, entity_rows, registry, project,
            full_feature_names=full_feature_names,
            include_feature_view_version_metadata=include_feature_view_version_metadata,
        )  # fmt: skip
        return fast_response(config, response)

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
        keys = [key for r in reads for key in r.keys]
        commands = [r.plan.hmget_head + bulk(key) + r.plan.hmget_tail
                    for r in reads for key in r.keys]  # fmt: skip
        replies = self._hmget_packed(config, keys, commands)
        fill_response(online_features_response, reads, replies,
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
        fill_response(online_features_response, reads, replies,
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
        keys = redis_layout.proto_keys(entity_keys, config)
        commands = [plan.hmget_head + bulk(key) + plan.hmget_tail for key in keys]
        return online_read_rows(plan.features, self._hmget_packed(config, keys, commands))

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
        keys = redis_layout.proto_keys(entity_keys, config)
        client = await self._get_client_async(config.online_store)
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, plan.fields)
            replies = await pipe.execute()
        return online_read_rows(plan.features, replies)

    # -- clients: on a single Redis, from models.core.redis_url ---------------------------
    # Every call has a bound (#16): a hung Redis fails a read or write with a TimeoutError
    # after SOCKET_TIMEOUT_S instead of freezing the API or the run. Redis answers each
    # command of a pipeline as it runs it, so a big write never waits this long on a live one.

    def _get_client(self, online_store_config):
        if self._client is None and online_store_config.redis_type in _OURS:
            self._client = redis_client(online_store_config.connection_string,
                                        cluster=_cluster(online_store_config), **_TIMEOUTS)  # fmt: skip
        return super()._get_client(online_store_config)

    async def _get_client_async(self, online_store_config):
        if self._client_async is None and online_store_config.redis_type in _OURS:
            self._client_async = async_redis_client(
                online_store_config.connection_string,
                cluster=_cluster(online_store_config),
                **_TIMEOUTS,
            )
        return await super()._get_client_async(online_store_config)

    # -- plumbing -----------------------------------------------------------------------

    @staticmethod
    def _fast_config(config) -> bool:
        online = config.online_store
        return (
            isinstance(online, RedisOnlineStoreConfig)
            and online.redis_type in _OURS
            and online.client == RedisClient.redis
        )

    def _plan(self, config, table, requested_features, full_feature_names: bool) -> _Plan:
        fv_name = redis_layout.view_name(table, config)
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
            plan = _Plan(ViewFields.named(fv_name, features), table_name, full_feature_names)
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

    @staticmethod
    def _keys_of_rows(config, entities: Sequence[dict[str, ValueProto]]) -> list[bytes]:
        """Redis keys of the unique entities (dicts join key -> ValueProto): those of the
        usual single string join key without protos."""
        first = entities[0]
        if len(first) == 1:
            (join_key,) = first
            ids = []
            for row in entities:
                value = row[join_key]
                if value.WhichOneof("val") != "string_val":
                    break
                ids.append(value.string_val)
            else:
                return redis_layout.string_keys(join_key, ids, config)
        return redis_layout.proto_keys(utils._get_entity_key_protos(entities), config)

    def _hmget_packed(self, config, keys: list[bytes], commands: list[bytes]) -> list:
        """Send the pre-encoded HMGETs (`commands`, one per key of `keys`) in one write per
        Redis server, read their replies in the keys' order (one try more on a dropped
        connection: the reads are idempotent)."""
        client = self._get_client(config.online_store)
        return send_routed(client, keys, commands, retry=True)


def _cluster(online_store_config) -> bool:
    return online_store_config.redis_type == RedisType.redis_cluster
