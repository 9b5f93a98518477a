"""Fixtures for the Feast repo: a registry applied on a temp home, over SQLite or Redis."""

from __future__ import annotations

import uuid

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


@pytest.fixture
def redis_store(home, monkeypatch, redis_server, prefix):
    """The Feast store of a fresh home on the test Redis, applied; the keys of the test's
    clips are removed afterwards (the Redis may be shared)."""
    import redis

    from feature_repo import config

    monkeypatch.setenv("CLIPFLOW_REDIS", redis_server["connection_string"])
    store = config.feature_store()
    config.apply(store)
    yield store
    with redis.Redis(host=redis_server["host"], port=redis_server["port"]) as client:
        keys = list(client.scan_iter(match=f"*{prefix}*".encode(), count=1000))
        if keys:
            client.delete(*keys)


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
