"""The API's guards: API keys with scopes and rate limits, user event tokens, the `Origin`
allowlist of the event streams, and request bodies capped before anything parses them.

- `Authorization: Bearer <key>` (models/serving/api_keys.py). No or an unknown, malformed
  or revoked key: 401 with `WWW-Authenticate: Bearer`; a key without the endpoint's scope:
  403; a key over its rate (a token bucket per key and process: `rate_per_s`, `burst`):
  429 with `Retry-After` (whole seconds). The key is never logged nor used as a metric
  label; only its 8-digit id may appear.
- The event streams (`/v1/events`, `/v1/ws`) take a key with the `events` scope (the events
  that target no user) and/or `?token=` (that user's events only). A request carrying an
  `Origin` header (a browser) must name an origin of `CLIPFLOW_API_ALLOWED_ORIGINS`
  (comma-separated, e.g. `https://app.example.com`), else 403: a web page elsewhere cannot
  ride on a user's token. Clients that send no `Origin` (servers, apps) are not browsers.
- `BodyLimit`: a body over `max_bytes` (a `Content-Length` that says so, or the bytes as
  they arrive) is a 413 before the app reads it; a body not complete within `timeout_s`
  (a slow-loris drip) is a 408. The app sees the buffered body.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from dataclasses import dataclass

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from models.serving.api_keys import ApiKey, KeyStore, verify_token

ORIGINS_ENV = "CLIPFLOW_API_ALLOWED_ORIGINS"
MAX_BODY_BYTES = 256 * 1024  # a batch of 1,000 ids of 128 characters is ~135 KB
BODY_TIMEOUT_S = 10.0

bearer = HTTPBearer(auto_error=False, description="an API key: `clipflow api-keys create`")


class RateLimiter:
    """A token bucket per key id, refilled continuously (this process only)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def wait_s(self, key: ApiKey) -> float:
        """0 when the request may go now (and take a token), else seconds to wait."""
        if key.rate_per_s <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self.buckets.get(key.key_id, (float(key.burst), now))
        tokens = min(float(key.burst), tokens + (now - last) * key.rate_per_s)
        if tokens >= 1.0:
            self.buckets[key.key_id] = (tokens - 1.0, now)
            return 0.0
        self.buckets[key.key_id] = (tokens, now)
        return (1.0 - tokens) / key.rate_per_s


_OPEN = ApiKey("00000000", "no auth (benchmark)", ("admin",), 0.0, 0, 0.0, None, "")


class Guard:
    def __init__(self, store: KeyStore, limiter: RateLimiter | None = None, open_=False):
        self.store, self.limiter, self.open = store, limiter or RateLimiter(), open_

    def key(self, credentials: HTTPAuthorizationCredentials | None) -> ApiKey | None:
        if self.open:
            return _OPEN
        return self.store.verify(credentials.credentials) if credentials else None

    def check(self, credentials: HTTPAuthorizationCredentials | None, scope: str) -> ApiKey:
        """The caller's key, or the HTTPException (401/403/429) to answer with."""
        key = self.key(credentials)
        if key is None:
            raise HTTPException(
                401, "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        if not key.allows(scope):
            raise HTTPException(403, f"this API key lacks the {scope!r} scope")
        wait = self.limiter.wait_s(key)
        if wait > 0:
            raise HTTPException(
                429, "rate limit exceeded for this API key",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )  # fmt: skip
        return key


def allowed_origins() -> frozenset[str]:
    raw = os.environ.get(ORIGINS_ENV, "")
    return frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def origin_ok(headers, allowed: frozenset[str]) -> bool:
    origin = headers.get("origin")
    return origin is None or origin.rstrip("/") in allowed


class Denied(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Access:
    broadcast: bool  # the events that target no user (a key with the `events` scope)
    user_id: str | None  # this user's targeted events (an event token bound to them)

    def visible(self, event) -> bool:
        return (self.broadcast and event.user_id is None) or (
            self.user_id is not None and event.user_id == self.user_id
        )


def credentials_of(headers) -> HTTPAuthorizationCredentials | None:
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=value.strip())


def stream_access(guard: Guard, headers, token: str | None, user_id: str | None) -> Access:
    """Who may see which events on a stream, or Denied (401, 403, 429) and why."""
    if not origin_ok(headers, allowed_origins()):
        raise Denied(403, f"origin not allowed (set {ORIGINS_ENV})")
    key = guard.key(credentials_of(headers))
    user = verify_token(token) if token else None
    if token and user is None:
        raise Denied(401, "invalid or expired event token")
    if user_id is not None and user_id != user:
        raise Denied(403, "user_id needs an event token bound to that user (?token=)")
    if key is None and user is None:
        raise Denied(401, "an API key with the 'events' scope or an event token is required")
    if key is not None:
        if not key.allows("events"):
            raise Denied(403, "this API key lacks the 'events' scope")
        if guard.limiter.wait_s(key) > 0:
            raise Denied(429, "rate limit exceeded for this API key")
    return Access(broadcast=key is not None, user_id=user)


class BodyLimit:
    """Pure ASGI: bodies over `max_bytes` get 413, bodies slower than `timeout_s` get 408."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            return await _reply(send, 400, "invalid Content-Length")
        if length is not None and int(length) > self.max_bytes:
            return await _reply(send, 413, f"request body over {self.max_bytes} bytes")
        chunks, size, deadline = [], 0, time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return await _reply(send, 408, f"request body not received in {self.timeout_s:g} s")
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await _reply(send, 413, f"request body over {self.max_bytes} bytes")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
