"""The live event hub against a real `redis-server` that is killed and restarted (#16, case 4):
connected clients keep receiving after Redis comes back, a malformed stream entry is
skipped (by the hub and by the webhook sensor's reader), and a resume replays everything
after its id, past the old 10,000-event cap."""

from __future__ import annotations

import asyncio

import pytest
from faults.events_support import RedisProc

from models.integrations import events
from pipelines.serve import live

pytestmark = pytest.mark.slow


Server = RedisProc  # a redis-server with an append-only file: the stream survives kill -9


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.start()
    yield s
    if s.proc.poll() is None:
        s.kill()


async def _collect(url: str, want: int, resume: str | None, got: list, timeout_s: float = 30):
    async def go():
        async for event in live.events(url, resume, 0.2, lambda e: True):
            if event is not None:
                got.append(event)
                if len(got) >= want:
                    return

    await asyncio.wait_for(go(), timeout_s)


def test_a_connected_client_keeps_receiving_across_a_redis_restart(server, monkeypatch):
    monkeypatch.setattr(live, "RETRY_MAX_S", 0.5, raising=False)
    got: list = []

    async def scenario():
        task = asyncio.create_task(_collect(server.url, 3, None, got))
        await asyncio.sleep(0.5)
        first = events.publish(server.client(), "scores_published", {"n": 1})
        await asyncio.sleep(0.5)
        server.kill()  # the hub's reader fails its XREAD now
        await asyncio.sleep(1.5)
        server.start()  # the same port, the stream restored from the append-only file
        c = server.client()
        c.xadd(events.STREAM, {"type": "nonsense"})  # a malformed entry: skipped, not fatal
        second = events.publish(c, "model_promoted", {"n": 2})
        third = events.publish(c, "drift_detected", {"n": 3})
        await task
        return [first, second, third]

    ids = asyncio.run(scenario())
    assert [e.id for e in got] == ids and [e.data["n"] for e in got] == [1, 2, 3]


def test_a_resume_replays_every_event_after_its_id(server, monkeypatch):
    monkeypatch.setattr(live, "REPLAY_PAGE", 1000, raising=False)
    c = server.client()
    start = events.publish(c, "scores_published", {"i": -1})
    pipe = c.pipeline(transaction=False)
    for i in range(10_050):  # more than the old cap of 10,000
        pipe.xadd(events.STREAM, {"type": "scores_published", "data": f'{{"i": {i}}}',
                                  "user_id": "", "at": "2026-01-01T00:00:00+00:00"})  # fmt: skip
    pipe.xadd(events.STREAM, {"type": "scores_published", "data": "not json"})
    pipe.execute()
    got: list = []
    asyncio.run(_collect(server.url, 10_050, start, got, timeout_s=60))
    assert [e.data["i"] for e in got] == list(range(10_050))


def test_the_webhook_readers_cursor_moves_past_a_malformed_entry(server):
    c = server.client()
    good = events.publish(c, "scores_published", {"n": 1})
    bad = c.xadd(events.STREAM, {"type": "run_failed", "data": "{oops"}).decode()
    later = events.publish(c, "scores_published", {"n": 2})
    got, last, problems = events.read_batch(c, after="0-0", count=2)
    assert [e.id for e in got] == [good] and last == bad
    assert problems == [f"stream entry {bad} is not an event: JSONDecodeError"]
    got, last, problems = events.read_batch(c, after=last)
    assert [e.id for e in got] == [later] and last == later and problems == []
    assert [e.id for e in events.read(c)] == [good, later]
