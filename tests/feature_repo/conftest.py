"""Fixtures for the Feast repo: a registry applied on a temp home, over SQLite or Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture
def prefix():
    """A clip_id prefix of its own, so tests sharing a Redis never see each other's keys."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def sqlite_store(home, monkeypatch):
    """The Feast store of a fresh home with the embedded SQLite online store, applied."""
    from feature_repo import config

    monkeypatch.delenv("CLIPFLOW_REDIS", raising=False)
    store = config.feature_store()
    config.apply(store)
    return store


# the files whose tests also run on the Redis Cluster: the writer, the reader, the layout
# (the rest, views, the asset, the write properties, use the same writer and reader and run
# on one Redis only: their cluster twins added a minute to `make test` for no new path)
ON_CLUSTER = {"test_online.py", "test_fast_read.py", "test_online_rerun.py",
              "test_redis_layout.py"}  # fmt: skip


def pytest_collection_modifyitems(config, items) -> None:
    """A test of this folder parametrized by store runs its `redis_cluster` twin only in the
    ON_CLUSTER files, and only when it is not taking the SQLite store."""
    here = Path(__file__).parent
    drop = [
        item for item in items
        if item.path.parent == here and hasattr(item, "callspec")
        and item.callspec.params.get("online_redis") == "redis_cluster"
        and (item.path.name not in ON_CLUSTER
             or any("sqlite" in str(v) or v == "online-stock"
                    for k, v in item.callspec.params.items() if k != "online_redis"))
    ]  # fmt: skip
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


@pytest.fixture(params=["redis", "redis_cluster"])
def online_redis(request):
    """The online store's Redis, each test run twice: on one Redis server and on a 3-node
    Redis Cluster (`redis-cluster://...`). A dict: `connection_string`, `cluster`, and
    `client(**kwargs)`, a redis-py client of it (`RedisCluster` on the cluster)."""
    return request.getfixturevalue("redis_cluster" if request.param == "redis_cluster"
                                   else "redis_server")  # fmt: skip


@pytest.fixture
def redis_store(home, monkeypatch, online_redis, prefix):
    """The Feast store of a fresh home on the test Redis (one server, then a cluster),
    applied; the keys of the test's clips are removed afterwards (the Redis may be
    shared)."""
    from feature_repo import config

    monkeypatch.setenv("CLIPFLOW_REDIS", online_redis["connection_string"])
    store = config.feature_store()
    config.apply(store)
    assert (store.config.online_store.redis_type == "redis_cluster") == online_redis["cluster"]
    yield store
    with online_redis["client"]() as client:
        keys = list(client.scan_iter(match=f"*{prefix}*".encode(), count=1000))
        for key in keys:  # one by one: a cluster's keys are in many slots
            client.delete(key)


@pytest.fixture
def stores(redis_store, monkeypatch):
    """(fast, stock): the configured store (FastRedisOnlineStore) and a Feast stock
    RedisOnlineStore twin on the same registry and Redis."""
    from feature_repo import config

    monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", "1")
    stock = config.feature_store()
    monkeypatch.delenv("CLIPFLOW_FEAST_STOCK_READ")
    assert stock.config.online_store.type == "redis"
    return redis_store, stock
