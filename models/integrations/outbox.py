"""The events outbox: every pipeline event is written here first, durably, by the step that
causes it, then relayed to the Redis Stream (models/integrations/events.py).

A step records its event (`record`) before it succeeds: a SQLite database in WAL mode with
`synchronous=FULL` at `$CLIPFLOW_HOME/events/outbox.db`, one row per event with a stable
event id (`evt_<uuid>` unless the caller gives one: `run_failed_<run id>` for a failed
run, so the same failure recorded twice is one event). A write that fails fails the step.

`relay` appends what is not relayed yet to the stream, oldest first (the outbox's sequence:
every source's events stay in the order they were recorded), and marks each one relayed;
it stops at the first Redis error and leaves the rest for the next relay, which sends
them in the same order. It runs right after each `record` (when Redis answers, the event
is live at once) and at each `webhook_sensor` tick, so events recorded while Redis was
down go out once it is back. Relaying is at least once with the stream deduplicating by
event id (a relay that dies between its append and its mark appends nothing the next
time); two relays at once send nothing twice either. Relayed rows are kept `RETAIN_S`.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from models.integrations import events

RETAIN_S = 7 * 86_400
BATCH = 200
TIMEOUT_S = 10.0  # waiting for another writer's lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    user_id TEXT,
    at TEXT NOT NULL,
    created_at REAL NOT NULL,
    relayed_at REAL,
    stream_id TEXT,
    relay_attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unrelayed ON outbox (seq) WHERE relayed_at IS NULL;
"""


@dataclass(frozen=True)
class RelayResult:
    relayed: int  # appended to the stream by this call
    pending: int  # still waiting in the outbox
    error: str | None  # why the relay stopped (None: nothing left to send)


def path(home: Path) -> Path:
    """The outbox database of a clipflow home."""
    return home / "events" / "outbox.db"


def connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SCHEMA)
    return conn


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def record(
    db_path: Path,
    type: str,
    data: dict,
    user_id: str | None = None,
    *,
    source: str = "",
    event_id: str | None = None,
    now: float | None = None,
) -> str:
    """Write one event to the outbox, durably; its event id. An event id already there is
    kept as it was (recording the same event again is a no-op). ValueError for an unknown
    type, a bad id or data that is not JSON; sqlite3/OS errors when the write fails."""
    body = events.encode_data(type, data)
    event_id = events.check_event_id(event_id) if event_id is not None else new_event_id()
    now = time.time() if now is None else now
    at = datetime.fromtimestamp(now, UTC).isoformat()
    with closing(connect(db_path)) as conn:
        conn.execute(
            "INSERT OR IGNORE INTO outbox (event_id, source, type, data, user_id, at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, source[:200], type, body, user_id or None, at, now),
        )
    return event_id


def relay(db_path: Path, client, now: float | None = None, limit: int = 10_000) -> RelayResult:
    """Append the unrelayed events to the stream in order, at most `limit` (see the module
    docstring); never raises for Redis: a Redis error stops the relay and is returned."""
    now = time.time() if now is None else now
    relayed, error = 0, None
    with closing(connect(db_path)) as conn:
        while relayed < limit and error is None:
            rows = conn.execute(
                "SELECT seq, event_id, type, data, user_id, at FROM outbox"
                " WHERE relayed_at IS NULL ORDER BY seq LIMIT ?",
                (min(BATCH, limit - relayed),),
            ).fetchall()
            if not rows:
                break
            done, error = _append(client, rows)
            _mark(conn, done, rows[len(done)] if error else None, error, now)
            relayed += len(done)
        conn.execute("DELETE FROM outbox WHERE relayed_at < ?", (now - RETAIN_S,))
        (pending,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE relayed_at IS NULL").fetchone()
    return RelayResult(relayed, pending, error)


def relay_to(db_path: Path, connection: str, warn=None) -> RelayResult:
    """`relay` to the Redis of a connection string; `warn` is told when events must wait."""
    with events.client(connection) as client:
        result = relay(db_path, client)
    if result.error and warn is not None:
        warn(
            f"{result.pending} event(s) wait in the outbox ({db_path}) until Redis answers:"
            f" {result.error}"
        )
    return result


def _append(client, rows) -> tuple[list[tuple[str, int]], str | None]:
    """(stream id, seq) of the rows appended, in order, and the error that stopped it."""
    import redis

    done = []
    for row in rows:
        try:
            stream_id = events.publish(
                client, row["type"], row["data"], row["user_id"],
                event_id=row["event_id"], at=row["at"],
            )  # fmt: skip
        except (redis.RedisError, OSError) as e:
            return done, f"{type(e).__name__}: {e}"[:500]
        done.append((stream_id, row["seq"]))
    return done, None


def _mark(conn, done, failed, error, now) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE outbox SET relayed_at = ?, stream_id = ? WHERE seq = ?",
            [(now, stream_id, seq) for stream_id, seq in done],
        )
        if failed is not None:
            conn.execute(
                "UPDATE outbox SET relay_attempts = relay_attempts + 1, last_error = ?"
                " WHERE seq = ?",
                (error, failed["seq"]),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def pending(db_path: Path) -> list[dict]:
    """The unrelayed events, oldest first (for the CLI, tests and people)."""
    if not db_path.exists():
        return []
    with closing(connect(db_path)) as conn:
        rows = conn.execute("SELECT * FROM outbox WHERE relayed_at IS NULL ORDER BY seq")
        return [dict(r) for r in rows]
