"""The transport of the outbound guard (models/integrations/outbound.py holds the policy).

`guarded_session(field, ...)` is a `requests.Session` that mounts the guard for
http:// and https://, ignores proxy/netrc settings from the environment (a proxy would
hide the target from the check; `REQUESTS_CA_BUNDLE` is still honoured), never follows a
redirect (`redirect_target(resp)` names the host a 3xx points to; callers report it as a
failure), reads each body in bounded chunks and refuses one longer than `max_bytes`
(`ResponseTooLarge`; with `truncate=True` the body is cut there and the connection
dropped, for callers that only need the status), and holds each request (connect,
headers, body) to a total `deadline_s`: a watchdog shuts the socket down then
(`DeadlineExceeded`, a `requests.Timeout`), so a slow-drip server cannot keep it past the
deadline whatever the per-read timeouts. Refusals raise `OutboundRefused` whose message
names the field, the URL's host and the range, e.g. "webhook url: 127.0.0.1 is loopback
(127.0.0.0/8); allowlist it in CLIPFLOW_OUTBOUND_ALLOW to allow".

The peer check and the watchdog live in urllib3 connection classes that read the current
request's policy from a thread-local set by `GuardedAdapter.send` (requests and urllib3
run a request in the calling thread); a connection made outside a guarded request is
refused.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from models.integrations.outbound import (
    Allowlist,
    DeadlineExceeded,
    OutboundRefused,
    ResponseTooLarge,
    allowlist,
    check_address,
    check_url,
)

_CHUNK = 16_384


class _PeerRefused(Exception):  # noqa: N818 -- not an OSError, so urllib3 lets it through
    pass


class _Watchdog:
    """Shuts down the request's sockets at the deadline (a blocked read then returns)."""

    def __init__(self, deadline_s: float):
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(deadline_s, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):  # the plain socket's shutdown, also under TLS (same descriptor)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@dataclass
class _Request:  # what the connection of the current request checks (thread-local)
    field: str
    allow: Allowlist
    watchdog: _Watchdog


_current = threading.local()


class _GuardedConnectionMixin:
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        req: _Request | None = getattr(_current, "request", None)
        try:
            if req is None:
                raise OutboundRefused("outbound connection outside a guarded request")
            req.watchdog.watch(sock)
            peer = str(sock.getpeername()[0])
            check_address(req.field, self.host, self.port, peer, req.allow)
        except OutboundRefused as e:
            sock.close()
            raise _PeerRefused(str(e)) from None
        return sock

    def request(self, *args, **kwargs):
        req: _Request | None = getattr(_current, "request", None)
        if req is not None:  # a kept-alive connection: its socket is watched too
            req.watchdog.watch(self.sock)
        return super().request(*args, **kwargs)


class _HTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _HTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """Checks the URL and the connected peer, bounds the body and the total time."""

    def __init__(self, field: str, *, max_bytes: int, deadline_s: float, truncate: bool = False):
        self.field, self.max_bytes, self.deadline_s = field, max_bytes, deadline_s
        self.truncate = truncate
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        allow = allowlist()  # read at send time: the operator may have changed it
        check_url(request.url, self.field, allow=allow)
        with _Watchdog(self.deadline_s) as watchdog:
            _current.request = _Request(self.field, allow, watchdog)
            try:
                resp = super().send(request, True, timeout, verify, cert, proxies={})
                resp._content = self._read(resp)  # what `resp.content` would hold
            except _PeerRefused as e:
                raise OutboundRefused(str(e), request=request) from None
            except Exception as e:
                if watchdog.fired:
                    raise self._late(request) from e
                raise
            finally:
                _current.request = None
            if watchdog.fired:
                resp.close()
                raise self._late(request)
        return resp

    def _late(self, request) -> DeadlineExceeded:
        host = urlsplit(request.url).hostname
        return DeadlineExceeded(
            f"{self.field}: {host} did not answer within the {self.deadline_s:g} s deadline",
            request=request,
        )

    def _read(self, resp: requests.Response) -> bytes:
        declared = resp.headers.get("content-length", "")
        too_long = declared.isdigit() and int(declared) > self.max_bytes
        body = bytearray()
        if not too_long or self.truncate:
            for chunk in resp.iter_content(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    too_long = True
                    break
        if not too_long:
            return bytes(body)
        resp.close()  # drop the connection: the rest is never read
        if self.truncate:
            return bytes(body[: self.max_bytes])
        raise ResponseTooLarge(
            f"{self.field}: the response of {urlsplit(resp.url).hostname} is over"
            f" {self.max_bytes} bytes; stopped reading",
            response=resp,
        )


def redirect_target(resp: requests.Response) -> str | None:
    """host[:port] a 3xx answer points to (redirects are never followed), else None."""
    if not 300 <= resp.status_code < 400:
        return None
    location = resp.headers.get("location")
    if not location:
        return "(no Location)"
    parts = urlsplit(urljoin(resp.url, location))
    return parts.netloc.rpartition("@")[2] or "(no host)"


class _NoRedirectSession(requests.Session):
    def send(self, request, **kwargs):
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)


def guarded_session(
    field: str, *, max_bytes: int, deadline_s: float, truncate: bool = False
) -> requests.Session:
    """A session whose every request goes through the guard (see the module docstring);
    `field` names the setting in error messages ("webhook url")."""
    session = _NoRedirectSession()
    session.trust_env = False  # no proxies or netrc from the environment
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or True
    adapter = GuardedAdapter(field, max_bytes=max_bytes, deadline_s=deadline_s, truncate=truncate)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
