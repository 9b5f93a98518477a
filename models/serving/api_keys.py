"""API keys and user event tokens of the scoring API (Dagster-free, stdlib only).

**API keys.** A key is `cf_<key id>_<secret>`: an 8-hex-digit id (shown by `clipflow api-keys
list`, safe to log) and 32 random bytes (URL-safe base64). Only
`HMAC-SHA256(pepper, key)` is stored, in the SQLite file `$CLIPFLOW_HOME/api_keys.db`
(`CLIPFLOW_API_KEYS_DB` overrides it); the pepper is `CLIPFLOW_API_KEY_PEPPER`, a secret
kept apart from the database (a stolen database then verifies nothing). Without a pepper the
hash is a plain keyed-by-nothing HMAC: the 256-bit secret alone still cannot be guessed
from it, but set one in production. Changing the pepper invalidates every key.

Each key has a name, scopes (`SCOPES`; `admin` implies every other), a rate limit
(requests per second and a burst, 0 = unlimited) and may be revoked; a revoked key stays
listed. The API process keeps the rows in memory and re-reads them at most once per
`refresh_s` (1 s): a revocation takes effect within a second, without a database query per
request; an unknown key id (one just created) re-reads them at most every 50 ms.

**User event tokens.** The WebSocket and SSE streams send a user's targeted events only to a
holder of a token bound to that user: `base64url({"u": user_id, "exp": unix_s})` + "." +
`base64url(HMAC-SHA256(secret, payload))` with the secret `CLIPFLOW_EVENT_TOKEN_SECRET`.
An app's backend mints them (`POST /v1/event-tokens` with the `tokens` scope, or
`clipflow api-keys user-token`) and hands them to its user's browser. No secret: no tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

SCOPES = ("score", "events", "tokens", "metrics", "admin")
PEPPER_ENV = "CLIPFLOW_API_KEY_PEPPER"
DB_ENV = "CLIPFLOW_API_KEYS_DB"
TOKEN_SECRET_ENV = "CLIPFLOW_EVENT_TOKEN_SECRET"
DEFAULT_RATE, DEFAULT_BURST = 100.0, 200
MISS_REFRESH_S = 0.05  # an unknown key id re-reads the keys at most this often
_KEY = re.compile(r"^cf_([0-9a-f]{8})_([A-Za-z0-9_\-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@\-]{0,63}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")  # the API's id pattern


class ApiKeyError(ValueError):
    """A bad key command (the message names the argument)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_s: float
    burst: int
    created_at: float
    revoked_at: float | None
    digest: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def public(self) -> dict:
        """What `list` shows: never the digest."""
        return {
            "key_id": self.key_id, "name": self.name, "scopes": ",".join(self.scopes),
            "rate_per_s": self.rate_per_s, "burst": self.burst,
            "created_at": self.created_at, "revoked_at": self.revoked_at,
        }  # fmt: skip


def db_path(home: Path) -> Path:
    return Path(os.environ.get(DB_ENV) or home / "api_keys.db")


def digest(key: str, pepper: str | None = None) -> str:
    pepper = os.environ.get(PEPPER_ENV, "") if pepper is None else pepper
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL,
    rate_per_s REAL NOT NULL, burst INTEGER NOT NULL, created_at REAL NOT NULL,
    revoked_at REAL, digest TEXT NOT NULL
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5)
    conn.executescript(_SCHEMA)
    os.chmod(path, 0o600)
    return conn


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(sorted({s.strip() for s in text.split(",") if s.strip()}))
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise ApiKeyError(f"--scopes: unknown {bad} or empty; known: {', '.join(SCOPES)}")
    return scopes


def create(
    path: Path,
    name: str,
    scopes: tuple[str, ...],
    rate_per_s: float = DEFAULT_RATE,
    burst: int = DEFAULT_BURST,
    now: float | None = None,
) -> tuple[str, ApiKey]:
    """A new key (the secret, shown once) and its stored row."""
    if not _NAME.fullmatch(name or ""):
        raise ApiKeyError("--name: 1-64 letters, digits, space or _.:@- (starting alphanumeric)")
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise ApiKeyError(f"--scopes: unknown {bad} or empty; known: {', '.join(SCOPES)}")
    if not (rate_per_s >= 0 and burst >= 0) or (rate_per_s > 0 and burst < 1):
        raise ApiKeyError("--rate/--burst: rate >= 0 (0 = unlimited), burst >= 1 when limited")
    with closing(_connect(path)) as conn, conn:
        taken = {r[0] for r in conn.execute("SELECT key_id FROM api_keys")}
        key_id = secrets.token_hex(4)
        while key_id in taken:
            key_id = secrets.token_hex(4)
        key = f"cf_{key_id}_{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()[:43]}"
        row = ApiKey(key_id, name, tuple(scopes), float(rate_per_s), int(burst),
                     time.time() if now is None else now, None, digest(key))  # fmt: skip
        conn.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row.key_id, row.name, ",".join(row.scopes), row.rate_per_s, row.burst,
             row.created_at, None, row.digest),
        )  # fmt: skip
    return key, row


def list_keys(path: Path) -> list[ApiKey]:
    """Every key (a read only: no schema, no chmod; the API calls it once a second)."""
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=5)) as conn:
        try:
            rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at, key_id").fetchall()
        except sqlite3.OperationalError:  # a file without the table yet: no keys
            return []
    return [_row(r) for r in rows]


def revoke(path: Path, key_id: str, now: float | None = None) -> bool:
    """Revoke by id (or by the whole key); False when there is no such active key."""
    m = _KEY.fullmatch(key_id)
    key_id = m.group(1) if m else key_id
    if not re.fullmatch(r"[0-9a-f]{8}", key_id or ""):
        raise ApiKeyError("key_id: the 8 hex digits `clipflow api-keys list` shows")
    with closing(_connect(path)) as conn, conn:
        cur = conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (time.time() if now is None else now, key_id),
        )
        return cur.rowcount == 1


def _row(r) -> ApiKey:
    return ApiKey(r[0], r[1], tuple(r[2].split(",")), r[3], r[4], r[5], r[6], r[7])


class KeyStore:
    """The keys of one database, held in memory and re-read once per `refresh_s`."""

    def __init__(
        self, path: Path, refresh_s: float = 1.0, pepper: str | None = None, clock=time.monotonic
    ):
        self.path, self.refresh_s, self.clock = path, refresh_s, clock
        self.pepper = os.environ.get(PEPPER_ENV, "") if pepper is None else pepper
        self._keys: dict[str, ApiKey] = {}
        self._checked = float("-inf")

    def _refresh(self, miss: bool = False) -> None:
        now = self.clock()
        # a key id not held yet (just created?) re-reads sooner, at most 20 times a second
        if now - self._checked < (min(self.refresh_s, MISS_REFRESH_S) if miss else self.refresh_s):
            return
        self._checked = now  # a few rows, re-read whole: exact, and ~0.1 ms once a second
        self._keys = {k.key_id: k for k in list_keys(self.path)}

    def verify(self, key: str) -> ApiKey | None:
        """The active key this secret is, else None (malformed, unknown, wrong, revoked)."""
        m = _KEY.fullmatch(key)
        if m is None:
            return None
        self._refresh()
        if m.group(1) not in self._keys:
            self._refresh(miss=True)
        row = self._keys.get(m.group(1))
        if row is None or row.revoked_at is not None:
            return None
        return row if hmac.compare_digest(row.digest, digest(key, self.pepper)) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(user_id: str, ttl_s: float, secret: str | None = None, now: float | None = None):
    """A token for `user_id`'s events, valid `ttl_s` seconds (at most a day): (token, exp)."""
    secret = os.environ.get(TOKEN_SECRET_ENV, "") if secret is None else secret
    if not secret:
        raise ApiKeyError(f"{TOKEN_SECRET_ENV} is not set: event tokens are disabled")
    if not _USER.fullmatch(user_id or ""):
        raise ApiKeyError("user_id: 1-128 of A-Z a-z 0-9 _ . : - (starting alphanumeric)")
    if not 0 < ttl_s <= 86_400:
        raise ApiKeyError("ttl: between 1 second and 1 day")
    exp = int((time.time() if now is None else now) + ttl_s)
    payload = _b64(json.dumps({"u": user_id, "exp": exp}, separators=(",", ":")).encode())
    sig = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{sig}", exp


def verify_token(token: str, secret: str | None = None, now: float | None = None) -> str | None:
    """The user a valid, unexpired token is bound to, else None."""
    secret = os.environ.get(TOKEN_SECRET_ENV, "") if secret is None else secret
    if not secret or not token or len(token) > 1024 or token.count(".") != 1:
        return None
    payload, sig = token.split(".")
    expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, sig):
        return None
    try:
        doc = json.loads(_unb64(payload))
        user, exp = doc["u"], doc["exp"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(user, str) or not isinstance(exp, int) or not _USER.fullmatch(user):
        return None
    return user if (time.time() if now is None else now) < exp else None
