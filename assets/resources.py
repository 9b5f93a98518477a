"""Dagster resources: every external system the assets touch, configured at launch.

Run config (the launchpad) may change the fields below; each is checked when the run
builds the resource, before anything uses it, and a bad value fails the run with an error
naming the field: paths with `settings.check_path` (one line, absolute, no `..`, files
with their suffix), the memory limit as a size, the MLflow store as a local SQLite file,
the metadata API as an http(s) URL without credentials. Secrets, and the hosts they are
sent to, are not run config: the metadata API key (`CLIPFLOW_METADATA_API_KEY`) is sent
only to `CLIPFLOW_METADATA_URL`, and Redis (`CLIPFLOW_REDIS`, which may hold a password)
and MLflow servers come from the environment only.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator

from models.core import settings
from models.core.redis_url import ping, redis_client
from models.core.warehouse import Warehouse, check_memory_limit
from models.integrations import events, outbox
from models.integrations.metadata_api import KEY_ENV, URL_ENV, MetadataClient
from models.integrations.webhooks import RetryPolicy


def _checked(check, value, *args):
    """`check(value, *args)` on the value as given (validators run before pydantic's own);
    an `EnvVar` is checked once the run has resolved it (Dagster builds the resource again
    from the resolved config, validators included), and a non-string is pydantic's to refuse."""
    if isinstance(value, dg.EnvVar) or not isinstance(value, str):
        return value
    return check(value, *args)


class HomeResource(dg.ConfigurableResource):
    """A resource whose paths derive from one clipflow home: `home` empty means
    `CLIPFLOW_HOME`, resolved when a run starts (never at import). `clipflow_resources`
    builds every resource on the same home."""

    home: str = ""

    @field_validator("home", mode="before")
    @classmethod
    def _home_is_a_path(cls, value: str) -> str:
        return _checked(settings.check_path, value)

    def settings(self) -> settings.Settings:
        return settings.current(self.home or None)

    @property
    def home_path(self) -> Path:
        return self.settings().home


class WarehouseResource(HomeResource):
    """The Parquet warehouse under `<home>/warehouse`, queried with DuckDB (the one table
    seam: models/core/warehouse.py)."""

    threads: int = Field(default=2, ge=1, le=1024)
    memory_limit: str = "4GB"  # a size such as 4GB or 512MiB; empty: DuckDB's default
    lock_wait_s: float = Field(default=600.0, ge=0, le=86_400)  # for another run's end

    _held: ExitStack | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """One writer per home: hold the warehouse's writer lock for the whole run
        (models/core/writer_lock.py), finishing what a crashed run left first."""
        from models.core.writer_lock import writer_lock

        run_id = context.run_id if context.dagster_run is not None else "no run"
        log = dg.get_dagster_logger()
        self._held = ExitStack()
        wh = self.get()  # Iceberg commits are safe among concurrent runs: a shared lock
        shared = bool(self.settings().warehouse_uri)
        lock = writer_lock(wh.root, f"run {run_id}", self.lock_wait_s, log.info, shared)
        for line in self._held.enter_context(lock):
            log.warning(f"warehouse recovery: {line}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_limit_is_a_size(cls, value: str) -> str:
        return _checked(check_memory_limit, value) if value else value

    def get(self) -> Warehouse:
        """The warehouse of this home (its `memory_limit` checked: a size such as 4GB)."""
        from models.core.iceberg import warehouse_for

        return warehouse_for(self.settings(), threads=self.threads, memory_limit=self.memory_limit)


class LandingResource(dg.ConfigurableResource):
    """The landing directory of docs/contract.md §1 (`CLIPFLOW_LANDING_DIR` when empty)."""

    landing_dir: str = ""

    @field_validator("landing_dir", mode="before")
    @classmethod
    def _landing_dir_is_a_path(cls, value: str) -> str:
        return _checked(settings.check_path, value)

    @property
    def path(self) -> Path:
        return (
            Path(self.landing_dir).resolve() if self.landing_dir else settings.current().landing_dir
        )


class FeastResource(HomeResource):
    """The Feast feature store of docs/contract.md §4 on this home, configured by
    `feature_repo.config` (the online store from `CLIPFLOW_REDIS`: the connection string,
    which may hold a password, never appears in run config or the UI)."""

    def store(self):
        from feature_repo.config import feature_store

        return feature_store(self.settings())

    def online_kind(self) -> str:
        return "redis" if self.settings().redis else "sqlite"

    def ping_online(self) -> str | None:
        """None when the online store answers, else why not (Redis only can be down)."""
        s = self.settings()
        if not s.redis:
            return None
        import redis

        try:
            with redis_client(s.redis, socket_timeout=2, socket_connect_timeout=2) as client:
                ping(client)  # every node of a cluster
            return None
        except (redis.RedisError, OSError, ValueError) as e:
            return f"Redis online store unreachable: {type(e).__name__}: {e}"


class MlflowResource(HomeResource):
    """The MLflow tracking and registry store (`MLFLOW_TRACKING_URI`, default a SQLite file
    under the home); empty `tracking_uri` means the environment's. Run config may name a
    local SQLite store only: a server's URI, with the credentials MLflow sends to it, is
    deployment config."""

    tracking_uri: str = ""

    @field_validator("tracking_uri", mode="before")
    @classmethod
    def _tracking_uri_is_local(cls, value: str) -> str:
        return _checked(settings.check_sqlite_uri, value)

    @property
    def uri(self) -> str:
        return self.tracking_uri or self.settings().mlflow_uri

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def artifact_location(self) -> str | None:
        """Where a new experiment keeps its artifacts: `CLIPFLOW_MLFLOW_ARTIFACTS` when set
        (object storage, `s3://bucket/prefix`), else `$CLIPFLOW_HOME/mlartifacts` for a
        database store other than SQLite (Postgres in production); None leaves it to the
        registry (`mlartifacts/` beside a SQLite file) or to an MLflow server (http)."""
        if self.settings().mlflow_artifacts:
            return self.settings().mlflow_artifacts
        if self.uri.startswith(("sqlite:", "http:", "https:", "databricks")):
            return None
        return (self.home_path / "mlartifacts").as_uri()


class NotifierResource(HomeResource):
    """Where alerts go: a WARNING log line (in the run's logs in the UI) and one JSON line
    appended to `alerts_file` (default `$CLIPFLOW_HOME/alerts/alerts.jsonl`), which a
    person can tail and a webhook or event publisher can follow."""

    alerts_file: str = ""  # an absolute path ending in .jsonl

    @field_validator("alerts_file", mode="before")
    @classmethod
    def _alerts_file_is_jsonl(cls, value: str) -> str:
        return _checked(settings.check_path, value, (".jsonl",))

    @property
    def path(self) -> Path:
        if self.alerts_file:
            return Path(self.alerts_file).resolve()
        return self.home_path / "alerts" / "alerts.jsonl"

    def notify(self, kind: str, message: str, **details) -> dict:
        import json
        from datetime import UTC, datetime

        event = {"kind": kind, "message": message, "at": datetime.now(UTC).isoformat(), **details}
        dg.get_dagster_logger().warning(f"ALERT {kind}: {message}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(event, default=str) + "\n")
        return event


class EventsResource(HomeResource):
    """The pipeline's events (models/integrations/events.py: a Redis Stream on `CLIPFLOW_REDIS`),
    which the API serves live and the webhook sensor delivers.

    `publish` writes the event to the home's outbox first (models/integrations/outbox.py),
    durably: a failed write fails the step, so an event is never lost with its step
    succeeding. Then it relays what the outbox holds; while Redis is down that waits, with
    a warning, and goes out at the next publish or `webhook_sensor` tick (an event bus
    outage does not fail a day's scoring). With no Redis configured it is a no-op. Redis
    is `CLIPFLOW_REDIS` only (a connection string may hold a password: never run config)."""

    _source: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._source = f"run {context.run_id}" if context.dagster_run is not None else ""

    def publish(
        self, type: str, data: dict, user_id: str | None = None, event_id: str | None = None
    ) -> str | None:
        """Record the event in the outbox and relay; its event id (None: events are off)."""
        connection = self.settings().redis
        if not connection:
            return None
        db = outbox.path(self.home_path)
        event_id = outbox.record(db, type, data, user_id, source=self._source, event_id=event_id)
        outbox.relay_to(db, connection, dg.get_dagster_logger().warning)
        return event_id


class WebhooksResource(HomeResource):
    """Webhook subscribers, the deliveries database and the retry policy.

    `subscribers_file` empty: `$CLIPFLOW_WEBHOOKS`, else `$CLIPFLOW_HOME/webhooks.yaml`;
    `db_file` empty: `$CLIPFLOW_HOME/webhooks.db`. The event stream is the Redis of
    `CLIPFLOW_REDIS` (a connection string that may hold a password: never in config)."""

    subscribers_file: str = ""  # an absolute path ending in .yaml or .yml
    db_file: str = ""  # an absolute path ending in .db, .sqlite or .sqlite3
    base_s: float = 2.0
    cap_s: float = 600.0
    max_attempts: int = 8
    timeout_s: float = 5.0

    @property
    def subscribers_path(self) -> Path:
        if self.subscribers_file:
            return Path(self.subscribers_file).resolve()
        return self.settings().webhooks_file or self.home_path / "webhooks.yaml"

    @property
    def db_path(self) -> Path:
        return Path(self.db_file).resolve() if self.db_file else self.home_path / "webhooks.db"

    @field_validator("subscribers_file", mode="before")
    @classmethod
    def _subscribers_file_is_yaml(cls, value: str) -> str:
        return _checked(settings.check_path, value, (".yaml", ".yml"))

    @field_validator("db_file", mode="before")
    @classmethod
    def _db_file_is_sqlite(cls, value: str) -> str:
        return _checked(settings.check_path, value, settings.SQLITE_SUFFIXES)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.base_s, self.cap_s, self.max_attempts, self.timeout_s)

    def event_stream(self):
        """A Redis client for the event stream, None when `CLIPFLOW_REDIS` is unset."""
        connection = self.settings().redis
        return events.client(connection) if connection else None

    @property
    def outbox_path(self) -> Path:
        return outbox.path(self.home_path)


class VideoMetadataResource(dg.ConfigurableResource):
    """The integration hub's video metadata API (models/integrations/metadata_api.py).

    Empty `base_url` means `CLIPFLOW_METADATA_URL`, read when the resource is used (an
    unset `dg.EnvVar` would fail the launch of every job using it, and the API is
    optional); no URL at all means "not configured". The key is deployment config only:
    `CLIPFLOW_METADATA_API_KEY`, sent only when the URL called is `CLIPFLOW_METADATA_URL`,
    so a `base_url` set at launch cannot carry it to another host."""

    base_url: str = ""  # an http(s) URL without credentials, query or fragment
    timeout_s: float = 5.0
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    requests_per_second: float = 10.0
    batch_size: int = 50

    _client: MetadataClient | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        return _checked(check_http_url, value)

    def client(self) -> MetadataClient:
        with self._lock:  # one client (one rate limiter) however many threads ask at once
            return self._client or self._build()

    def _build(self) -> MetadataClient:
        if self._client is None:
            tuning = self.model_dump(exclude={"base_url"})  # timeouts, retries...
            configured = settings.current().metadata_url
            url = self.base_url or configured
            key = os.environ.get(KEY_ENV, "")
            if key and _norm(url) != _norm(configured):
                dg.get_dagster_logger().warning(
                    f"{KEY_ENV} is sent only to {URL_ENV}: calling base_url without it"
                )
                key = ""
            log = dg.get_dagster_logger().info
            self._client = MetadataClient(base_url=url, api_key=key, log=log, **tuning)
        return self._client

    @property
    def url(self) -> str:
        return self.client().url

    @property
    def configured(self) -> bool:
        return self.client().configured

    def health(self) -> str | None:
        return self.client().health()

    def fetch(self, video_ids: Iterable[str]) -> tuple[list[dict], dict[str, str]]:
        return self.client().fetch(video_ids)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")  # blanks too: a URL has none


def check_http_url(value: str) -> str:
    """`value` if it is an http(s) URL with a host and no credentials, query or fragment
    (the client adds its own paths and parameters), else ValueError. Empty passes."""
    if value == "":
        return value
    if _CONTROL.search(value):
        raise ValueError(f"{value[:80]!r}: a blank or control character in a URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise ValueError(f"{value[:80]!r}: not a URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value[:80]!r}: expected an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError("credentials in a URL: a key is deployment config, never run config")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"{value[:80]!r}: a query or fragment in the API's base URL")
    return value


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


def clipflow_resources(home: str = "", landing_dir: str = "") -> dict[str, dg.ConfigurableResource]:
    """Every resource the assets take, on one home (empty: `CLIPFLOW_HOME` at run time)."""
    return {
        "warehouse": WarehouseResource(home=home),
        "landing": LandingResource(landing_dir=landing_dir),
        "feast": FeastResource(home=home),
        "mlflow": MlflowResource(home=home),
        "notifier": NotifierResource(home=home),
        "events": EventsResource(home=home),
        "webhooks": WebhooksResource(home=home),
        "metadata_api": VideoMetadataResource(),
    }
