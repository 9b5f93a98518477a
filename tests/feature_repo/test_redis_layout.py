"""The online store's one Redis layout (feature_repo/redis_layout.py): it is Feast's own, the
writer stores by it, and what the writer stores reads back the same through the fast reader
and through Feast's stock RedisOnlineStore (real Redis)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis
from support import clip_feature_rows

from feature_repo import config, online_write, redis_layout
from feature_repo.redis_layout import ViewFields

SERVICE = "clip_quality_v1"


def feast_key(clip_id: str, project: str = "clipflow") -> bytes:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=clip_id)])
    return serialize_entity_key(key, entity_key_serialization_version=3) + project.encode()


def test_keys_and_fields_are_feasts_own(sqlite_store):
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import _versioned_fv_name
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    cfg = sqlite_store.config
    ids = ["c0001", "", "日本語 🎬", "x" * 300, "a\u0000b"]
    want = [feast_key(i) for i in ids]
    assert redis_layout.string_keys("clip_id", ids, cfg) == want
    protos = [EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=i)]) for i in ids]
    assert redis_layout.proto_keys(protos, cfg) == want

    fv = sqlite_store.get_feature_view("clip_features")
    fields = ViewFields.of(fv, cfg)
    assert fields.features == tuple(f.name for f in fv.features)
    assert fields.fields == tuple(_mmh3(f"clip_features:{f.name}") for f in fv.features)
    assert fields.ts_field == b"_ts:clip_features"
    assert ViewFields.of(fv, cfg, ["fps"]).fields == (_mmh3("clip_features:fps"),)
    # the view name Feast's reader hashes, versioned when the registry says so
    for versioning in (False, True):
        view = SimpleNamespace(name="v", projection=SimpleNamespace(version_tag=None),
                               current_version_number=2)  # fmt: skip
        cfg = SimpleNamespace(
            registry=SimpleNamespace(enable_online_feature_view_versioning=versioning)
        )
        assert redis_layout.view_name(view, cfg) == _versioned_fv_name(view, cfg)
    assert redis_layout.view_name(view, cfg) == "v_v2"


def test_resp_packing():
    assert (
        redis_layout.command(b"HGET", b"k", b"f") == b"*3\r\n$4\r\nHGET\r\n$1\r\nk\r\n$1\r\nf\r\n"
    )
    assert redis_layout.command_head(b"HMGET", 3) == b"*4\r\n$5\r\nHMGET\r\n"
    assert redis_layout.bulk(b"") == b"$0\r\n\r\n"


def assert_both_readers_serve(fast, stock, rows) -> None:
    """`rows` (latest per clip) read back with exactly their values and event times through
    the fast reader and Feast's stock reader, which return the same response."""
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    ids = rows.column("clip_id").to_pylist()
    service = stock.get_feature_service(SERVICE)
    entity_rows = [{"clip_id": c} for c in ids]
    got, want = (
        s.get_online_features(features=service, entity_rows=entity_rows) for s in (fast, stock)
    )
    assert got.proto.SerializeToString() == want.proto.SerializeToString()
    written = rows.select(["clip_id", *CLIP_FEATURE_NAMES]).to_pydict()
    assert got.to_dict() == written
    assert want.to_dict() == written

    fv = stock.get_feature_view("clip_features")
    keys = _entity_keys(ids)
    times = rows.column("event_timestamp").to_pylist()
    for store in (fast, stock):
        online = store._get_provider().online_store
        read = online.online_read(store.config, fv, keys, ["fps", "topic"])
        assert [when for when, _ in read] == times
        topics = [
            v["topic"].string_val if v["topic"].HasField("string_val") else None for _, v in read
        ]
        assert topics == written["topic"]


def _entity_keys(ids):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return [EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=c)]) for c in ids]


def test_what_write_online_stores_both_readers_read_back(stores, online_redis, prefix):
    fast, stock = stores
    rows = clip_feature_rows(25, prefix, seed=13)
    result = online_write.write_online(fast, rows)
    assert (result.method, result.written) == ("fast", 25)
    latest = online_write.latest_per_entity(rows)
    assert_both_readers_serve(fast, stock, latest)
    # stored under the layout's keys, one field per feature and the timestamp's
    ids = latest.column("clip_id").to_pylist()
    fields = ViewFields.of(fast.get_feature_view("clip_features"), fast.config)
    with online_redis["client"]() as client:
        for key in redis_layout.string_keys("clip_id", ids, fast.config):
            assert set(client.hkeys(key)) == {*fields.fields, fields.ts_field}


@pytest.fixture
def db3_stores(redis_server, home, monkeypatch, prefix):
    """(fast, stock) on database 3 of the test Redis (`,db=3` in the connection string);
    the test's keys there are removed afterwards."""
    monkeypatch.setenv("CLIPFLOW_REDIS", redis_server["connection_string"] + ",db=3")
    fast = config.feature_store()
    config.apply(fast)
    monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", "1")
    stock = config.feature_store()
    yield fast, stock
    with redis.Redis(host=redis_server["host"], port=redis_server["port"], db=3) as client:
        keys = list(client.scan_iter(match=f"*{prefix}*".encode(), count=1000))
        if keys:
            client.delete(*keys)


def test_the_writer_keeps_the_connection_strings_database(db3_stores, redis_server, prefix):
    fast, stock = db3_stores
    rows = online_write.latest_per_entity(clip_feature_rows(4, prefix, seed=17))
    assert online_write.write_online(fast, rows).written == 4
    assert_both_readers_serve(fast, stock, rows)
    keys = redis_layout.string_keys("clip_id", rows.column("clip_id").to_pylist(), fast.config)
    host, port = redis_server["host"], redis_server["port"]
    with redis.Redis(host=host, port=port, db=3) as db3, redis.Redis(host=host, port=port) as db0:
        assert (db3.exists(*keys), db0.exists(*keys)) == (4, 0)


def test_a_parser_torn_down_mid_read_is_a_dropped_connection(redis_server, monkeypatch):
    """redis-py 7.4's hiredis parser, disconnected by another thread while it reads, fails
    with AttributeError (redis-py issue #4003; CI saw it as a 500 of the API bench): a read
    retries on a new connection, anything else gets a ConnectionError, never AttributeError."""
    pool = redis.ConnectionPool(host=redis_server["host"], port=redis_server["port"], db=9)
    torn = []
    real = pool.get_connection

    def get_connection(*a, **kw):
        conn = real(*a, **kw)
        if not torn:  # the first connection: its parser is torn down as it reads
            parser = conn._parser
            read = parser.read_from_socket

            def racing(*a, **kw):
                parser.read_from_socket = read  # once: the reconnect reads as usual
                parser.on_disconnect()
                return read(*a, **kw)

            parser.read_from_socket = racing
            torn.append(conn)
        return conn

    monkeypatch.setattr(pool, "get_connection", get_connection)
    ping = redis_layout.command(b"PING")
    assert redis_layout.send_packed(pool, ping, 1, retry=True) == [b"PONG"]
    assert len(torn) == 1
    torn.clear()
    with pytest.raises(redis.ConnectionError, match="closed during the read"):
        redis_layout.send_packed(pool, ping, 1, retry=False)
    pool.disconnect()
