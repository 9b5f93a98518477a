"""The outbound guard against real HTTP servers on loopback: webhook deliveries refused at
send time (literal addresses, a name re-resolving to loopback after the check), the
allowlist by CIDR and by host:port, redirects not followed, oversized and slow-drip
responses cut off, and the metadata client's Bearer key never leaving its host."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_metadata_api import FakeMetadataApi

from models.integrations.events import Event
from models.integrations.metadata_api import MetadataClient
from models.integrations.outbound import ALLOW_ENV, DeadlineExceeded, ResponseTooLarge
from models.integrations.outbound_http import guarded_session
from models.integrations.webhooks import RetryPolicy, Subscriber, deliver_due, deliveries, enqueue

SECRET_ENV = "CLIPFLOW_TEST_OUTBOUND_SECRET"
HINT = f"; allowlist it in {ALLOW_ENV} to allow"
CHUNK = b"x" * 65536


class Server:
    """A loopback HTTP server; `answer(handler)` writes each response (default: 200 "ok").
    `seen` holds (method, path, Authorization) of every request that arrived."""

    def __init__(self, answer=None):
        self.answer = answer or ok
        self.seen: list[tuple[str, str, str | None]] = []
        self.stop_event = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.seen.append((self.command, self.path, self.headers.get("authorization")))
                server.answer(self)

            do_GET = do_POST = _any  # noqa: N815 (http.server's naming)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda *a: None  # a client that hung up: expected here
        self._httpd.stop_event = self.stop_event  # wakes a dripping handler at close
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.stop_event.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def ok(h, status=200):
    h.send_response(status)
    h.send_header("content-length", "2")
    h.end_headers()
    h.wfile.write(b"ok")


def redirect(location):
    def answer(h):
        h.send_response(302)
        h.send_header("location", location)
        h.send_header("content-length", "0")
        h.end_headers()

    return answer


def endless(h):  # 200 and a body that never ends (64 MiB, unless the client hangs up)
    h.send_response(200)
    h.send_header("connection", "close")
    h.end_headers()
    for _ in range(1024):
        h.wfile.write(CHUNK)


def drip(h):  # headers, then one byte every 50 ms for up to 20 s
    h.send_response(200)
    h.send_header("content-length", "400")
    h.end_headers()
    for _ in range(400):
        h.wfile.write(b"x")
        h.wfile.flush()
        if h.server.stop_event.wait(0.05):
            return


@pytest.fixture
def servers():
    made: list[Server] = []

    def make(answer=None) -> Server:
        made.append(Server(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "whsec_dGVzdCBrZXk=")
    monkeypatch.delenv(ALLOW_ENV, raising=False)


def deliver(tmp_path, urls: dict[str, str], timeout_s: float = 2.0) -> dict[str, dict]:
    """One event delivered once to a subscriber per url (built directly: no load-time
    check); the delivery rows by subscriber."""
    subs = [Subscriber(name, url, ("*",), SECRET_ENV) for name, url in urls.items()]
    db = tmp_path / "webhooks.db"
    event = Event("1-0", "run_failed", {"job_name": "j"}, None, "2026-04-01T00:00:00+00:00")
    assert enqueue(db, [event], subs, now=time.time()) == len(subs)
    deliver_due(db, subs, time.time(), RetryPolicy(timeout_s=timeout_s))
    return {r["subscriber"]: r for r in deliveries(db)}


FORBIDDEN_URLS = {  # url -> the refusal, as the delivery records it
    "http://127.0.0.1:{port}/hook": "127.0.0.1 is loopback (127.0.0.0/8)",
    "http://[::ffff:127.0.0.1]:{port}/hook": "::ffff:127.0.0.1 is loopback (127.0.0.0/8), IPv4-mapped",
    "http://localhost:{port}/hook": "localhost resolves to 127.0.0.1, which is loopback (127.0.0.0/8)",
    "http://2130706433:{port}/": "2130706433 resolves to 127.0.0.1, which is loopback (127.0.0.0/8)",
    "http://[::1]:{port}/": "::1 is loopback (::1/128)",
    "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a cloud metadata endpoint (169.254.169.254/32)",
    "http://[fd00:ec2::254]/": "fd00:ec2::254 is a cloud metadata endpoint (fd00:ec2::254/128)",
    "http://10.0.0.1/": "10.0.0.1 is private (10.0.0.0/8)",
    "http://172.16.0.1/": "172.16.0.1 is private (172.16.0.0/12)",
    "http://192.168.0.1/": "192.168.0.1 is private (192.168.0.0/16)",
    "http://100.64.0.1/": "100.64.0.1 is CGNAT shared address space (100.64.0.0/10)",
    "http://0.0.0.0:{port}/": "0.0.0.0 is unspecified (0.0.0.0/8)",
    "http://224.0.0.1/": "224.0.0.1 is multicast (224.0.0.0/4)",
    "http://[fe80::1]/": "fe80::1 is link-local (fe80::/10)",
    "http://[fc00::1]/": "fc00::1 is unique-local private (fc00::/7)",
}


def test_forbidden_urls_are_not_sent_and_the_delivery_says_why(tmp_path, servers):
    rx = servers()  # listening on loopback: a refused delivery must not reach it
    urls = {f"s{i}": u.format(port=rx.port) for i, u in enumerate(FORBIDDEN_URLS)}
    rows = deliver(tmp_path, urls)
    assert len(rows) == len(FORBIDDEN_URLS) > 10
    for name, reason in zip(urls, FORBIDDEN_URLS.values(), strict=True):
        row = rows[name]
        assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, None)
        assert row["last_error"] == f"OutboundRefused: webhook url: {reason}{HINT}"
    assert rx.seen == []


def test_an_allowlisted_loopback_receiver_gets_the_delivery(tmp_path, servers, monkeypatch):
    rx = servers()
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    rows = deliver(tmp_path, {"rx": rx.url + "/hook"})
    assert (rows["rx"]["status"], rows["rx"]["last_status_code"]) == ("delivered", 200)
    assert [(m, p) for m, p, _ in rx.seen] == [("POST", "/hook")]


def test_allowlist_by_cidr_and_by_host_and_port(tmp_path, servers, monkeypatch):
    a, b = servers(), servers()
    urls = {"a": a.url + "/a", "b": b.url + "/b", "a-by-name": f"http://localhost:{a.port}/n"}
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.0/8")
    rows = deliver(tmp_path / "cidr", urls)
    assert {n: r["status"] for n, r in rows.items()} == dict.fromkeys(urls, "delivered")
    assert (len(a.seen), len(b.seen)) == (2, 1)

    monkeypatch.setenv(ALLOW_ENV, f"127.0.0.1:{a.port}")  # a's port only, by its IP
    rows = deliver(tmp_path / "port", urls)
    assert rows["a"]["status"] == "delivered"
    assert (
        rows["b"]["last_error"]
        == f"OutboundRefused: webhook url: 127.0.0.1 is loopback (127.0.0.0/8){HINT}"
    )
    assert "localhost resolves to 127.0.0.1" in rows["a-by-name"]["last_error"]  # not its name
    assert (len(a.seen), len(b.seen)) == (3, 1)

    monkeypatch.setenv(ALLOW_ENV, f"localhost:{a.port}")  # by name and port
    rows = deliver(tmp_path / "name", urls)
    assert rows["a-by-name"]["status"] == "delivered"
    assert rows["a"]["status"] == rows["b"]["status"] == "pending"
    assert (len(a.seen), len(b.seen)) == (4, 1)


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_on_the_connected_peer(
    tmp_path, servers, monkeypatch
):
    """DNS rebinding: the check sees a public address, the connect gets 127.0.0.1."""
    rx = servers()
    real, answers = socket.getaddrinfo, iter(["93.184.215.14"])

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            return real(next(answers, "127.0.0.1"), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    rows = deliver(tmp_path, {"rebind": f"http://rebind.test:{rx.port}/hook"})
    assert rows["rebind"]["last_error"] == (
        "OutboundRefused: webhook url: rebind.test resolves to 127.0.0.1, which is loopback"
        f" (127.0.0.0/8){HINT}"
    )
    assert next(answers, None) is None  # the check did see the public address first
    assert rx.seen == []  # connected, refused before a byte was sent


def test_a_redirect_is_not_followed_and_names_its_target(tmp_path, servers, monkeypatch):
    target = servers()
    hop = servers(redirect(f"{target.url}/stolen"))
    monkeypatch.setenv(ALLOW_ENV, f"127.0.0.1:{hop.port}")
    row = deliver(tmp_path, {"hop": hop.url + "/hook"})["hop"]
    assert (row["status"], row["last_status_code"]) == ("pending", 302)
    assert row["last_error"] == f"HTTP 302 Found: redirect to 127.0.0.1:{target.port} not followed"
    assert len(hop.seen) == 1 and target.seen == []
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")  # even to an allowed host: never followed
    assert deliver(tmp_path / "again", {"hop": hop.url})["hop"]["last_status_code"] == 302
    assert target.seen == []


def test_an_endless_response_is_cut_off_with_memory_bounded(tmp_path, servers, monkeypatch):
    big = servers(endless)
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    tracemalloc.start()
    started = time.monotonic()
    try:
        row = deliver(tmp_path, {"big": big.url})["big"]  # only the status matters
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (row["status"], row["last_status_code"]) == ("delivered", 200)
    assert peak < 4 * 2**20 and time.monotonic() - started < 5  # 64 MiB were on offer

    session = guarded_session("test url", max_bytes=2**20, deadline_s=10)
    with pytest.raises(ResponseTooLarge) as too_large:
        session.get(big.url, timeout=2)
    assert str(too_large.value) == (
        "test url: the response of 127.0.0.1 is over 1048576 bytes; stopped reading"
    )


def test_a_slow_drip_is_bounded_by_the_deadline(tmp_path, servers, monkeypatch):
    slow = servers(drip)
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    started = time.monotonic()
    row = deliver(tmp_path, {"slow": slow.url}, timeout_s=0.5)["slow"]  # each byte in time
    elapsed = time.monotonic() - started
    assert row["last_error"] == (
        "DeadlineExceeded: webhook url: 127.0.0.1 did not answer within the 1 s deadline"
    )
    assert 0.9 < elapsed < 3 and row["status"] == "pending"

    session = guarded_session("test url", max_bytes=2**20, deadline_s=0.3)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        session.get(slow.url, timeout=5)
    assert time.monotonic() - started < 1.0


def test_the_bearer_key_goes_only_to_the_configured_host(servers, monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")  # both allowed: the redirect is still refused
    with FakeMetadataApi() as elsewhere, FakeMetadataApi(redirect_to=elsewhere.url) as api:
        client = MetadataClient(base_url=api.url, api_key="s3cret", log=lambda m: None)
        rows, failures = client.fetch(["v1", "v2"])
        health = client.health()
    port = elsewhere.url.rsplit(":", 1)[1]
    assert rows == [] and set(failures) == {"v1", "v2"}
    assert failures["v1"] == f"HTTP 302: moved; redirect to 127.0.0.1:{port} not followed"
    assert health == failures["v1"]
    assert elsewhere.requests == []  # nothing at all, let alone the key
    assert [r.authorization for r in api.requests] == ["Bearer s3cret"] * 2  # not retried

    monkeypatch.delenv(ALLOW_ENV)
    with FakeMetadataApi() as api:
        client = MetadataClient(base_url=api.url, api_key="s3cret", log=lambda m: None)
        health = client.health()
    assert health == f"video metadata API url: 127.0.0.1 is loopback (127.0.0.0/8){HINT}"
    assert api.requests == []


def test_an_oversized_metadata_answer_fails_the_batch(servers, monkeypatch):
    big = servers(endless)
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    client = MetadataClient(base_url=big.url, log=lambda m: None, max_retries=2)
    rows, failures = client.fetch(["v1"])
    assert rows == [] and failures == {
        "v1": "video metadata API url: the response of 127.0.0.1 is over 1048576 bytes;"
        " stopped reading"
    }
    assert len(big.seen) == 1  # not retried: the answer would be as large again
