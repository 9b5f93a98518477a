"""Live events for the API: one reader of the Redis Stream per process fans out to clients.

The `Hub` reads `clipflow:events` (models/integrations/events.py) with a blocking XREAD and puts each
event into every subscriber's bounded queue (`BUFFER` events). A subscriber whose queue is
full is dropped on the spot: it never slows the reader or the other clients; an SSE client
is told (`event: dropped`) and can reconnect with `Last-Event-ID` to resume from the
stream, losing nothing the stream still holds. A resuming client subscribes first, then
replays the stream after its id, and skips live events it already sent, so the hand-over
has neither gap nor duplicate. SSE's `id:` is the event's stream id (`Event.stream_id`,
what `Last-Event-ID` resumes from); the JSON `data` carries the stable event `id` too,
and a connection never sends one event id twice (the stream appends each id once; this
guards the rest).

Both streams send what the caller's `Access` (pipelines/serve/security.py) lets it see: the
events that target no user to a key with the `events` scope, and a user's targeted events
to the holder of an event token bound to that user.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from models.integrations.events import (
    DEDUP_KEY,
    STREAM,
    STREAM_ID,
    Event,
    MalformedEvent,
    check_event_id,
    decode,
    text,
    unknown_event,
)

BUFFER = 256
BLOCK_MS = 1000
REPLAY_PAGE = 1000
SEEN = 10_000  # event ids a connection remembers having sent
RETRY_MAX_S = 5.0  # the reader's backoff ceiling while Redis does not answer
_log = logging.getLogger("clipflow.live")


def _key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


class Hub:
    def __init__(self, url: str):
        from models.core.redis_url import async_redis_client

        self.redis = async_redis_client(url)
        self.subscribers: set[asyncio.Queue] = set()
        self.task: asyncio.Task | None = None
        self.started = asyncio.Event()  # the reader knows where it reads from

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(BUFFER)
        q.dropped = False  # type: ignore[attr-defined]
        self.subscribers.add(q)
        if self.task is None or self.task.done():
            self.started.clear()
            self.task = asyncio.get_running_loop().create_task(self._run())
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.subscribers.discard(q)

    async def replay(self, after: str) -> AsyncIterator[Event]:
        """Every event after id `after` (a stream id, or an event id the stream knows) still
        in the stream, page by page (no cap: a client that falls behind meanwhile is
        dropped and resumes, losing nothing)."""
        if not STREAM_ID.match(after):
            found = await self.redis.get(DEDUP_KEY + check_event_id(after))
            if found is None:
                raise unknown_event(after)
            after = text(found)
        while True:
            entries = await self.redis.xrange(STREAM, min=f"({after}", count=REPLAY_PAGE)
            for entry_id, fields in entries:
                after = text(entry_id)
                try:
                    yield decode(entry_id, fields)
                except MalformedEvent as e:
                    _log.warning("replay skipped: %s", e)
            if len(entries) < REPLAY_PAGE:
                return

    async def _run(self) -> None:
        """Read the stream and fan out, for as long as anyone listens. Redis going away
        (a restart, a network cut) is waited out with backoff and the read resumes after
        the last id seen, so connected clients get what was published meanwhile; a
        malformed entry is skipped and logged."""
        after, delay = None, 0.1
        while self.subscribers:
            try:
                if after is None:
                    last = await self.redis.xrevrange(STREAM, count=1)
                    after = text(last[0][0]) if last else "0-0"
                    self.started.set()
                got = await self.redis.xread({STREAM: after}, count=500, block=BLOCK_MS)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Redis down or odd: wait, retry, say so
                _log.warning("event stream read failed (%s); retrying in %.1f s",
                             type(e).__name__, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            for _, entries in got or []:
                for entry_id, fields in entries:
                    after = text(entry_id)
                    try:
                        event = decode(entry_id, fields)
                    except MalformedEvent as e:
                        _log.warning("skipped: %s", e)
                        continue
                    for q in list(self.subscribers):
                        try:
                            q.put_nowait(event)
                        except asyncio.QueueFull:  # a slow client: drop it, never wait
                            q.dropped = True  # type: ignore[attr-defined]
                            self.subscribers.discard(q)


class _Seen:
    """The last `SEEN` event ids a connection sent, to send none of them twice."""

    def __init__(self):
        self.ids: set[str] = set()
        self.order: deque[str] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids

    def add(self, event_id: str) -> None:
        if event_id not in self.ids:
            self.ids.add(event_id)
            self.order.append(event_id)
            if len(self.order) > SEEN:
                self.ids.discard(self.order.popleft())


_HUBS: dict[tuple[str, int], Hub] = {}


def hub_for(url: str) -> Hub:
    key = (url, id(asyncio.get_running_loop()))
    if key not in _HUBS:
        _HUBS[key] = Hub(url)
    return _HUBS[key]


async def _replay(hub: Hub, after: str, seen: _Seen) -> AsyncIterator[tuple[Event, bool]]:
    """(event, not sent before) for each event after `after`."""
    async for event in hub.replay(after):
        new = event.id not in seen
        seen.add(event.id)
        yield event, new


async def events(
    url: str, resume: str | None, heartbeat_s: float, visible: Callable[[Event], bool]
) -> AsyncIterator[Event | None]:
    """Events for one client (None = time for a heartbeat); ends when it is dropped. A
    client that does not resume gets a first heartbeat at once when it is subscribed (a
    new reader has found where it starts): every event appended after it reaches it."""
    hub = hub_for(url)
    q = hub.subscribe()
    sent, seen = None, _Seen()
    try:
        if resume:  # what the stream holds after it, at once
            async for event, new in _replay(hub, resume, seen):
                sent = event.stream_id
                if new and visible(event):
                    yield event
        while not hub.started.is_set():  # a new reader finds its start (Redis may be down)
            try:
                await asyncio.wait_for(hub.started.wait(), heartbeat_s)
            except TimeoutError:
                yield None
        if not resume:
            yield None  # subscribed: a first heartbeat at once
        else:  # again, up to where the reader started: no gap before its first event
            async for event, new in _replay(hub, sent or resume, seen):
                sent = event.stream_id
                if new and visible(event):
                    yield event
        while not q.dropped:  # type: ignore[attr-defined]
            try:
                event = await asyncio.wait_for(q.get(), heartbeat_s)
            except TimeoutError:
                yield None
                continue
            if sent is not None and _key(event.stream_id) <= _key(sent):
                continue
            sent = event.stream_id
            if event.id in seen:
                continue
            seen.add(event.id)
            if visible(event):
                yield event
    finally:
        hub.unsubscribe(q)


async def sse_stream(
    url: str,
    resume: str | None,
    heartbeat_s: float,
    disconnected: Callable[[], Awaitable[bool]],
    access,
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    async for event in events(url, resume, heartbeat_s, access.visible):
        if event is None:
            if await disconnected():
                return
            yield ": heartbeat\n\n"
            continue
        body = json.dumps(event.as_dict())
        yield f"id: {event.stream_id}\nevent: {event.type}\ndata: {body}\n\n"
    yield "event: dropped\ndata: {}\n\n"  # too slow: reconnect with Last-Event-ID


async def ws_stream(websocket, url: str, access, heartbeat_s: float) -> None:
    async for event in events(url, None, heartbeat_s, access.visible):
        if event is None:
            await websocket.send_json({"type": "heartbeat"})
        else:
            await websocket.send_json(event.as_dict())
    await websocket.close(code=1013, reason="too slow: dropped")
