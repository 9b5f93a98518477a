"""Pipeline events on a Redis Stream: what apps watch live and webhooks deliver.

Events: `scores_published`, `model_promoted`, `drift_detected`, `experiment_decided`,
`run_failed`. Each is one entry of the stream `clipflow:events` (capped near `MAXLEN`
entries) with fields `type`, `data` (JSON), `user_id` (empty unless the event targets one
user), `at` (ISO time) and `event_id`: the event's stable id, given when it was written to
the outbox (models/integrations/outbox.py), the same however often the outbox relays it.
Downstream deduplicates by it (webhook deliveries, `webhook-id`). Appending with an
`event_id` is idempotent for `DEDUP_TTL_S`: a second append of the same id (a relay that
crashed before recording its first one) adds nothing and answers the first entry's id.
The stream entry id (`Event.stream_id`) is the position: ordered, unique, and what SSE's
`Last-Event-ID` resumes from; a reader may also resume after an event id, for as long as
the stream remembers it (`DEDUP_TTL_S`). An entry without `event_id` (written by an older
clipflow) has its stream id as event id.

The Redis is the one in `CLIPFLOW_REDIS` (Feast's connection string format:
`host:port[,db=N][,password=...][,ssl=true]`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

STREAM = "clipflow:events"
MAXLEN = 100_000
DEDUP_KEY = "{clipflow:events}:id:"  # + event id: its entry's stream id, for DEDUP_TTL_S; the
# hash tag puts it in the stream's slot (a Redis Cluster runs a script on one slot's keys)
DEDUP_TTL_S = 7 * 86_400
EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # no '.': it is also a webhook-id
STREAM_ID = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")
EVENT_TYPES = (
    "scores_published",
    "model_promoted",
    "drift_detected",
    "experiment_decided",
    "run_failed",
)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict
    user_id: str | None
    at: str
    stream_id: str = ""  # the entry's position in the stream ("" when not read from it)

    def as_dict(self) -> dict:
        return asdict(self)


# XADD unless this event id was appended already; either way the entry's stream id
_APPEND_ONCE = """
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return id
"""


def client(connection: str):
    """A Redis client for the event stream (`CLIPFLOW_REDIS`'s form): one try, 2 s at most.
    redis-py's default retries with backoff would hold a step or a sensor tick for seconds
    while Redis is down; the next relay or tick is the retry."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from models.core.redis_url import redis_client

    return redis_client(
        connection, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def check_event_id(event_id: str) -> str:
    if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
        raise ValueError(f"event id {str(event_id)[:80]!r}: 1-128 of A-Z a-z 0-9 _ - expected")
    return event_id


def encode_data(type: str, data: dict) -> str:
    """The `data` field of an event (JSON; NaN and infinities refused, naming the event)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; known: {', '.join(EVENT_TYPES)}")
    try:
        return json.dumps(data, default=str, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"event {type}: data is not JSON without NaN/inf: {e}") from None


def publish(
    client,
    type: str,
    data: dict | str,
    user_id: str | None = None,
    *,
    event_id: str | None = None,
    at: str | None = None,
) -> str:
    """Append one event; its stream id. `data` may be already encoded (`encode_data`).
    With `event_id`, at most once per id (see the module docstring)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; known: {', '.join(EVENT_TYPES)}")
    fields = {
        "type": type,
        "data": data if isinstance(data, str) else encode_data(type, data),
        "user_id": user_id or "",
        "at": at or datetime.now(UTC).isoformat(),
    }
    if event_id is None:
        return text(client.xadd(STREAM, fields, maxlen=MAXLEN, approximate=True))
    fields["event_id"] = check_event_id(event_id)
    flat = [x for kv in fields.items() for x in kv]
    keys = [STREAM, DEDUP_KEY + event_id]
    return text(client.eval(_APPEND_ONCE, 2, *keys, MAXLEN, DEDUP_TTL_S, *flat))


class MalformedEvent(ValueError):
    """A stream entry that is not an event (missing field, bad JSON, unknown type): readers
    skip it, say which, and go on."""


def text(v) -> str:
    """A Redis reply (bytes or str) as str: stream ids and fields."""
    return v.decode() if isinstance(v, bytes) else v


def decode(entry_id, fields: dict) -> Event:
    """The event of one stream entry, or MalformedEvent naming the entry and the field."""
    entry = text(entry_id)
    try:
        f = {text(k): text(v) for k, v in fields.items()}
        data = json.loads(f["data"])
        if f["type"] not in EVENT_TYPES or not isinstance(data, dict):
            raise ValueError(f"type {f['type'][:40]!r} or data not an object")
        return Event(
            id=f.get("event_id") or entry,
            type=f["type"],
            data=data,
            user_id=f.get("user_id") or None,
            at=f["at"],
            stream_id=entry,
        )
    except (KeyError, ValueError, UnicodeDecodeError, TypeError) as e:
        field = f" (missing field {e})" if isinstance(e, KeyError) else ""
        raise MalformedEvent(
            f"stream entry {entry} is not an event{field}: {type(e).__name__}"
        ) from None


def unknown_event(event_id: str) -> ValueError:
    return ValueError(f"event id {event_id[:80]!r} is not in the stream (unknown or expired)")


def position(client, after: str) -> str:
    """The stream id to read after: `after` when it is one, else the entry of the event
    id `after` (ValueError when the stream does not know it)."""
    if STREAM_ID.match(after):
        return after
    found = client.get(DEDUP_KEY + check_event_id(after))
    if found is None:
        raise unknown_event(after)
    return text(found)


def read_batch(
    client, after: str = "0-0", count: int = 100, block_ms: int | None = None
) -> tuple[list[Event], str, list[str]]:
    """(events, the id of the last entry read, the malformed entries' errors) after id
    `after` (exclusive; a stream id or an event id), oldest first: a cursor moves to the last id, past malformed
    entries, so one bad entry never stops a reader."""
    after = position(client, after)
    got = client.xread({STREAM: after}, count=count, block=block_ms)
    events, bad, last = [], [], after
    for _, entries in got or []:
        for entry_id, fields in entries:
            last = text(entry_id)
            try:
                events.append(decode(entry_id, fields))
            except MalformedEvent as e:
                bad.append(str(e))
    return events, last, bad


def read(client, after: str = "0-0", count: int = 100, block_ms: int | None = None) -> list[Event]:
    """Events after id `after` (exclusive), oldest first, malformed entries skipped; waits up
    to `block_ms` for one when there is none (None: no wait)."""
    return read_batch(client, after, count, block_ms)[0]


def latest_id(client) -> str:
    """The id of the newest event ("0-0" when there is none): where a new watcher starts."""
    last = client.xrevrange(STREAM, count=1)
    return text(last[0][0]) if last else "0-0"
