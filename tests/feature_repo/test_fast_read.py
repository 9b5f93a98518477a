"""FastRedisOnlineStore (feature_repo/online_store.py) reads what Feast's RedisOnlineStore
reads: the same response proto, the same `to_dict`, on the same stored rows (real Redis)."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest
import redis
from support import clip_feature_rows

from feature_repo import config, online_write

SERVICE = "clip_quality_v1"
FAST_TYPE = "feature_repo.online_store.FastRedisOnlineStore"


def same(a, b) -> bool:
    """Equal values of the same types (True is not 1), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def assert_same_reads(fast, stock, entity_rows, features=None, **kwargs):
    features = features or stock.get_feature_service(SERVICE)
    got = fast.get_online_features(features=features, entity_rows=entity_rows, **kwargs)
    want = stock.get_online_features(features=features, entity_rows=entity_rows, **kwargs)
    assert got.proto.SerializeToString() == want.proto.SerializeToString()
    for ts in (False, True):
        got_dict, want_dict = got.to_dict(ts), want.to_dict(ts)
        assert list(got_dict) == list(want_dict)
        for name in want_dict:
            assert same(got_dict[name], want_dict[name]), name
    pd.testing.assert_frame_equal(got.to_df(), want.to_df())
    try:
        want_arrow = want.to_arrow()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # mixed kinds of values in a column
        with pytest.raises(type(e)):
            got.to_arrow()
    else:
        assert got.to_arrow().equals(want_arrow)
    return got.to_dict()


def edge_rows(prefix: str, null_extremes: bool = True) -> pa.Table:
    """Latest rows with edge values in every feature type, nulls included (Feast's own
    write turns an int column with nulls into floats: no null beside int64 extremes)."""
    rows = online_write.latest_per_entity(clip_feature_rows(6, prefix, seed=21))
    n = rows.num_rows
    edges = {
        "duration_s": [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, None],
        "fps": [1.7976931348623157e308, -1e-300, 0.0, None, 3.0, 2.5],
        "resolution": ["日本語", "émoji 🎬", "", None, "x" * 300, "a\u0000b"],
        "resolution_rank": [2**63 - 1, -(2**63), 0, -1, None if null_extremes else 7, 128],
        "views_7d": [16384, 127, None, 1, -300, 2**40],
        "has_captions": [True, False, None, True, False, None],
    }
    for name, values in edges.items():
        i = rows.schema.get_field_index(name)
        rows = rows.set_column(i, name, pa.array(values[:n], rows.schema.field(i).type))
    return rows


def test_the_redis_config_selects_the_fast_store(redis_store, monkeypatch):
    from feature_repo.online_store import FastRedisOnlineStore, FastRedisOnlineStoreConfig

    cfg = config.repo_config()
    assert isinstance(cfg.online_store, FastRedisOnlineStoreConfig)
    assert cfg.online_store.type == FAST_TYPE
    assert isinstance(redis_store._get_provider().online_store, FastRedisOnlineStore)
    monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", "1")
    assert config.repo_config().online_store.type == "redis"


def test_yaml_for_the_cli_names_the_fast_store(redis_store, online_redis, monkeypatch):
    from feast.repo_config import load_repo_config

    from feature_repo.online_store import FastRedisOnlineStoreConfig

    path = config.write_feature_store_yaml()
    monkeypatch.setenv("CLIPFLOW_REDIS", online_redis["connection_string"])
    cfg = load_repo_config(config.REPO_DIR, path)
    assert isinstance(cfg.online_store, FastRedisOnlineStoreConfig)
    assert cfg.online_store.connection_string == online_redis["connection_string"]


def test_reads_equal_stock_for_both_writers_and_edge_values(stores, prefix):
    fast, stock = stores
    by_fast_writer = edge_rows(prefix + "w")
    # write_online takes its fast writer on a store of type "redis"
    assert online_write.write_online(stock, by_fast_writer).method == "fast"
    by_feast = online_write.latest_per_entity(clip_feature_rows(7, prefix + "f", seed=4))
    stock.write_to_online_store("clip_features", by_feast.to_pandas())
    by_feast_edges = edge_rows(prefix + "e", null_extremes=False)
    stock.write_to_online_store("clip_features", by_feast_edges.to_pandas())

    ids = [
        *by_fast_writer.column("clip_id").to_pylist(),
        *by_feast.column("clip_id").to_pylist(),
        *by_feast_edges.column("clip_id").to_pylist(),
    ]
    got = assert_same_reads(fast, stock, [{"clip_id": c} for c in ids])
    assert got["resolution"][:2] == ["日本語", "émoji 🎬"]
    assert got["resolution_rank"][:2] == [2**63 - 1, -(2**63)]
    assert got["duration_s"][1:3] == [float("inf"), float("-inf")]
    assert got["has_captions"][:3] == [True, False, None]
    # one entity, and one at a time
    for c in ids[:3]:
        assert_same_reads(fast, stock, [{"clip_id": c}])


def test_missing_and_repeated_entities_read_as_stock(stores, prefix):
    fast, stock = stores
    rows = online_write.latest_per_entity(clip_feature_rows(10, prefix, seed=9))
    online_write.write_online(stock, rows)
    ids = rows.column("clip_id").to_pylist()
    request = [f"{prefix}missing-1", ids[3], ids[0], ids[3], f"{prefix}missing-2", *ids]
    got = assert_same_reads(fast, stock, [{"clip_id": c} for c in request])
    assert got["clip_id"] == request
    assert got["fps"][0] is None and got["topic"][4] is None
    assert got["duration_s"][1] == got["duration_s"][3]
    only_missing = [{"clip_id": f"{prefix}nothing"}]
    assert set(map(tuple, assert_same_reads(fast, stock, only_missing).values())) >= {(None,)}


def test_many_entities_feature_lists_and_two_views(stores, prefix):
    fast, stock = stores
    rows = online_write.latest_per_entity(clip_feature_rows(120, prefix, seed=2))
    online_write.write_online(stock, rows)
    ids = rows.column("clip_id").to_pylist()
    scores = pd.DataFrame(
        {
            "clip_id": ids[::2],
            "event_timestamp": pd.Timestamp("2025-05-01T12:00:00.123456Z"),
            "score": [float(i) for i in range(len(ids[::2]))],
            "model_version": ["v7"] * len(ids[::2]),
            "score_low": [float(i) - 1 for i in range(len(ids[::2]))],
            "score_high": [float(i) + 1 for i in range(len(ids[::2]))],
            "interval_level": [0.8] * len(ids[::2]),
        }
    )
    stock.write_to_online_store("clip_scores", scores)
    entity_rows = [{"clip_id": c} for c in ids[:100]]
    assert_same_reads(fast, stock, entity_rows)
    features = ["clip_features:fps", "clip_scores:score", "clip_features:topic",
                "clip_scores:model_version"]  # fmt: skip
    for full in (False, True):
        assert_same_reads(fast, stock, entity_rows, features, full_feature_names=full)
    # a columnar request
    columnar = {"clip_id": ids[:10]}
    got = fast.get_online_features(features=features, entity_rows=columnar)
    want = stock.get_online_features(features=features, entity_rows=columnar)
    assert got.proto.SerializeToString() == want.proto.SerializeToString()


def stored_key(store, clip_id: str) -> bytes:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=clip_id)])
    return serialize_entity_key(key, entity_key_serialization_version=3) + b"clipflow"


def test_any_stored_value_kind_and_timestamp_reads_as_stock(stores, online_redis, prefix):
    """Values of other kinds than the view declares (lists, timestamps, JSON, null_val),
    and stored timestamps with nanoseconds, before 1970, at rounding edges."""
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.Value_pb2 import (
        DoubleList,
        Int64List,
        Null,
        StringList,
    )
    from feast.protos.feast.types.Value_pb2 import (
        Value as V,
    )
    from google.protobuf.timestamp_pb2 import Timestamp

    fast, stock = stores
    kinds = [
        V(double_val=float("nan")),
        V(float_val=1.25),
        V(int32_val=-7),
        V(int64_val=0),
        V(bool_val=False),
        V(string_val=""),
        V(bytes_val=b"\x00\xff"),
        V(unix_timestamp_val=1_700_000_000),
        V(int64_list_val=Int64List(val=[1, -2, 2**62])),
        V(double_list_val=DoubleList(val=[0.5, float("inf")])),
        V(string_list_val=StringList(val=["a", "日本"])),
        V(json_val='{"a": [1, 2]}'),
        V(null_val=Null.NULL),
        V(),
    ]
    stamps = [
        Timestamp(seconds=1_700_000_000, nanos=123_456_789),
        Timestamp(seconds=1_700_000_000, nanos=999_999_999),
        Timestamp(seconds=1_700_000_000, nanos=500),
        Timestamp(seconds=1_700_000_000, nanos=1_500),
        Timestamp(seconds=-1, nanos=999_999_500),
        Timestamp(seconds=0, nanos=0),
        Timestamp(seconds=1, nanos=0),
    ]
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    ids = [f"{prefix}k{i}" for i in range(len(kinds))]
    with online_redis["client"]() as client:
        for i, clip_id in enumerate(ids):
            fields = {
                _mmh3(f"clip_features:{name}"): kinds[(i + j) % len(kinds)].SerializeToString()
                for j, name in enumerate(CLIP_FEATURE_NAMES)
                if (i + j) % 5  # some fields absent from the hash
            }
            fields[b"_ts:clip_features"] = stamps[i % len(stamps)].SerializeToString()
            client.hset(stored_key(stock, clip_id), mapping=fields)
    entity_rows = [{"clip_id": c} for c in ids]
    assert_same_reads(fast, stock, entity_rows)
    asyncio.run(_assert_same_async_reads(fast, stock, entity_rows))


async def _assert_same_async_reads(fast, stock, entity_rows):
    service = stock.get_feature_service(SERVICE)
    got = await fast.get_online_features_async(features=service, entity_rows=entity_rows)
    want = await stock.get_online_features_async(features=service, entity_rows=entity_rows)
    assert got.proto.SerializeToString() == want.proto.SerializeToString()
    assert same(got.to_dict(), want.to_dict())
    fv = stock.get_feature_view("clip_features")
    keys = _entity_keys([r["clip_id"] for r in entity_rows])
    fast_store, stock_store = (s._get_provider().online_store for s in (fast, stock))
    got_rows = await fast_store.online_read_async(fast.config, fv, keys, ["fps", "topic"])
    want_rows = await stock_store.online_read_async(stock.config, fv, keys, ["fps", "topic"])
    assert got_rows == want_rows


def _entity_keys(ids):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return [EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=c)]) for c in ids]


def test_online_read_returns_what_stock_returns(stores, prefix):
    fast, stock = stores
    rows = edge_rows(prefix)
    online_write.write_online(stock, rows)
    fv = stock.get_feature_view("clip_features")
    keys = _entity_keys([*rows.column("clip_id").to_pylist(), f"{prefix}missing"])
    fast_store, stock_store = (s._get_provider().online_store for s in (fast, stock))
    for requested in (None, ["fps", "resolution", "has_captions"]):
        got = fast_store.online_read(fast.config, fv, keys, requested)
        want = stock_store.online_read(stock.config, fv, keys, list(requested or []) or None)
        assert got == want
        assert got[-1][0] == datetime(1970, 1, 1, tzinfo=UTC)


def test_to_dict_can_be_feasts_own(stores, prefix, monkeypatch):
    from feast.online_response import OnlineResponse

    from feature_repo.online_response import FastOnlineResponse

    fast, _ = stores
    rows = [{"clip_id": f"{prefix}x"}]
    service = fast.get_feature_service(SERVICE)
    assert type(fast.get_online_features(features=service, entity_rows=rows)) is FastOnlineResponse
    monkeypatch.setattr(fast.config.online_store, "fast_to_dict", False)
    assert type(fast.get_online_features(features=service, entity_rows=rows)) is OnlineResponse


def test_reads_survive_a_dropped_connection(stores, online_redis, prefix):
    fast, stock = stores
    rows = online_write.latest_per_entity(clip_feature_rows(3, prefix, seed=1))
    online_write.write_online(stock, rows)
    entity_rows = [{"clip_id": c} for c in rows.column("clip_id").to_pylist()]
    assert_same_reads(fast, stock, entity_rows)
    client = fast._get_provider().online_store._get_client(fast.config.online_store)
    # one server's pool, or on a cluster every node's
    nodes = client.get_primaries() if online_redis["cluster"] else []
    pools = [n.redis_connection.connection_pool for n in nodes] or [client.connection_pool]
    for pool in pools:
        conn = pool.get_connection()
        conn.send_command("CLIENT", "ID")
        client_id = conn.read_response()
        pool.release(conn)
        with redis.Redis(host=conn.host, port=conn.port) as admin:
            assert admin.client_kill_filter(_id=client_id) == 1
    assert_same_reads(fast, stock, entity_rows)  # one more try on a fresh connection
