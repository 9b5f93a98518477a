"""Events are never lost (#16, case 3): the outbox keeps what is published while Redis is
down and relays it once, in order; a `run_failed` whose publish failed is sent later;
overlapping senders never POST a delivery twice; a subscriber without its secret is held,
then served. Real `redis-server` processes (killed and restarted here), a real webhook
receiver on loopback, the sensors on an ephemeral Dagster instance."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import dagster as dg
import pytest
from faults.events_support import SECRET, SECRET_ENV, Receiver, RedisProc, subscribe, tick

from assets.resources import EventsResource, WebhooksResource
from models.integrations import events, outbox
from models.integrations.events import Event
from models.integrations.outbound import ALLOW_ENV
from models.integrations.webhooks import deliveries, enqueue, load_subscribers
from pipelines.sensors.webhooks import run_failure_event_sensor

FAST = {"base_s": 0.01, "cap_s": 0.05, "timeout_s": 2.0}


@pytest.fixture
def server(tmp_path, home, monkeypatch):
    """A redis-server of this test's own as `CLIPFLOW_REDIS`; loopback receivers allowed."""
    s = RedisProc(tmp_path / "redis").start()
    monkeypatch.setenv("CLIPFLOW_REDIS", s.url)
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    yield s
    s.kill()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def stream_ids(server) -> list[str]:
    """The event ids in the stream, oldest first."""
    return [e.id for e in events.read(server.client(), count=100_000)]


def test_an_event_published_while_redis_is_down_is_kept_and_sent_once_it_is_back(server, home):
    publisher = EventsResource(home=str(home))
    first = publisher.publish("scores_published", {"ds": "2026-04-01", "rows": 3})
    server.kill()
    during = publisher.publish("drift_detected", {"ds": "2026-04-02"})  # no error for the step
    assert during is not None
    assert [r["event_id"] for r in outbox.pending(outbox.path(home))] == [during]
    server.start()
    assert stream_ids(server) == [first]  # the stream never saw it: only the outbox has it
    promoted = publisher.publish("model_promoted", {"version": "2"})  # sends `during` first
    assert stream_ids(server) == [first, during, promoted]
    assert [e.id for e in events.read(server.client(), after=during)] == [promoted]
    [got] = [e for e in events.read(server.client()) if e.id == during]
    assert (got.type, got.data) == ("drift_detected", {"ds": "2026-04-02"})
    assert outbox.pending(outbox.path(home)) == []
    assert outbox.relay(outbox.path(home), server.client()).relayed == 0  # nothing twice


def test_the_relay_appends_each_event_once_in_order_even_after_a_crash(server, home):
    db = outbox.path(home)
    ids = [outbox.record(db, "scores_published", {"i": i}, source="test") for i in range(30)]
    rows = outbox.pending(db)
    for row in rows[:10]:  # a relay that appended these, then died before marking them
        events.publish(server.client(), row["type"], row["data"], event_id=row["event_id"])
    assert len(outbox.pending(db)) == 30
    result = outbox.relay(db, server.client())
    assert (result.relayed, result.pending, result.error) == (30, 0, None)
    got = events.read(server.client(), count=1000)
    assert [e.id for e in got] == ids  # once each, in the order recorded
    assert [e.data["i"] for e in got] == list(range(30))
    assert len({e.stream_id for e in got}) == 30


@dg.op
def load_features():
    raise RuntimeError("the feature table is missing")


@dg.job(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def doomed_job():
    load_features()


def test_a_run_failed_whose_publish_failed_is_sent_later(server, home, monkeypatch, receiver):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("CLIPFLOW_WEBHOOKS", str(subscribe(home, receiver.url, ("run_failed",))))
    instance = dg.DagsterInstance.ephemeral()
    _, cursor = tick(instance, None, home, **FAST)  # the sensor's first tick: at the end
    result = doomed_job.execute_in_process(
        instance=instance, raise_on_error=False, partition_key="2026-04-01"
    )
    assert not result.success
    server.kill()
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_event_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"webhooks": WebhooksResource(home=str(home), **FAST)},
    )
    run_failure_event_sensor(context)  # Redis is down: kept, not raised and lost
    run_failure_event_sensor(context)  # the same run evaluated again: still one event
    message, after = tick(instance, cursor, home, **FAST)
    assert "unreachable" in message and after == cursor and receiver.attempts == []
    server.start()
    deadline = time.monotonic() + 30
    while not receiver.accepted:
        assert time.monotonic() < deadline, receiver.attempts
        _, cursor = tick(instance, cursor, home, **FAST)
    tick(instance, cursor, home, **FAST)
    [delivered] = receiver.accepted
    assert (delivered["type"], delivered["data"]["run_id"]) == ("run_failed", result.run_id)
    assert delivered["data"]["error_classes"] == {"load_features": "RuntimeError"}
    assert [a[1] for a in receiver.attempts] == [delivered["id"]]


SENDER = """
import json, sys, time
from pathlib import Path
from models.integrations.webhooks import RetryPolicy, deliver_due, load_subscribers
db, subscribers, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
subs, errors = load_subscribers(subscribers)
assert subs and not errors, errors
while not go.exists():
    time.sleep(0.005)
print(json.dumps(deliver_due(db, subs, time.time(), RetryPolicy(timeout_s=5), limit=100)))
"""


def test_two_senders_at_once_never_post_a_delivery_twice(server, home, monkeypatch, tmp_path):
    slow = Receiver(delay_s=0.05)  # each POST takes a while: the two senders overlap
    try:
        monkeypatch.setenv(SECRET_ENV, SECRET)
        path = subscribe(home, slow.url)
        subs, errors = load_subscribers(path)
        assert errors == [] and [s.held for s in subs] == [None]
        batch = [
            Event(f"evt_{i:03d}", "scores_published", {"i": i}, None, "2026-04-01T00:00:00Z")
            for i in range(40)
        ]
        db = home / "webhooks.db"
        assert enqueue(db, batch, subs, now=time.time() - 1) == 40
        go = tmp_path / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SENDER, str(db), str(path), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for _ in range(2)
        ]
        time.sleep(2)  # both have imported and wait at the start line
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
        counts = [json.loads(out) for out, err in outs]
    finally:
        slow.stop()
    sent = Counter(webhook_id for _, webhook_id in slow.attempts)
    assert sorted(sent) == [e.id for e in batch]  # every delivery was sent...
    assert set(sent.values()) == {1}  # ...exactly once
    assert all(c["delivered"] > 0 for c in counts)  # they did overlap: both sent some
    assert sum(c["delivered"] for c in counts) == 40
    assert {r["status"] for r in deliveries(db)} == {"delivered"}


def test_a_subscriber_without_its_secret_is_held_then_served(server, home, monkeypatch, receiver):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.setenv("CLIPFLOW_WEBHOOKS", str(subscribe(home, receiver.url)))
    instance = dg.DagsterInstance.ephemeral()
    _, cursor = tick(instance, None, home, **FAST)
    publisher = EventsResource(home=str(home))
    ids = [publisher.publish("drift_detected", {"n": n}) for n in range(3)]
    message, cursor = tick(instance, cursor, home, **FAST)
    assert "3 queued" in message and "1 held" in message
    assert receiver.attempts == []
    assert [r["status"] for r in deliveries(home / "webhooks.db")] == ["pending"] * 3
    alerts = [
        json.loads(line) for line in (home / "alerts" / "alerts.jsonl").read_text().splitlines()
    ]
    [alert] = alerts
    assert alert["kind"] == "webhook_subscriber_held" and alert["subscriber"] == "receiver"
    assert SECRET_ENV in alert["message"] and "not set" in alert["message"]
    tick(instance, cursor, home, **FAST)  # still held: the alert is not repeated
    assert len((home / "alerts" / "alerts.jsonl").read_text().splitlines()) == 1

    monkeypatch.setenv(SECRET_ENV, SECRET)
    message, cursor = tick(instance, cursor, home, **FAST)
    assert "delivered 3" in message and "0 held" in message
    tick(instance, cursor, home, **FAST)
    assert [p["id"] for p in receiver.accepted] == ids  # each once, in order
    assert len(receiver.attempts) == 3 and "held" not in json.loads(cursor)
    assert SECRET not in (home / "alerts" / "alerts.jsonl").read_text()
