"""The scoring API tried as an attacker on the same network would, against a real
`clipflow serve` process (tests/security/api_support.py): missing, invalid, revoked and
under-scoped keys, rate limits, another user's event token, hostile `Origin`s, oversized
and slow bodies; each gets a clear 4xx, nothing leaks, and the API keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import sqlite3
import time

import httpx
import pytest
from security.api_support import ALLOWED_ORIGIN, DB, PEPPER, TOKEN_SECRET, start_api, stop_api

from models.integrations import events
from models.serving.api_keys import mint_token
from pipelines.serve.security import BODY_TIMEOUT_S, MAX_BODY_BYTES

pytestmark = pytest.mark.slow
PROTECTED = [
    ("GET", "/v1/clips/{clip}/score", None),
    ("POST", "/v1/score", {"clip_ids": ["x"]}),
    ("GET", "/metrics", None),
    ("POST", "/v1/event-tokens", {"user_id": "u1"}),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, redis_server):
    from models.core.redis_url import redis_client

    conn = f"{redis_server['connection_string']},db={DB}"
    redis_client(conn).flushdb()
    api = start_api(tmp_path_factory.mktemp("sec"), conn)
    api.redis = redis_client(conn)
    yield api
    stop_api(api)


def call(api, method: str, path: str, body=None, headers=None) -> httpx.Response:
    url = api.base + path.format(clip=api.ids[0])
    return httpx.request(method, url, json=body, headers=headers or {}, timeout=10)


def test_every_endpoint_but_healthz_needs_a_valid_key(api):
    admin = api.key("admin", "admin", "--rate", "0")
    wrong_secret = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
    for method, path, body in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer nonsense"}, api.auth(wrong_secret),
                        {"Authorization": f"Basic {admin}"}):  # fmt: skip
            r = call(api, method, path, body, headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and "detail" in r.json()
        ok = call(api, method, path, body, api.auth(admin))
        assert ok.status_code == 200, (path, ok.text)
    health = httpx.get(f"{api.base}/healthz", timeout=10)  # open, and says nothing more
    assert health.status_code == 200
    assert health.json() == {"ok": True, "redis": "ok", "registry": "ok"}


def test_a_key_made_under_another_pepper_is_refused(api):
    from models.serving.api_keys import create

    # the same database, a key hashed with another pepper (e.g. a stolen db, keys forged)
    path = api.home / "api_keys.db"
    forged, _ = create(path, "forged", ("admin",), rate_per_s=0)  # env pepper: not PEPPER
    assert call(api, "GET", "/v1/clips/{clip}/score", None, api.auth(forged)).status_code == 401


def test_only_hashes_are_stored_and_list_shows_no_secret(api):
    key = api.key("scorer", "score", "--rate", "0")
    raw = (api.home / "api_keys.db").read_bytes()
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw
    with sqlite3.connect(api.home / "api_keys.db") as conn:
        [(stored,)] = conn.execute(
            "SELECT digest FROM api_keys WHERE key_id = ?", (key.split("_")[1],)
        ).fetchall()
    assert stored == hmac.new(PEPPER.encode(), key.encode(), hashlib.sha256).hexdigest()
    listed = [json.loads(line) for line in api.cli("list").stdout.splitlines()]
    assert {"scorer"} <= {k["name"] for k in listed}
    assert all("digest" not in k for k in listed) and listed
    assert key.split("_", 2)[2] not in api.cli("list").stdout


def test_a_revoked_key_stops_working_within_seconds(api):
    key = api.key("to-revoke", "score", "--rate", "0")
    path = "/v1/clips/{clip}/score"
    assert call(api, "GET", path, None, api.auth(key)).status_code == 200
    api.cli("revoke", key.split("_")[1])
    deadline = time.monotonic() + 5
    while call(api, "GET", path, None, api.auth(key)).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still works after 5 s"
        time.sleep(0.2)
    assert call(api, "GET", path, None, api.auth(key)).status_code == 401
    again = api.cli("revoke", key.split("_")[1], check=False)
    assert again.returncode == 1 and "no active key" in again.stderr
    bad = api.cli("revoke", "x'; DROP TABLE api_keys; --", check=False)
    assert bad.returncode == 2 and "key_id" in bad.stderr
    assert api.cli("list").stdout.count('"to-revoke"') == 1  # the table is still there


def test_a_key_without_the_scope_gets_403(api):
    events_only = api.key("events-only", "events", "--rate", "0")
    scorer = api.key("scorer", "score", "--rate", "0")
    for method, path, body in PROTECTED:
        r = call(api, method, path, body, api.auth(events_only))
        assert r.status_code == 403 and "scope" in r.json()["detail"], path
    assert call(api, "GET", "/metrics", None, api.auth(scorer)).status_code == 403
    r = call(api, "POST", "/v1/event-tokens", {"user_id": "u1"}, api.auth(scorer))
    assert r.status_code == 403


def test_rate_limit_answers_429_with_retry_after_past_the_burst(api):
    key = api.key("limited", "score", "--rate", "0.5", "--burst", "3")
    codes = [call(api, "GET", "/v1/clips/{clip}/score", None, api.auth(key)) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]  # the burst, then no more
    assert codes[3].headers["retry-after"] == "2"  # 1 token at 0.5/s: up to 2 s away
    other = api.key("scorer", "score", "--rate", "0")  # other keys are not slowed
    assert call(api, "GET", "/v1/clips/{clip}/score", None, api.auth(other)).status_code == 200


def _raw(api, head: bytes, body_chunks=(), pause_s: float = 0.0, read_s: float = 30) -> bytes:
    with socket.create_connection(("127.0.0.1", api.port), timeout=read_s) as s:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:  # the server answered and closed: stop sending
                break
            time.sleep(pause_s)
        out = b""
        while b"\r\n\r\n" not in out:
            got = s.recv(65536)
            if not got:
                break
            out += got
        return out


def test_oversized_bodies_are_refused_before_parsing(api):
    key = api.key("scorer", "score", "--rate", "0")
    auth = f"Authorization: Bearer {key}\r\n".encode()
    head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
    # a Content-Length over the cap: 413 at once, the body is never read
    said = _raw(api, head + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
    assert said.startswith(b"HTTP/1.1 413")
    # chunked, no length: counted as it arrives
    chunk = b"a" * 65536
    chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 5 + [b"0\r\n\r\n"]
    said = _raw(api, head + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert said.startswith(b"HTTP/1.1 413")
    # exactly at the cap is read and parsed: a valid batch padded with spaces
    doc = json.dumps({"clip_ids": api.ids})
    at_cap = doc + " " * (MAX_BODY_BYTES - len(doc))
    r = httpx.post(f"{api.base}/v1/score", content=at_cap, timeout=10,
                   headers={**api.auth(key), "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200 and len(r.json()["scores"]) == len(api.ids)
    r = httpx.post(f"{api.base}/v1/score", content=at_cap + " ", timeout=10,
                   headers={**api.auth(key), "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413


def test_a_slow_body_is_cut_off_and_others_are_served_meanwhile(api):
    key = api.key("scorer", "score", "--rate", "0")
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    result: dict = {}

    def drip():
        t0 = time.monotonic()
        result["said"] = _raw(api, head, [b" "] * 40, pause_s=0.5)
        result["s"] = time.monotonic() - t0

    import threading

    t = threading.Thread(target=drip)
    t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    ok = call(api, "GET", "/v1/clips/{clip}/score", None, api.auth(key))
    assert ok.status_code == 200 and time.monotonic() - t0 < 5  # not blocked by the drip
    t.join(60)
    assert result["said"].startswith(b"HTTP/1.1 408"), result["said"][:200]
    assert BODY_TIMEOUT_S - 1 < result["s"] < BODY_TIMEOUT_S + 5


async def _sse_status(api, headers: dict, params: dict | None = None) -> int:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{api.base}/v1/events", headers=headers, params=params) as r,
    ):
        return r.status_code


def test_sse_checks_key_scope_origin_and_token(api):
    ev = api.auth(api.key("events", "events", "--rate", "0"))
    scorer = api.auth(api.key("scorer", "score", "--rate", "0"))
    evil = {"Origin": "https://evil.example"}
    token, _ = mint_token("u1", 60, secret=TOKEN_SECRET)
    assert asyncio.run(_sse_status(api, {})) == 401
    assert asyncio.run(_sse_status(api, scorer)) == 403
    assert asyncio.run(_sse_status(api, {**ev, **evil})) == 403
    assert asyncio.run(_sse_status(api, evil, {"token": token})) == 403
    assert asyncio.run(_sse_status(api, {**ev, "Origin": ALLOWED_ORIGIN})) == 200
    assert asyncio.run(_sse_status(api, ev)) == 200  # no Origin: not a browser
    assert asyncio.run(_sse_status(api, {"Origin": ALLOWED_ORIGIN}, {"token": token})) == 200
    assert asyncio.run(_sse_status(api, {}, {"token": token + "x"})) == 401


def _ws_refusal(api, query: str, headers: dict) -> int | None:
    import websockets

    async def go():
        url = f"ws://127.0.0.1:{api.port}/v1/ws{query}"
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10):
                return None
        except websockets.InvalidStatus as e:
            return e.response.status_code

    return asyncio.run(go())


def test_websocket_needs_credentials_an_allowed_origin_and_the_users_own_token(api):
    ev = api.auth(api.key("events", "events", "--rate", "0"))
    u1, _ = mint_token("u1", 60, secret=TOKEN_SECRET)
    expired, _ = mint_token("u1", 60, secret=TOKEN_SECRET, now=time.time() - 120)
    forged, _ = mint_token("u1", 60, secret="not-the-server-secret")
    assert _ws_refusal(api, "", {}) == 401
    assert _ws_refusal(api, "?user_id=u1", {}) == 403  # a bare user_id proves nothing
    assert _ws_refusal(api, f"?token={u1}&user_id=u2", {}) == 403  # another user's events
    assert _ws_refusal(api, f"?token={expired}", {}) == 401
    assert _ws_refusal(api, f"?token={forged}", {}) == 401
    assert _ws_refusal(api, f"?token={u1}", {"Origin": "https://evil.example"}) == 403
    assert _ws_refusal(api, "", {**ev, "Origin": "null"}) == 403
    assert _ws_refusal(api, f"?token={u1}", {"Origin": ALLOWED_ORIGIN}) is None
    assert _ws_refusal(api, "", ev) is None


def test_a_users_token_sees_only_that_users_events(api):
    import websockets

    token = call(api, "POST", "/v1/event-tokens", {"user_id": "u1", "ttl_s": 60},
                 api.auth(api.key("admin", "admin", "--rate", "0"))).json()["token"]  # fmt: skip

    async def go():
        url = f"ws://127.0.0.1:{api.port}/v1/ws?token={token}"
        headers = {"Origin": ALLOWED_ORIGIN}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await asyncio.sleep(0.5)
            events.publish(api.redis, "drift_detected", {"n": 1}, user_id="u2")
            events.publish(api.redis, "run_failed", {"n": 2})  # broadcast: needs a key
            events.publish(api.redis, "drift_detected", {"n": 3}, user_id="u1")
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] != "heartbeat":
                    return msg

    msg = asyncio.run(go())
    assert msg["data"] == {"n": 3} and msg["user_id"] == "u1"


def test_keys_never_reach_logs_metrics_or_openapi_and_the_api_keeps_working(api):
    admin = api.key("admin", "admin", "--rate", "0")
    metrics = call(api, "GET", "/metrics", None, api.auth(admin)).text
    schema = httpx.get(f"{api.base}/openapi.json", timeout=10).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    secured = {p for p, ops in schema["paths"].items() for op in ops.values() if op.get("security")}
    assert {"/v1/clips/{clip_id}/score", "/v1/score", "/metrics", "/v1/event-tokens"} <= secured
    assert "/healthz" not in secured
    log = api.log.read_text()
    for key in api.keys.values():
        assert key and key not in metrics and key not in log and key.split("_", 2)[2] not in log
    assert call(api, "GET", "/v1/clips/{clip}/score", None, api.auth(admin)).status_code == 200
