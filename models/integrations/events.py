"""Pipeline events on a Redis Stream: what apps watch live and webhooks deliver.

Events: `scores_published`, `model_promoted`, `drift_detected`, `experiment_decided`,
`run_failed`. Each is one entry of the stream `clipflow:events` (capped near `MAXLEN`
entries) with fields `type`, `data` (JSON), `user_id` (empty unless the event targets one
user) and `at` (ISO time). The stream entry id is the event id: ordered, unique, and what
SSE's `Last-Event-ID` resumes from.

The Redis is the one in `CLIPFLOW_REDIS` (Feast's connection string format:
`host:port[,db=N][,password=...][,ssl=true]`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

STREAM = "clipflow:events"
MAXLEN = 100_000
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

    def as_dict(self) -> dict:
        return asdict(self)


def publish(client, type: str, data: dict, user_id: str | None = None) -> str:
    """Append one event; its id."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; known: {', '.join(EVENT_TYPES)}")
    fields = {
        "type": type,
        "data": json.dumps(data, default=str, allow_nan=False),
        "user_id": user_id or "",
        "at": datetime.now(UTC).isoformat(),
    }
    event_id = client.xadd(STREAM, fields, maxlen=MAXLEN, approximate=True)
    return event_id.decode() if isinstance(event_id, bytes) else event_id


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
            id=entry, type=f["type"], data=data, user_id=f.get("user_id") or None, at=f["at"]
        )
    except (KeyError, ValueError, UnicodeDecodeError, TypeError) as e:
        field = f" (missing field {e})" if isinstance(e, KeyError) else ""
        raise MalformedEvent(
            f"stream entry {entry} is not an event{field}: {type(e).__name__}"
        ) from None


def read_batch(
    client, after: str = "0-0", count: int = 100, block_ms: int | None = None
) -> tuple[list[Event], str, list[str]]:
    """(events, the id of the last entry read, the malformed entries' errors) after id
    `after` (exclusive), oldest first: a cursor moves to the last id, past malformed
    entries, so one bad entry never stops a reader."""
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
