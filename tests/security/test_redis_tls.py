"""Redis over TLS end to end, against a real `redis-server` that speaks only TLS
(tests/security/tls_support.py): Feast's online writes and reads, event publishing, the live
hub, the webhook sensor's stream and the API's health check; and the refusals: a client
without the CA, a plaintext client, TLS never downgraded, a client certificate of another CA.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from security.tls_support import PASSWORD, tls_redis_server
from support import clip_feature_rows, free_port

from models.core.names import FEATURE_SERVICE
from models.core.redis_url import async_redis_client, parse, redis_client
from models.integrations import events

ONE_TRY = {"socket_timeout": 2, "socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0)}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    with tls_redis_server(tmp_path_factory.mktemp("tls")) as server:
        yield server


@pytest.fixture(autouse=True)
def no_extra_trust(monkeypatch):
    """Only the connection string may add a CA: none from OpenSSL's environment."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def _refused(conn: str) -> str:
    """The error of a PING through `conn` (which must fail)."""
    refused = (redis.ConnectionError, redis.TimeoutError)  # a TLS handshake that hangs: timeout
    with pytest.raises(refused) as e, redis_client(conn, **ONE_TRY) as client:
        client.ping()
    return str(e.value)


# -- the pipeline's online writes and Feast's reads -------------------------------------------


def test_feast_writes_and_reads_features_over_tls(tls, home, monkeypatch):
    from feature_repo import config
    from feature_repo.feature_views import CLIP_FEATURE_NAMES
    from feature_repo.online_write import latest_per_entity, write_online

    monkeypatch.setenv("CLIPFLOW_REDIS", tls.url(db=2))
    store = config.feature_store()
    config.apply(store)
    rows = latest_per_entity(clip_feature_rows(5, "tls"))
    result = write_online(store, rows)
    assert (result.method, result.written) == ("fast", 5)

    written = rows.select(["clip_id", *CLIP_FEATURE_NAMES]).to_pydict()
    entity_rows = [{"clip_id": c} for c in written["clip_id"]]
    service = store.get_feature_service(FEATURE_SERVICE)
    assert store.get_online_features(features=service, entity_rows=entity_rows).to_dict() == written
    read_async = store.get_online_features_async(features=service, entity_rows=entity_rows)
    assert asyncio.run(read_async).to_dict() == written

    # Feast's stock store, on the same target rendered in Feast's form
    monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", "1")
    stock = config.feature_store()
    assert stock.config.online_store.type == "redis"
    assert "ssl=true" in stock.config.online_store.connection_string
    assert stock.get_online_features(features=service, entity_rows=entity_rows).to_dict() == written

    # the keys are where the string says: database 2 of the TLS server
    with redis_client(tls.url(db=2)) as db2, redis_client(tls.url(db=0)) as db0:
        assert (db2.dbsize() >= 5, db0.dbsize()) == (True, 0)


def test_feasts_parser_reads_the_rendered_string_as_clipflow_does(tls):
    from feast.infra.online_stores.redis import RedisOnlineStore

    target = parse(tls.url(db=3, ssl_certfile=str(tls.pki.client_cert),
                           ssl_keyfile=str(tls.pki.client_key)))  # fmt: skip
    nodes, kwargs = RedisOnlineStore._parse_connection_string(target.feast_string())
    assert nodes == [{"host": tls.host, "port": str(tls.port)}]
    want = target.kwargs()
    assert kwargs | {"host": want["host"], "port": want["port"], "username": None} == want


def test_a_bad_connection_string_fails_the_feast_config_naming_the_option(home, monkeypatch):
    from feature_repo import config

    monkeypatch.setenv("CLIPFLOW_REDIS", f"127.0.0.1:6379,password={PASSWORD},ssl=ture")
    with pytest.raises(ValueError, match="ssl must be true or false") as e:
        config.repo_config()
    assert PASSWORD not in str(e.value)
    monkeypatch.setenv("CLIPFLOW_REDIS", "rediss://127.0.0.1:6379")
    monkeypatch.setenv("CLIPFLOW_FEAST_STOCK_READ", "1")
    with pytest.raises(ValueError, match="host:port,name=value form"):
        config.write_feature_store_yaml()


# -- events: published by the pipeline, read by the live hub and the webhook sensor ---------


def test_events_published_over_tls_reach_the_live_hub(tls, home, monkeypatch):
    from assets.resources import EventsResource
    from pipelines.serve import live

    url = tls.feast_form(db=1)  # the other form, end to end
    monkeypatch.setenv("CLIPFLOW_REDIS", url)
    first = EventsResource().publish("scores_published", {"rows": 1})
    assert first is not None, "EventsResource could not publish over TLS"
    with redis_client(url) as client:
        second = events.publish(client, "model_promoted", {"version": "2"})

    async def watch() -> tuple[events.Event, events.Event, list[str]]:
        stream = live.events(url, first, 0.2, lambda e: True)  # None: a heartbeat
        replayed = await anext(stream)  # after `first`, read by the hub's TLS client
        published: list[str] = []
        with redis_client(url) as client:
            for i in range(50):  # the hub may start reading after a publish: publish again
                published.append(events.publish(client, "drift_detected", {"try": i}))
                arrived = await anext(stream)
                if arrived is not None:
                    break
        await stream.aclose()
        hub = live.hub_for(url)
        hub.task.cancel()
        await asyncio.gather(hub.task, return_exceptions=True)
        await hub.redis.aclose()
        return replayed, arrived, published

    replayed, arrived, published = asyncio.run(watch())
    assert (replayed.id, replayed.type, replayed.data) == (
        second,
        "model_promoted",
        {"version": "2"},
    )
    assert arrived is not None and arrived.id in published
    assert (arrived.type, arrived.data) == ("drift_detected", {"try": published.index(arrived.id)})

    # the webhook sensor's stream: the resource's client reads the same events over TLS
    from assets.resources import WebhooksResource

    stream = WebhooksResource().event_stream()
    assert [e.id for e in events.read(stream, after=first, count=10)][:1] == [second]
    stream.close()


# -- the API --------------------------------------------------------------------------------


class _Scorer:
    """Enough of `models.serving.scorer.Scorer` for /healthz: a champion that loads."""

    def model(self, alias: str):
        return object()

    def versions(self) -> dict[str, str]:
        return {}

    def registry_status(self) -> str:
        return "ok"


def _healthz(redis_url: str) -> httpx.Response:
    import uvicorn

    from pipelines.serve.app import create_app

    app = create_app(scorer=_Scorer(), redis_url=redis_url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_api_health_check_reaches_redis_over_tls(tls, home):
    ok = _healthz(tls.url())
    assert (ok.status_code, ok.json()["redis"]) == (200, "ok")
    no_ca = _healthz(tls.url(ca=False))
    assert (no_ca.status_code, no_ca.json()["redis"]) == (503, "down")
    assert PASSWORD not in no_ca.text


# -- refusals -------------------------------------------------------------------------------


def test_a_client_without_the_ca_is_refused(tls):
    for conn in (tls.url(ca=False), f"{tls.host}:{tls.port},ssl=true,password={PASSWORD}"):
        assert "certificate verify failed" in _refused(conn)

    async def ping() -> None:
        async with async_redis_client(tls.url(ca=False), socket_timeout=2) as client:
            await client.ping()

    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        asyncio.run(ping())


def test_a_plaintext_client_to_the_tls_port_fails(tls):
    _refused(f"{tls.host}:{tls.port},password={PASSWORD}")
    _refused(f"redis://:x@{tls.host}:{tls.port}/0")


def test_tls_is_never_downgraded_to_plaintext(redis_server, tls):
    """`rediss://` to a server without TLS fails; it does not talk plaintext instead."""
    plain = f"rediss://{redis_server['host']}:{redis_server['port']}/0?ssl_ca_certs={tls.pki.ca}"
    _refused(plain)


def test_a_client_certificate_reaches_the_server(tls):
    mine = tls.url(ssl_certfile=str(tls.pki.client_cert), ssl_keyfile=str(tls.pki.client_key))
    with redis_client(mine) as client:
        assert client.ping()
    before = tls.log.stat().st_size
    _refused(tls.url(ssl_certfile=str(tls.pki.rogue_cert), ssl_keyfile=str(tls.pki.rogue_key)))
    deadline = time.monotonic() + 5
    while "certificate verify failed" not in tls.log.read_text()[before:]:
        assert time.monotonic() < deadline, "the server did not log the refused certificate"
        time.sleep(0.05)
