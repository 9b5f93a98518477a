"""1,000 events published during a 30 s Redis outage all reach a webhook receiver and a
resuming SSE client exactly once, in order (#16, case 3 and its fault-suite scenario).

Real parts only: a `redis-server` killed with SIGKILL and restarted, `clipflow serve` as a
subprocess with an SSE client connected before the outage (it resumes with
`Last-Event-ID` whenever its stream ends: once on purpose, and whenever the server drops
it for being slow), the events published through the pipeline's own path
(`EventsResource.publish`: outbox, then relay), `webhook_sensor` ticks on an ephemeral
Dagster instance, and a webhook receiver on loopback checking every signature."""

from __future__ import annotations

import json
import threading
import time

import dagster as dg
import httpx
import pytest
from faults.events_support import SECRET, SECRET_ENV, Receiver, RedisProc, subscribe, tick
from security.api_support import api_env, launch, stop_api

from assets.resources import EventsResource
from models.integrations import outbox
from models.integrations.outbound import ALLOW_ENV

pytestmark = pytest.mark.slow

BEFORE, DURING = 5, 1000
OUTAGE_S = 30.0
FAST = {"base_s": 0.01, "cap_s": 0.05, "timeout_s": 2.0}


class SseClient(threading.Thread):
    """Reads `/v1/events` and keeps every event's (stream id, JSON data); `connected` once
    the server says it is subscribed (its first heartbeat comes then); when the stream
    ends (dropped as too slow, or cut on purpose after `cut_after` events) it reconnects
    with `Last-Event-ID`, until it holds `want` events or `stop` is set."""

    def __init__(self, base: str, key: str, want: int, cut_after: int):
        super().__init__(daemon=True)
        self.base, self.key, self.want, self.cut_after = base, key, want, cut_after
        self.got: list[tuple[str, dict]] = []
        self.connections, self.resumed_from = 0, []
        self.connected, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.got) < self.want and not self.stop.is_set():
                self._one_connection()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def _one_connection(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.got:
            headers["Last-Event-ID"] = self.got[-1][0]
            self.resumed_from.append(self.got[-1][0])
        timeout = httpx.Timeout(10, read=60)  # heartbeats every 15 s keep it alive
        with httpx.stream("GET", f"{self.base}/v1/events", headers=headers, timeout=timeout) as r:
            assert r.status_code == 200, r.read()
            self.connections += 1
            stream_id = None
            for line in r.iter_lines():
                if line.startswith(": heartbeat"):  # the first: subscribed, nothing is missed
                    self.connected.set()
                elif line.startswith("id: "):
                    stream_id = line[4:]
                elif line.startswith("data: ") and stream_id:
                    self.got.append((stream_id, json.loads(line[6:])))
                    stream_id = None
                    if len(self.got) >= self.want or len(self.got) == self.cut_after:
                        return
                if self.stop.is_set():
                    return


def test_a_thousand_events_during_a_redis_outage_reach_webhooks_and_sse_once_in_order(
    tmp_path, monkeypatch
):
    redis_proc = RedisProc(tmp_path / "redis").start()
    receiver = Receiver()
    env = api_env(tmp_path, redis_proc.url)
    home = tmp_path / "home"
    for name in ("CLIPFLOW_HOME", "CLIPFLOW_REDIS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("CLIPFLOW_WEBHOOKS", str(subscribe(home, receiver.url)))
    api = launch(tmp_path, env, [], healthy=False)  # events need no model
    sse = SseClient(api.base, api.key("watcher", "events"), BEFORE + DURING, BEFORE + 300)
    try:
        instance = dg.DagsterInstance.ephemeral()
        _, cursor = tick(instance, None, home, **FAST)  # the sensor starts at the stream's end
        sse.start()
        assert sse.connected.wait(30), "the SSE client did not connect"
        publisher = EventsResource(home=str(home))
        ids = [publisher.publish("scores_published", {"i": -1 - i}) for i in range(BEFORE)]
        wait_for(lambda: len(sse.got) == BEFORE, 30, "the SSE client got the first events")
        _, cursor = tick(instance, cursor, home, **FAST)
        assert len(receiver.accepted) == BEFORE

        redis_proc.kill()  # the outage: 1,000 events over 30 s, each through the real path
        started = time.monotonic()
        for i in range(DURING):
            ids.append(publisher.publish("scores_published", {"i": i}))
            time.sleep(max(0.0, started + OUTAGE_S * (i + 1) / DURING - time.monotonic()))
            if i == DURING // 2:  # a tick meanwhile: skips, keeps its cursor
                message, after = tick(instance, cursor, home, **FAST)
                assert "unreachable" in message and after == cursor
        assert len(outbox.pending(outbox.path(home))) == DURING
        assert len(receiver.attempts) == BEFORE and len(sse.got) == BEFORE  # nothing new yet
        redis_proc.start()

        deadline = time.monotonic() + 180
        while len(receiver.accepted) < BEFORE + DURING:
            assert time.monotonic() < deadline, f"{len(receiver.accepted)} delivered"
            _, cursor = tick(instance, cursor, home, **FAST)
        tick(instance, cursor, home, **FAST)  # one more: nothing is sent twice
        sse.join(120)
        assert not sse.is_alive() and sse.error is None, (sse.error, len(sse.got))
    finally:
        sse.stop.set()
        stop_api(api)
        receiver.stop()
        redis_proc.kill()

    assert len(set(ids)) == BEFORE + DURING and None not in ids
    data = [{"i": -1 - i} for i in range(BEFORE)] + [{"i": i} for i in range(DURING)]
    # the webhook receiver: each event exactly once, in the order published
    assert [p["id"] for p in receiver.accepted] == ids
    assert [p["data"] for p in receiver.accepted] == data
    assert [webhook_id for _, webhook_id in receiver.attempts] == ids  # no second POST
    # the SSE client, connected before the outage, resuming with Last-Event-ID
    assert [d["id"] for _, d in sse.got] == ids
    assert [d["data"] for _, d in sse.got] == data
    assert sse.connections >= 2 and sse.got[BEFORE + 300 - 1][0] in sse.resumed_from
    assert [sid for sid, _ in sse.got] == [d["stream_id"] for _, d in sse.got]
    assert outbox.pending(outbox.path(home)) == []


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)
