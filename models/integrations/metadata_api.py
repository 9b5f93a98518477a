"""The integration hub's video metadata API: a polite client (Dagster-free; the resource
`assets.resources.VideoMetadataResource` configures one per run).

The API (JSON over HTTPS, API-key auth with `Authorization: Bearer <key>`):

| request | answer |
|---|---|
| `GET {base_url}/health` | 200 when the service is up |
| `GET {base_url}/v1/videos?ids=a,b,c` (at most `batch_size` ids) | 200 `{"items": [{"video_id", "title", "channel", "view_count", "like_count"}, ...], "missing": [ids it does not know]}` |

Errors are an HTTP status with a JSON `{"error": "..."}` body where the server has one.
The client sends every request through one token bucket per resource instance (capacity
1, refilled at `requests_per_second`, shared by threads), with a timeout on every request.
429, 5xx, connection errors and timeouts are retried up to `max_retries` times, waiting
what `Retry-After` asks (seconds or an HTTP date) or else exponential backoff with full
jitter capped at `max_backoff_s`; the wait holds the whole client, not only the call that
failed. A `Retry-After` beyond the cap fails the call at once rather than coming back early.
401/403 raise `MetadataAuthError` (every call would fail the same way); other 4xx are not
retried. `fetch` never raises for a failed batch: its ids come back as failures with the
reason, and ids the API reports missing come back as "not found".

Outbound guard (models/integrations/outbound.py): the session refuses a `base_url` whose
host is or resolves to a loopback, private, link-local, metadata or other internal address
(unless in `$CLIPFLOW_OUTBOUND_ALLOW`), checked on the connected address too; it never
follows a redirect (a 3xx fails the call naming the target, not retried), so the Bearer
key only ever goes to `base_url`'s host; a body over 1 MiB fails the batch; each request
has a total deadline of three times `timeout_s` (a slow drip fails like a timeout).

Configuration. The key is deployment configuration only (`CLIPFLOW_METADATA_API_KEY`, read
by the Dagster resource, never run config), and it is sent only to `CLIPFLOW_METADATA_URL`
(assets/resources.py). `base_url` empty means "read `CLIPFLOW_METADATA_URL` when the
resource is used", and no URL at all means "not configured": the asset records that and
does nothing. Why not
`VideoMetadataResource(base_url=dg.EnvVar(...))`: in Dagster 1.13 an unset `EnvVar` lets
`Definitions` load but fails the launch of every run whose job includes the resource
(`DagsterInvalidConfigError: ... You have attempted to fetch the environment variable
"CLIPFLOW_METADATA_URL" which is not set`), so an optional API would break `nightly_job`
wherever it is not set up. Read at run time, the key never appears in run config or the UI,
as with `FeastResource`. In `pipelines/definitions.py`:

    "metadata_api": VideoMetadataResource(),
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

from models.integrations.outbound import OutboundError
from models.integrations.outbound_http import guarded_session, redirect_target
from models.integrations.retry import full_jitter, retry_after_s

URL_ENV = "CLIPFLOW_METADATA_URL"
KEY_ENV = "CLIPFLOW_METADATA_API_KEY"
NOT_FOUND = "not found"
VIDEOS_PATH = "/v1/videos"
MAX_RESPONSE_BYTES = 1024 * 1024


class MetadataApiError(Exception):
    """A call that failed for good (after retries, or not worth retrying)."""


class MetadataAuthError(MetadataApiError):
    """The API refused the key: every call would fail, so the run should stop."""


class TokenBucket:
    """Spaces calls `1 / rate` seconds apart across threads (a token bucket of capacity 1)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def defer(self, seconds: float) -> None:
        """No call starts in the next `seconds` (a server's Retry-After applies to all)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


@dataclass
class MetadataClient:
    """Source-video metadata (title, channel, view and like counts) from the integration
    hub. `api_key` is what the caller (the resource) decided may go to `base_url`: empty
    sends no key; no URL at all: not configured. `log` receives the retry notes."""

    base_url: str = ""
    api_key: str = ""
    timeout_s: float = 5.0
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    requests_per_second: float = 10.0
    batch_size: int = 50
    log: Callable[[str], None] = print

    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _bucket: TokenBucket | None = field(default=None, init=False, repr=False)
    _session: requests.Session | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.strip().rstrip("/")

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session = self._bucket = None

    def health(self) -> str | None:
        """None when the API answers its health check, else why not."""
        if not self.configured:
            return f"not configured: {URL_ENV} is not set"
        try:
            self._get("/health")
        except MetadataApiError as e:
            return str(e)
        return None

    def fetch(self, video_ids: Iterable[str]) -> tuple[list[dict], dict[str, str]]:
        """(rows, failures) for `video_ids`: one row per video found, with `fetched_at`
        (UTC); failures maps each other id to why (a batch's error, or "not found").
        Raises only `MetadataAuthError`."""
        ids = list(dict.fromkeys(str(v) for v in video_ids if v))
        rows: list[dict] = []
        failures: dict[str, str] = {}
        for i in range(0, len(ids), max(1, self.batch_size)):
            batch = ids[i : i + max(1, self.batch_size)]
            try:
                body = self._get(VIDEOS_PATH, {"ids": ",".join(batch)}).json()
                found, failed = _parse(body, batch)
            except MetadataAuthError:
                raise
            except (MetadataApiError, ValueError) as e:  # ValueError: a body that is not JSON
                failures.update(dict.fromkeys(batch, _short(e)))
                continue
            fetched_at = datetime.now(UTC)
            rows += [{**r, "fetched_at": fetched_at} for r in found]
            failures.update(failed)
        return rows, failures

    # -- transport ---------------------------------------------------------------------
    def _client(self) -> tuple[requests.Session, TokenBucket]:
        with self._lock:
            if self._session is None:
                s = guarded_session(
                    "video metadata API url",
                    max_bytes=MAX_RESPONSE_BYTES,
                    deadline_s=3 * self.timeout_s,
                )
                s.headers["Accept"] = "application/json"
                s.headers["User-Agent"] = "clipflow-video-metadata"
                key = self.api_key
                if key:
                    s.headers["Authorization"] = f"Bearer {key}"
                self._session = s
                self._bucket = TokenBucket(self.requests_per_second)
            return self._session, self._bucket

    def _get(self, path: str, params: dict | None = None) -> requests.Response:
        session, bucket = self._client()
        for attempt in range(self.max_retries + 1):
            bucket.acquire()
            try:
                resp = session.get(self.url + path, params=params, timeout=self.timeout_s)
            except _TRANSIENT as e:  # a DeadlineExceeded is a Timeout: retried
                reason, wait = _short(f"{type(e).__name__}: {e}"), None
            except OutboundError as e:  # refused address, oversized body: not retried
                raise MetadataApiError(_short(e)) from None
            else:
                if (target := redirect_target(resp)) is not None:
                    raise MetadataApiError(f"{_status(resp)}; redirect to {target} not followed")
                if resp.status_code < 400:
                    return resp
                self._raise_unless_retryable(resp)
                reason = _status(resp)
                wait = retry_after_s(resp.headers.get("Retry-After"))
            if attempt == self.max_retries:
                break
            self._pause(bucket, attempt, reason, wait)
        raise MetadataApiError(f"{reason} (gave up after {self.max_retries + 1} attempts)")

    def _raise_unless_retryable(self, resp: requests.Response) -> None:
        if resp.status_code in (401, 403):
            has_key = bool(self.api_key)
            raise MetadataAuthError(
                f"the video metadata API refused the API key ({_status(resp)}): "
                + (f"check {KEY_ENV}" if has_key else f"{KEY_ENV} is not set")
            )
        if resp.status_code != 429 and resp.status_code < 500:
            raise MetadataApiError(_status(resp))

    def _pause(self, bucket: TokenBucket, attempt: int, reason: str, wait: float | None) -> None:
        """Hold every call of this client before retry `attempt + 1`: for what Retry-After
        asks, else exponential backoff with full jitter."""
        if wait is not None and wait > self.max_backoff_s:
            raise MetadataApiError(f"{reason}; Retry-After {wait:.0f} s exceeds the cap")
        if wait is None:
            wait = full_jitter(attempt, self.backoff_s, self.max_backoff_s)
        self.log(
            f"video metadata API: {reason}; retry {attempt + 1}/{self.max_retries} in {wait:.2f} s"
        )
        bucket.defer(wait)


def _parse(body: object, batch: list[str]) -> tuple[list[dict], dict[str, str]]:
    """Rows of the batch's found videos and the reasons for the others."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise MetadataApiError(f"invalid response: expected an object with items, got {body!r:.80}")
    wanted, rows, failed = set(batch), [], {}
    for item in body["items"]:
        vid = item.get("video_id") if isinstance(item, dict) else None
        if vid not in wanted:
            continue
        try:
            rows.append(
                {
                    "video_id": vid,
                    "title": _opt(item.get("title"), str),
                    "channel": _opt(item.get("channel"), str),
                    "view_count": _opt(item.get("view_count"), int),
                    "like_count": _opt(item.get("like_count"), int),
                }
            )
            wanted.discard(vid)
        except (TypeError, ValueError) as e:
            failed[vid] = f"invalid item: {e}"
    missing = {str(m) for m in body.get("missing") or []}
    for vid in batch:
        if vid in wanted and vid not in failed:
            failed[vid] = NOT_FOUND if vid in missing else "absent from the response"
    return rows, failed


def _opt(value, kind):
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or float(value) != int(value)):
        raise ValueError(f"{value!r} is not an integer")
    return kind(value)


_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _status(resp: requests.Response) -> str:
    return f"HTTP {resp.status_code}: {_message(resp)}"


def _message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and (body.get("error") or body.get("message")):
            return _short(body.get("error") or body.get("message"))
    except ValueError:
        pass
    return _short(resp.text or resp.reason or "")


def _short(value: object, limit: int = 300) -> str:
    s = " ".join(str(value).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."
