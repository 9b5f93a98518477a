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


def decode(entry_id, fields: dict) -> Event:
    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    f = {text(k): text(v) for k, v in fields.items()}
    return Event(
        id=text(entry_id),
        type=f["type"],
        data=json.loads(f["data"]),
        user_id=f.get("user_id") or None,
        at=f["at"],
    )


def read(client, after: str = "0-0", count: int = 100, block_ms: int | None = None) -> list[Event]:
    """Events after id `after` (exclusive), oldest first; waits up to `block_ms` for one
    when there is none (None: no wait)."""
    got = client.xread({STREAM: after}, count=count, block=block_ms)
    return [decode(i, f) for _, entries in got or [] for i, f in entries]


def latest_id(client) -> str:
    """The id of the newest event ("0-0" when there is none): where a new watcher starts."""
    last = client.xrevrange(STREAM, count=1)
    return decode(*last[0]).id if last else "0-0"
