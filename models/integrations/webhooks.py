"""Signed webhooks for the pipeline's events (models/integrations/events.py): subscribers, Standard
Webhooks signatures, and a SQLite outbox of deliveries with retries.

Subscribers come from a YAML file (the caller picks the path; the Dagster resource uses
`$CLIPFLOW_WEBHOOKS`, else `$CLIPFLOW_HOME/webhooks.yaml`):

    subscribers:
      - name: ops-dashboard
        url: https://ops.example.com/hooks/clipflow
        events: [run_failed, drift_detected]      # or ["*"] for every event type
        secret_env: OPS_DASHBOARD_WEBHOOK_SECRET  # the variable that holds the secret

The file names the variable, never the secret: it is read to sign and never logged or
stored. A bad entry is skipped with an error naming the field; the others still work. A
subscriber whose variable is unset (or not a valid `whsec_` secret) is held: its
deliveries are queued and wait, nothing is sent or skipped, and `held` says why.

Signatures follow Standard Webhooks 1.0 (models/integrations/webhook_signing.py); `webhook-id`
is the event's stable id. The body is JSON `{"id", "type", "timestamp", "data", "user_id"}`,
fixed at enqueue: retries send the same bytes with a new timestamp and signature.

SQLite table `webhook_deliveries` holds one row per (event id, subscriber), so queuing an
event again is a no-op; `webhook_attempts` logs every attempt. A sender claims a due
delivery (a conditional UPDATE with a lease, `claim_until`) before it POSTs: two senders
at once, in threads or processes, never POST one delivery twice. Due deliveries go
oldest first (queue order); a retried one may arrive after later events. Success is a
2xx; anything else retries after exponential backoff with full jitter (a `Retry-After` on 429/503 is a
floor) until `max_attempts`, then `failed`; 410 Gone gives up at once. Delivery is at least
once (a crash between the POST and its record resends): receivers dedupe on `webhook-id`.

Outbound guard (models/integrations/outbound.py): a `url` whose host is or resolves to a
loopback, private, link-local, metadata or other internal address is refused at load
(unless in `$CLIPFLOW_OUTBOUND_ALLOW`; a host that does not resolve yet is accepted) and
again at each send, on the connected address; such a delivery is not sent, it records
the refusal and is retried like a connection error. Redirects are failures naming their
target; a response body is read up to 64 KiB, the rest dropped; a request has a total
deadline of twice `timeout_s`.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests
import yaml

from models.integrations import outbound
from models.integrations.events import EVENT_TYPES, Event
from models.integrations.outbound_http import guarded_session, redirect_target
from models.integrations.retry import full_jitter, retry_after_s
from models.integrations.webhook_signing import SECRET_PREFIX, secret_key, sign
from models.integrations.webhook_signing import VerificationError as VerificationError
from models.integrations.webhook_signing import verify as verify

_FIELDS = ("name", "url", "events", "secret_env")
MAX_RESPONSE_BYTES = 64 * 1024  # only the status matters
CLAIM_MARGIN_S = 60.0  # a claim outlives its sender's budget by this much, then lapses
_DUE = (  # (now, now): pending, due, and not claimed by a sender whose lease still runs
    "status = 'pending' AND next_attempt_at <= ? AND (claim_until IS NULL OR claim_until < ?)"
)


@dataclass(frozen=True)
class Subscriber:
    name: str
    url: str
    events: tuple[str, ...]
    secret_env: str  # the variable's name; its value is read only to sign
    held: str | None = None  # why its deliveries wait (its secret is missing), None: ready

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def secret(self) -> str:
        return os.environ[self.secret_env]


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 2.0  # backoff before the 2nd attempt is uniform in [0, base_s]
    cap_s: float = 600.0  # the backoff's ceiling (a Retry-After may ask for more)
    max_attempts: int = 8  # then the delivery is `failed`
    timeout_s: float = 5.0  # per request
    max_retry_after_s: float = 86_400.0  # a longer Retry-After is read as this


def load_subscribers(
    path: Path, environ: Mapping[str, str] | None = None
) -> tuple[list[Subscriber], list[str]]:
    """The valid subscribers of a YAML file and one error per invalid one (no file: none)."""
    environ = os.environ if environ is None else environ
    if not path.exists():
        return [], []
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return [], [f"{path}: not valid YAML: {e}"]
    entries = doc.get("subscribers") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return [], [f"{path}: expected a mapping with a list `subscribers`"]
    subscribers, errors = [], []
    for i, entry in enumerate(entries):
        sub, problem = _subscriber(entry, environ)
        if sub is not None and sub.name in {s.name for s in subscribers}:
            sub, problem = None, f"name: {sub.name!r} is used by an earlier subscriber"
        if sub is None:
            name = entry.get("name") if isinstance(entry, dict) else None
            errors.append(f"{path}: subscribers[{i}]{f' ({name!r})' if name else ''}: {problem}")
        else:
            subscribers.append(sub)
    return subscribers, errors


def _subscriber(entry, environ: Mapping[str, str]) -> tuple[Subscriber | None, str | None]:
    if not isinstance(entry, dict):
        return None, f"expected a mapping with {', '.join(_FIELDS)}"
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        return None, f"unknown field(s) {', '.join(map(str, unknown))}"
    name, url, events, secret_env = (entry.get(k) for k in _FIELDS)
    if not isinstance(name, str) or not name.strip():
        return None, "name: a non-empty string is required"
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None, "url: an http:// or https:// URL with a host is required"
    if not isinstance(events, list) or not events:
        return None, 'events: a non-empty list of event types (or ["*"]) is required'
    bad = [e for e in events if e != "*" and e not in EVENT_TYPES]
    if bad:
        return None, f"events: unknown {bad}; known: {', '.join(EVENT_TYPES)} or '*'"
    if not isinstance(secret_env, str) or not secret_env:
        return None, "secret_env: the name of an environment variable is required"
    try:  # last: the cheap checks first, DNS only for an otherwise valid entry
        outbound.check_url(url, "url", environ)
    except outbound.OutboundRefused as e:
        return None, str(e)
    return Subscriber(name, url, tuple(events), secret_env, _held(secret_env, environ)), None


def _held(secret_env: str, environ: Mapping[str, str]) -> str | None:
    """Why a subscriber cannot sign now (its secret is missing or malformed), else None."""
    if not environ.get(secret_env):
        return f"secret_env: environment variable {secret_env} is not set"
    try:
        secret_key(environ[secret_env])
    except ValueError:
        return f"secret_env: {secret_env} starts with {SECRET_PREFIX} but is not base64"
    return None


def payload(event: Event) -> str:
    """The request body of an event: compact JSON."""
    e = event
    doc = {"id": e.id, "type": e.type, "timestamp": e.at, "data": e.data, "user_id": e.user_id}
    return json.dumps(doc, separators=(",", ":"), default=str)


def next_delay(
    attempts: int, policy: RetryPolicy, retry_after: float | None = None, rng=random
) -> float:
    """Seconds before the next try after `attempts` failed ones: full jitter,
    uniform(0, min(cap, base * 2**(attempts-1))); a Retry-After is a floor."""
    delay = full_jitter(attempts - 1, policy.base_s, policy.cap_s, rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_retry_after_s))
    return delay


_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id TEXT NOT NULL, subscriber TEXT NOT NULL, event_type TEXT NOT NULL,
    body TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, last_status_code INTEGER, last_error TEXT,
    next_attempt_at REAL, delivered_at REAL, created_at REAL NOT NULL,
    claimed_by TEXT, claim_until REAL,
    PRIMARY KEY (event_id, subscriber)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    event_id TEXT NOT NULL, subscriber TEXT NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL,
    status_code INTEGER, error TEXT, elapsed_ms REAL
);
"""


def connect(db_path: Path) -> sqlite3.Connection:
    """The deliveries database (created with its tables when missing); times are unix s."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(webhook_deliveries)")}
    for column in ("claimed_by TEXT", "claim_until REAL"):  # a database from before claims
        if column.split()[0] not in columns:
            conn.execute(f"ALTER TABLE webhook_deliveries ADD COLUMN {column}")
    return conn


def enqueue(db_path: Path, events: Iterable[Event], subscribers, now: float) -> int:
    """Queue each event for the subscribers that want its type; the number of new rows
    (an event already queued for a subscriber, in any status, is left as it is)."""
    rows = [
        (e.id, s.name, e.type, payload(e), now, now)
        for e in events
        for s in subscribers
        if s.wants(e.type)
    ]
    if not rows:
        return 0
    with closing(connect(db_path)) as conn, conn:
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO webhook_deliveries (event_id, subscriber, event_type, body,"
            " status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            rows,
        )
        return conn.total_changes - before


def deliver_due(
    db_path: Path,
    subscribers,
    now: float,
    policy: RetryPolicy | None = None,
    *,
    limit: int = 50,
    budget_s: float = 30.0,
    rng=random,
) -> dict[str, int]:
    """Attempt up to `limit` pending deliveries due at `now`, oldest first, for about
    `budget_s` seconds at most; a subscriber that does not answer is not tried again in
    this call. Counts: delivered, retrying, failed (gave up now), deferred (left due).
    Rows of subscribers missing from `subscribers`, or held, wait (their config may come
    back). Each delivery is claimed before its POST, so a concurrent call skips it."""
    policy = policy or RetryPolicy()
    by_name = {s.name: s for s in subscribers if not s.held}
    counts = dict.fromkeys(("delivered", "retrying", "failed", "deferred"), 0)
    if not by_name:
        return counts
    started, unreachable, claimant = time.monotonic(), set(), uuid.uuid4().hex
    lease_until = now + budget_s + 2 * policy.timeout_s + CLAIM_MARGIN_S
    http = guarded_session(
        "webhook url", max_bytes=MAX_RESPONSE_BYTES, deadline_s=2 * policy.timeout_s, truncate=True
    )
    with closing(connect(db_path)) as conn, http:
        due = conn.execute(
            "SELECT event_id, subscriber, body, attempts FROM webhook_deliveries"
            f" WHERE {_DUE} AND subscriber IN ({', '.join('?' * len(by_name))})"
            " ORDER BY next_attempt_at, rowid LIMIT ?",
            (now, now, *by_name, limit),
        ).fetchall()
        for row in due:
            sub = by_name[row["subscriber"]]
            late = time.monotonic() - started > budget_s
            if sub.name in unreachable or late or not os.environ.get(sub.secret_env):
                counts["deferred"] += 1
                continue
            row = _claim(conn, row, claimant, now, lease_until)
            if row is None:
                continue  # another sender has it
            result = _post(http, sub, row["event_id"], row["body"], now, policy.timeout_s)
            if result[0] is None:
                unreachable.add(sub.name)
            counts[_record(conn, row, *result, now=now, policy=policy, rng=rng)] += 1
    return counts


def _claim(conn, row, claimant: str, now: float, until: float) -> sqlite3.Row | None:
    """Take one due delivery for this sender: the row as it is now, or None when another
    sender has it (or has sent it meanwhile)."""
    with conn:
        taken = conn.execute(
            "UPDATE webhook_deliveries SET claimed_by = ?, claim_until = ?"
            f" WHERE event_id = ? AND subscriber = ? AND {_DUE}"
            " RETURNING event_id, subscriber, body, attempts",
            (claimant, until, row["event_id"], row["subscriber"], now, now),
        ).fetchall()  # all: the statement must finish before the commit
    return taken[0] if taken else None


def _post(
    http: requests.Session, sub: Subscriber, event_id: str, body: str, now: float, timeout_s: float
) -> tuple:
    """(status code or None, error, Retry-After seconds, elapsed ms) of one signed POST."""
    headers = {
        "content-type": "application/json",
        "user-agent": "clipflow-webhooks/1",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": sign(sub.secret(), event_id, int(now), body),
    }
    started = time.monotonic()
    try:  # the spec: a redirect is a failure (fix the URL); the session never follows one
        r = http.post(sub.url, data=body.encode(), headers=headers, timeout=timeout_s)
    except requests.RequestException as e:
        return None, f"{type(e).__name__}: {e}"[:500], None, (time.monotonic() - started) * 1e3
    elapsed_ms = (time.monotonic() - started) * 1e3
    if 200 <= r.status_code < 300:
        return r.status_code, None, None, elapsed_ms
    wait = r.headers.get("retry-after") if r.status_code in (429, 503) else None
    error = f"HTTP {r.status_code} {r.reason}"
    if (target := redirect_target(r)) is not None:
        error += f": redirect to {target} not followed"
    return r.status_code, error[:500], retry_after_s(wait, now), elapsed_ms


def _record(conn, row, code, error, retry_after, elapsed_ms, *, now, policy, rng) -> str:
    attempts, next_at, delivered_at = row["attempts"] + 1, None, None
    if code is not None and 200 <= code < 300:
        status, outcome, delivered_at = "delivered", "delivered", now
    elif code == 410 or attempts >= policy.max_attempts:  # 410 Gone: the receiver opted out
        status = outcome = "failed"
    else:
        status, outcome = "pending", "retrying"
        next_at = now + next_delay(attempts, policy, retry_after, rng)
    key = (row["event_id"], row["subscriber"])
    with conn:
        conn.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?,"
            " last_error = ?, next_attempt_at = ?, delivered_at = ?, claimed_by = NULL,"
            " claim_until = NULL WHERE event_id = ? AND subscriber = ?",
            (status, attempts, code, error, next_at, delivered_at, *key),
        )
        conn.execute(
            "INSERT INTO webhook_attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*key, attempts, now, code, error, elapsed_ms),
        )
    return outcome


def deliveries(db_path: Path) -> list[dict]:
    """Every delivery row, oldest first (for the CLI, tests and people)."""
    with closing(connect(db_path)) as conn:
        rows = conn.execute("SELECT * FROM webhook_deliveries ORDER BY created_at, event_id")
        return [dict(r) for r in rows]


def status_counts(db_path: Path) -> dict[str, int]:
    with closing(connect(db_path)) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status")
        return {status: n for status, n in rows}
