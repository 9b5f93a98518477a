"""A fake of the integration hub's video metadata API: a real HTTP server on loopback.

    with FakeMetadataApi(api_key="k", fail_first=2, missing_ids={"v9"}) as api:
        # CLIPFLOW_METADATA_URL=api.url and CLIPFLOW_METADATA_API_KEY=k in the environment
        VideoMetadataResource(base_url=api.url).fetch(["v1", "v9"])
        api.requests  # what arrived: (monotonic time, path, query, Authorization header)

It listens on 127.0.0.1, which the client's outbound guard refuses: tests allowlist it
(`monkeypatch.setenv("CLIPFLOW_OUTBOUND_ALLOW", "127.0.0.1")`).

Every id it is asked about has made-up metadata, except `missing_ids`. Knobs, checked in
this order: `redirect_to` (302 to that base URL + the path, the way a hijacked or moved
API would answer), `api_key` (401 without `Bearer <key>`), `rate_limit` (429 with `Retry-After`
when more than N requests arrived within `window_s`), `fail_first` (the first K requests
answer 503), `delay_s` on the first `slow_requests` requests (to trip client timeouts),
`max_batch` (400 beyond it), `fail_ids` (500 for any batch holding one of them).
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    path: str
    ids: tuple[str, ...]
    authorization: str | None


def video(video_id: str) -> dict:
    """The metadata the fake holds for any id (deterministic)."""
    h = zlib.crc32(video_id.encode())
    return {
        "video_id": video_id,
        "title": f"Video {video_id}",
        "channel": f"channel-{h % 7}",
        "view_count": 1000 + h % 100_000,
        "like_count": h % 1000,
    }


class FakeMetadataApi:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        rate_limit: int | None = None,
        window_s: float = 1.0,
        retry_after: str = "1",
        fail_first: int = 0,
        slow_requests: int = 0,
        delay_s: float = 0.0,
        fail_ids: Iterable[str] = (),
        missing_ids: Iterable[str] = (),
        max_batch: int = 100,
        redirect_to: str | None = None,
    ):
        self.api_key = api_key
        self.rate_limit, self.window_s, self.retry_after = rate_limit, window_s, retry_after
        self.fail_first, self.slow_requests, self.delay_s = fail_first, slow_requests, delay_s
        self.fail_ids, self.missing_ids = set(fail_ids), set(missing_ids)
        self.max_batch, self.redirect_to = max_batch, redirect_to
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def times(self) -> list[float]:
        return [r.at for r in self.requests]

    def start(self) -> FakeMetadataApi:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()  # wakes slow handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeMetadataApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, path: str, query: str, authorization: str | None) -> tuple[int, dict, dict]:
        """(status, headers, body) for one request; records it first."""
        ids = tuple(i for i in ",".join(parse_qs(query).get("ids", [])).split(",") if i)
        with self._lock:
            now = time.monotonic()
            recent = sum(1 for r in self.requests if now - r.at < self.window_s)
            self.requests.append(Seen(now, path, ids, authorization))
            n = len(self.requests)
        if self.redirect_to is not None:
            return 302, {"Location": self.redirect_to + path}, {"error": "moved"}
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, {}, {"error": "invalid or missing API key"}
        if self.rate_limit is not None and recent >= self.rate_limit:
            return 429, {"Retry-After": self.retry_after}, {"error": "rate limit exceeded"}
        if n <= self.fail_first:
            return 503, {}, {"error": "service unavailable"}
        if n <= self.slow_requests:
            self._stopped.wait(self.delay_s)
        if path == "/health":
            return 200, {}, {"status": "ok"}
        if path != "/v1/videos":
            return 404, {}, {"error": f"no route {path}"}
        if not ids or len(ids) > self.max_batch:
            return 400, {}, {"error": f"ids: between 1 and {self.max_batch} ids"}
        if self.fail_ids & set(ids):
            return 500, {}, {"error": "internal error"}
        return (
            200,
            {},
            {
                "items": [video(i) for i in ids if i not in self.missing_ids],
                "missing": [i for i in ids if i in self.missing_ids],
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeMetadataApi

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out closed the socket: expected here


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        status, headers, body = self.server.fake.answer(
            parts.path, parts.query, self.headers.get("Authorization")
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:
        pass
