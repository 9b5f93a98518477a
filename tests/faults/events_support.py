"""Real parts for the event fault tests (#16, case 3): a `redis-server` the test kills and
restarts, and a webhook receiver on loopback that checks every Standard Webhooks signature
itself (written here, independent of models.integrations.webhook_signing) and records
each accepted delivery's `webhook-id`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import redis
from support import free_port

SECRET_ENV = "CLIPFLOW_FAULT_WEBHOOK_SECRET"
SECRET = "whsec_" + base64.b64encode(b"clipflow fault test webhook key!").decode()


class RedisProc:
    """A redis-server on a free loopback port, with an append-only file (fsync always) so
    the stream survives a `kill -9` as it would in production."""

    def __init__(self, tmp: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is needed (apt-get install redis-server)")
        self.binary, self.dir, self.port, self.proc = binary, tmp, free_port(), None
        tmp.mkdir(parents=True, exist_ok=True)

    def start(self) -> RedisProc:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "no redis-server"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


def spec_check(headers, body: bytes, secret: str = SECRET) -> int:
    """Standard Webhooks 1.0, receiver side: 200 if a v1 signature matches, else 400/401."""
    msg_id, stamp, signatures = (
        headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and signatures and stamp.isdigit()):
        return 400
    if abs(time.time() - int(stamp)) > 300:
        return 401
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    return 200 if any(hmac.compare_digest(s, expected) for s in signatures.split(" ")) else 401


class Receiver:
    """A webhook receiver on loopback: every POST's (status, webhook-id) in `attempts`, each
    accepted body in `accepted`; waits `delay_s` per request (a slow receiver)."""

    def __init__(self, delay_s: float = 0.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/clipflow"
        self.delay_s = delay_s
        self.attempts: list[tuple[int, str | None]] = []
        self.accepted: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(receiver.delay_s)
                code = spec_check(self.headers, body)
                with receiver._lock:
                    receiver.attempts.append((code, self.headers.get("webhook-id")))
                    if code == 200:
                        receiver.accepted.append(json.loads(body))
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def subscribe(home: Path, url: str, types=("*",), secret_env: str = SECRET_ENV) -> Path:
    """A subscribers file with one subscriber `receiver` at `url`; its path."""
    path = home / "hooks" / "subscribers.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"name": "receiver", "url": url, "events": list(types), "secret_env": secret_env}
    path.write_text(json.dumps({"subscribers": [entry]}))  # JSON is YAML
    return path


def tick(instance, cursor: str | None, home: Path, **policy) -> tuple[str, str | None]:
    """One `webhook_sensor` evaluation on `home`: (its skip message, the cursor after)."""
    from assets.resources import NotifierResource, WebhooksResource
    from pipelines.sensors.webhooks import webhook_sensor

    resources = {
        "webhooks": WebhooksResource(home=str(home), **policy),
        "notifier": NotifierResource(home=str(home)),
    }
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = webhook_sensor(context)
    assert isinstance(result, dg.SkipReason)
    return result.skip_message, context.cursor
