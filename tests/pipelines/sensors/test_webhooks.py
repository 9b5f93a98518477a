"""Webhook delivery end to end: events on a real Redis stream, the sensors on an ephemeral
Dagster instance, and a real HTTP receiver on loopback that checks every signature the
way the Standard Webhooks spec says (written here, independent of models.integrations.webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from support import free_port

from assets.resources import NotifierResource, WebhooksResource
from models.core.redis_url import redis_client
from models.integrations import events
from models.integrations.events import Event
from models.integrations.outbound import ALLOW_ENV
from models.integrations.webhooks import deliver_due, deliveries, enqueue, load_subscribers
from pipelines.sensors.webhooks import run_failure_event_sensor, webhook_sensor

SECRET_ENV = "CLIPFLOW_TEST_WEBHOOK_SECRET"
SECRET = "whsec_" + base64.b64encode(b"clipflow webhook test key, 32 B").decode()
FAST = {"base_s": 0.01, "cap_s": 0.05, "timeout_s": 2.0}


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch):
    """The receivers listen on loopback, which outbound requests refuse unless allowlisted."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


def spec_check(headers, body: bytes, tolerance_s: int = 300) -> int:
    """Standard Webhooks 1.0, receiver side: 200 if a v1 signature matches, else 400/401."""
    msg_id, stamp, signatures = (
        headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and signatures and stamp.isdigit()):
        return 400
    if abs(time.time() - int(stamp)) > tolerance_s:
        return 401
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    return 200 if any(hmac.compare_digest(s, expected) for s in signatures.split(" ")) else 401


class Receiver:
    """Answers `down_status` to its first `down_for` requests, then checks signatures;
    records every attempt and every accepted body. Not listening until `start()`."""

    def __init__(self, down_for: int = 0, down_status: int = 503, down_headers=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/clipflow"
        self.down_for, self.down_status = down_for, down_status
        self.down_headers = down_headers or {}
        self.attempts: list[tuple[int, str]] = []  # (status answered, webhook-id)
        self.accepted: list[dict] = []
        self._lock = threading.Lock()
        self._server = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver._lock:
                    down = len(receiver.attempts) < receiver.down_for
                    code = receiver.down_status if down else spec_check(self.headers, body)
                    receiver.attempts.append((code, self.headers.get("webhook-id")))
                    if code == 200:
                        receiver.accepted.append(json.loads(body))
                self.send_response(code)
                for k, v in (receiver.down_headers if down else {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def stream(redis_server, home, monkeypatch):
    """The event stream on Redis db 8, flushed; the test secret in the environment."""
    connection = f"{redis_server['connection_string']},db=8"
    client = redis_client(connection)
    client.flushdb()
    monkeypatch.setenv("CLIPFLOW_REDIS", connection)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return client


def subscribe(home, monkeypatch, url: str, types=("*",)) -> None:
    path = home / "hooks" / "subscribers.yaml"
    path.parent.mkdir(exist_ok=True)
    entry = {"name": "receiver", "url": url, "events": list(types), "secret_env": SECRET_ENV}
    path.write_text(json.dumps({"subscribers": [entry]}))  # JSON is YAML
    monkeypatch.setenv("CLIPFLOW_WEBHOOKS", str(path))


def tick(instance, cursor, webhooks: WebhooksResource):
    resources = {"webhooks": webhooks, "notifier": NotifierResource()}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = webhook_sensor(context)
    assert isinstance(result, dg.SkipReason)
    return result.skip_message, context.cursor


def test_retries_until_the_receiver_is_up_then_delivers_each_event_once(
    stream, home, monkeypatch, receivers
):
    rx = receivers(down_for=1)  # not listening at first, then one 503
    subscribe(home, monkeypatch, rx.url, types=("scores_published", "model_promoted"))
    webhooks = WebhooksResource(**FAST)
    instance = dg.DagsterInstance.ephemeral()
    _, cursor = tick(instance, None, webhooks)
    assert json.loads(cursor) == {"after": "0-0"}  # the first tick starts at the end

    ids = [
        events.publish(stream, "scores_published", {"ds": "2026-04-01", "rows": 60}),
        events.publish(stream, "model_promoted", {"version": "3"}, user_id="u1"),
    ]
    skipped = events.publish(stream, "drift_detected", {"ds": "2026-04-01"})  # not wanted
    message, cursor = tick(instance, cursor, webhooks)
    assert json.loads(cursor) == {"after": skipped}
    assert "3 new event(s), 2 queued" in message and "deferred 1" in message
    first, second = deliveries(webhooks.db_path)
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("pending", 1, None)
    assert "ConnectionError" in first["last_error"] and second["attempts"] == 0

    rx.start()
    deadline = time.monotonic() + 10
    while any(r["status"] != "delivered" for r in deliveries(webhooks.db_path)):
        assert time.monotonic() < deadline, deliveries(webhooks.db_path)
        time.sleep(0.02)
        _, cursor = tick(instance, cursor, webhooks)

    assert rx.attempts[0][0] == 503 and len(rx.attempts) == 3
    assert Counter(p["id"] for p in rx.accepted) == {ids[0]: 1, ids[1]: 1}
    promoted = next(p for p in rx.accepted if p["id"] == ids[1])
    assert promoted["type"] == "model_promoted" and promoted["data"] == {"version": "3"}
    assert promoted["user_id"] == "u1" and promoted["timestamp"]
    rows = deliveries(webhooks.db_path)
    assert sum(r["attempts"] for r in rows) == 4  # refused, 503, then one 200 each
    assert {r["last_status_code"] for r in rows} == {200}

    # ticking again, even re-reading the whole stream, sends nothing twice
    attempts = len(rx.attempts)
    tick(instance, cursor, webhooks)
    tick(instance, json.dumps({"after": "0-0"}), webhooks)
    assert len(rx.attempts) == attempts and len(rx.accepted) == 2


def _queue_one(home, monkeypatch, url: str, now: float | None = None):
    subscribe(home, monkeypatch, url)
    subs, errors = load_subscribers(home / "hooks" / "subscribers.yaml")
    assert errors == []
    event = Event("1700000000000-0", "run_failed", {"run_id": "r1"}, None, "2026-04-01T00:00Z")
    db = home / "webhooks.db"
    enqueue(db, [event], subs, now=now or time.time())
    return db, subs


def test_gives_up_after_max_attempts(stream, home, monkeypatch, receivers):
    rx = receivers(down_for=10**6, down_status=500).start()
    db, subs = _queue_one(home, monkeypatch, rx.url)
    policy = WebhooksResource(**FAST, max_attempts=3).policy()
    deadline = time.monotonic() + 10
    while deliveries(db)[0]["status"] == "pending":
        assert time.monotonic() < deadline
        deliver_due(db, subs, time.time(), policy)
        time.sleep(0.02)
    [row] = deliveries(db)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 3, 500)
    assert row["next_attempt_at"] is None and len(rx.attempts) == 3
    deliver_due(db, subs, time.time() + 3600, policy)
    assert len(rx.attempts) == 3  # a failed delivery is never tried again


def test_gone_gives_up_at_once(stream, home, monkeypatch, receivers):
    rx = receivers(down_for=10**6, down_status=410).start()
    db, subs = _queue_one(home, monkeypatch, rx.url)
    assert deliver_due(db, subs, time.time())["failed"] == 1
    assert deliveries(db)[0]["attempts"] == 1


def test_retry_after_is_honoured(stream, home, monkeypatch, receivers):
    rx = receivers(down_for=1, down_status=429, down_headers={"Retry-After": "120"}).start()
    db, subs = _queue_one(home, monkeypatch, rx.url)
    now = time.time()
    assert deliver_due(db, subs, now)["retrying"] == 1
    assert deliveries(db)[0]["next_attempt_at"] >= now + 120
    assert deliver_due(db, subs, now + 60) == dict.fromkeys(
        ("delivered", "retrying", "failed", "deferred"), 0
    )
    assert deliver_due(db, subs, now + 121)["delivered"] == 1  # within the receiver's 5 min


def test_receiver_rejects_a_stale_timestamp(stream, home, monkeypatch, receivers):
    rx = receivers().start()
    stale = time.time() - 600
    db, subs = _queue_one(home, monkeypatch, rx.url, now=stale)
    assert deliver_due(db, subs, stale)["retrying"] == 1
    assert rx.attempts[0][0] == 401 and deliveries(db)[0]["last_status_code"] == 401
    assert deliver_due(db, subs, time.time())["delivered"] == 1  # re-signed, fresh timestamp


def test_redis_down_skips_and_keeps_the_cursor(stream, home, monkeypatch):
    webhooks = WebhooksResource(**FAST)
    instance = dg.DagsterInstance.ephemeral()
    monkeypatch.setenv("CLIPFLOW_REDIS", f"127.0.0.1:{free_port()}")
    cursor = json.dumps({"after": "1700000000000-0"})
    message, after = tick(instance, cursor, webhooks)
    assert "unreachable" in message and after == cursor
    message, after = tick(instance, None, webhooks)  # a first tick does not start either
    assert "unreachable" in message and after is None
    monkeypatch.delenv("CLIPFLOW_REDIS")
    message, after = tick(instance, cursor, webhooks)
    assert "CLIPFLOW_REDIS is unset" in message and after == cursor


def test_history_before_the_first_tick_is_not_replayed(stream, home, monkeypatch, receivers):
    rx = receivers().start()
    subscribe(home, monkeypatch, rx.url)
    old = events.publish(stream, "drift_detected", {"ds": "2026-03-31"})
    webhooks, instance = WebhooksResource(**FAST), dg.DagsterInstance.ephemeral()
    _, cursor = tick(instance, None, webhooks)
    assert json.loads(cursor) == {"after": old}
    new = events.publish(stream, "drift_detected", {"ds": "2026-04-01"})
    tick(instance, cursor, webhooks)
    assert [p["id"] for p in rx.accepted] == [new]


SECRET_TEXT = "redis://:hunter2@10.1.2.3:6379 /srv/clipflow/home"  # must never leave the run


@dg.op
def load_features():
    raise RuntimeError(f"feature table clip_features is missing at {SECRET_TEXT}")


@dg.job(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def doomed_job():
    load_features()


def test_a_failed_run_becomes_a_delivered_run_failed_event(stream, home, monkeypatch, receivers):
    rx = receivers().start()
    subscribe(home, monkeypatch, rx.url, types=("run_failed",))
    webhooks = WebhooksResource(**FAST)
    instance = dg.DagsterInstance.ephemeral()
    result = doomed_job.execute_in_process(
        instance=instance, raise_on_error=False, partition_key="2026-04-01"
    )
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_event_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"webhooks": webhooks},
    )
    run_failure_event_sensor(context)

    [event] = events.read(stream)
    assert event.type == "run_failed"
    assert event.data["job_name"] == "doomed_job" and event.data["run_id"] == result.run_id
    assert event.data["partition"] == "2026-04-01"
    assert event.data["failed_steps"] == ["load_features"]
    assert event.data["error_classes"] == {"load_features": "RuntimeError"}
    # scrubbed: the error text (a connection string, a path) stays in the Dagster run
    assert set(event.data) == {"job_name", "run_id", "partition", "failed_steps", "error_classes"}
    for leak in ("hunter2", "10.1.2.3", "/srv/clipflow", "clip_features is missing"):
        assert leak not in json.dumps(event.as_dict())

    tick(instance, json.dumps({"after": "0-0"}), webhooks)
    [delivered] = rx.accepted
    assert (delivered["id"], delivered["type"]) == (event.id, "run_failed")
    assert delivered["data"] == event.data
