"""`clipflow serve`: the thin scoring API for apps, and the pipeline's events live.

Endpoints (OpenAPI at /openapi.json, docs at /docs):
- `GET /v1/clips/{clip_id}/score?user_id=`: the score that serves this user (experiment
  routing, precomputed or computed: models/serving/scorer.py), with the variant and model version.
- `POST /v1/score` `{"clip_ids": [...], "user_id": ...}`: up to 1,000 clips at once.
- `GET /healthz` (open): `ok`, `down` or `not configured` for Redis and the model
  registry, nothing more; 503 unless both are ok.
- `GET /metrics` (scope `metrics`): Prometheus text: requests by endpoint and status, latency
  histogram, the model version served per alias. Every response carries
  `Server-Timing: app;dur=<ms>`.
- `POST /v1/event-tokens` `{"user_id", "ttl_s"}` (scope `tokens`): a token bound to one user
  for the event streams, minted by an app's backend for that user's browser.
- `GET /v1/events` (Server-Sent Events; `Last-Event-ID` resumes from the Redis Stream) and
  `WS /v1/ws` (`?token=` for a user's targeted events): live events from
  `models/integrations/events.py`, heartbeats every `heartbeat_s`.

Every endpoint but `/healthz` needs `Authorization: Bearer <API key>` with its scope
(`score` for the scores): pipelines/serve/security.py has the rules (401, 403, 429, 413,
408, the `Origin` allowlist of the streams).

Bad input is a 4xx with a JSON body `{"detail": ...}`: a malformed clip id or user id
(422), an unknown clip (404), a batch over 1,000 ids (422). Everything reads the same
environment as the pipeline (CLIPFLOW_HOME, CLIPFLOW_REDIS, MLFLOW_TRACKING_URI,
CLIPFLOW_LANDING_DIR for the experiments).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import asynccontextmanager, suppress
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request, Security, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from models.core.names import CHAMPION
from models.serving.api_keys import ApiKey, ApiKeyError, KeyStore, db_path, mint_token
from models.serving.scorer import ModelUnavailable
from pipelines.serve.security import BodyLimit, Denied, Guard, bearer, stream_access

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
READY_RETRY_S = 5.0  # how often a scorer that could not start is tried again
_log = logging.getLogger("clipflow.serve")
MAX_BATCH = 1000
_ID = re.compile(ID_PATTERN)


class ScoreOut(BaseModel):
    clip_id: str
    score: float = Field(description="predicted quality score, 0-100")
    model_version: str
    source: str = Field(description="online (precomputed by the pipeline) or computed")
    score_low: float | None = Field(
        default=None, description="the prediction interval's lower bound (null: none known)"
    )
    score_high: float | None = Field(default=None, description="its upper bound")
    interval_level: float | None = Field(
        default=None, description="its level (0.8: the label falls inside 80% of the time)"
    )


class Routed(BaseModel):
    user_id: str | None
    experiment_id: str | None
    variant: str | None
    alias: str
    fallback: str | None = Field(
        default=None, description="why the variant's own alias does not serve (it is not set)"
    )


class ClipScore(Routed, ScoreOut):
    pass


class BatchIn(BaseModel):
    clip_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)


class BatchOut(Routed):
    scores: list[ScoreOut]
    unknown: list[str]


class TokenIn(BaseModel):
    user_id: str = Field(pattern=ID_PATTERN)
    ttl_s: int = Field(default=3600, ge=1, le=86_400)


class TokenOut(BaseModel):
    token: str
    user_id: str
    expires_at: int = Field(description="unix seconds")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def _scope(name: str):
    async def check(request: Request, credentials: Credentials) -> ApiKey:  # async: no thread
        return request.app.state.guard.check(credentials, name)

    return check


Score = Annotated[ApiKey, Depends(_scope("score"))]
Metrics = Annotated[ApiKey, Depends(_scope("metrics"))]
Tokens = Annotated[ApiKey, Depends(_scope("tokens"))]


def create_app(
    scorer=None, redis_url: str | None = None, heartbeat_s: float = 15.0,
    keys: KeyStore | None = None, auth: bool = True,
) -> FastAPI:  # fmt: skip
    """The app; `scorer` (models.serving.scorer.Scorer), the Redis connection string and the
    API keys (`$CLIPFLOW_HOME/api_keys.db`) default to the environment's (when it starts).
    `auth=False` (the benchmark's baseline only: no command or variable sets it) lets every
    request in as an unlimited admin."""
    registry = CollectorRegistry()
    requests = Counter("clipflow_requests", "Requests", ["endpoint", "status"], registry=registry)
    latency = Histogram(
        "clipflow_request_seconds", "Latency", ["endpoint"], registry=registry,
        buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    )  # fmt: skip
    served = Gauge("clipflow_model_version", "Model version served", ["alias"], registry=registry)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import gc

        from models.core import settings

        settings.quiet_telemetry()
        s = settings.current()
        state["redis_url"] = redis_url or s.redis
        state.update(settings=s, scorer=scorer, retry_at=0.0, missing=None)
        if scorer is None:
            await _ready()  # a home the pipeline has not run on yet: start, answer 503
        state["guard"] = app.state.guard = Guard(keys or KeyStore(db_path(s.home)), open_=not auth)
        gc.freeze()  # Feast's import leaves ~200k objects; keep full GC passes out of p99
        yield

    app = FastAPI(title="clipflow scoring API", version="1", lifespan=lifespan)

    app.add_middleware(BodyLimit)
    app.add_middleware(_Timing, requests=requests, latency=latency)

    async def _ready():
        """The scorer, built on first need and retried every READY_RETRY_S while the home
        lacks what it needs (no Feast registry, feature service or model yet)."""
        if state["scorer"] is None and time.monotonic() >= state["retry_at"]:
            state["retry_at"] = time.monotonic() + READY_RETRY_S
            try:
                built = await asyncio.to_thread(_default_scorer, state["settings"])
                if await asyncio.to_thread(built.model, CHAMPION) is None:  # off the loop
                    raise LookupError("no champion")
                state["scorer"], state["missing"] = built, None
            except Exception as e:  # noqa: BLE001 - named in the 503, logged here in full
                state["missing"] = _missing(e)
                _log.warning("scorer not ready: %s", state["missing"], exc_info=True)
        return state["scorer"]

    def _not_ready() -> JSONResponse:
        detail = f"not ready: {state['missing'] or 'the scorer is starting'}"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})

    async def _routed_scores(clip_ids: list[str], user_id: str | None):
        """(routing fields, one score dict or None per id), or a 503 response when no model
        can serve or the online store does not answer. The registry (only when a re-check is
        due) and Redis are asked off the event loop, each call bounded by its client's
        timeout: a hung Redis or registry never freezes the other endpoints."""
        scorer = state["scorer"]
        try:
            for alias in {scorer.route(user_id).alias, CHAMPION}:
                if scorer.due(alias):
                    await asyncio.to_thread(scorer.model, alias)
            route, got = await asyncio.to_thread(scorer.scores, clip_ids, user_id)
        except ModelUnavailable as e:
            detail = f"no model can serve: {e}"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})
        except (RedisError, OSError) as e:  # redis-py's errors are not the builtin ones
            _log.warning("online store unavailable: %s", type(e).__name__, exc_info=True)
            detail = f"online store unavailable ({type(e).__name__}): try again shortly"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})
        for alias, version in scorer.versions().items():
            served.labels(alias).set(float(version))
        routed = {
            "user_id": user_id, "experiment_id": route.experiment_id,
            "variant": route.variant, "alias": route.alias, "fallback": route.fallback,
        }  # fmt: skip
        return routed, got

    @app.get("/v1/clips/{clip_id}/score", response_model=ClipScore)
    async def clip_score(
        _: Score,
        clip_id: str = Path(pattern=ID_PATTERN),
        user_id: str | None = Query(default=None, pattern=ID_PATTERN),
    ):
        # async and unvalidated on the way out (the model documents it); the lookup itself
        # runs in a worker thread (_routed_scores)
        if state["scorer"] is None and await _ready() is None:
            return _not_ready()
        answer = await _routed_scores([clip_id], user_id)
        if isinstance(answer, JSONResponse):
            return answer
        routed, (got,) = answer
        if got is None:
            return JSONResponse({"detail": f"unknown clip {clip_id!r}"}, status_code=404)
        return JSONResponse({**routed, **got})

    @app.post("/v1/score", response_model=BatchOut)
    async def batch_score(body: BatchIn, _: Score):
        bad = [c for c in body.clip_ids if not _ID.fullmatch(c)]
        if bad:
            return JSONResponse({"detail": f"malformed clip ids: {bad[:10]}"}, status_code=422)
        if state["scorer"] is None and await _ready() is None:
            return _not_ready()
        answer = await _routed_scores(body.clip_ids, body.user_id)
        if isinstance(answer, JSONResponse):
            return answer
        routed, got = answer
        unknown = [c for c, g in zip(body.clip_ids, got, strict=True) if g is None]
        scores = [g for g in got if g is not None]
        return JSONResponse({**routed, "scores": scores, "unknown": unknown})

    @app.get("/healthz")
    def healthz():
        checks = {"redis": _ping_redis(state["redis_url"]), "registry": _ping_registry(state)}
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(_: Metrics):
        return PlainTextResponse(generate_latest(registry).decode())

    @app.post("/v1/event-tokens", response_model=TokenOut)
    async def event_token(body: TokenIn, _: Tokens):
        try:
            token, exp = mint_token(body.user_id, body.ttl_s)
        except ApiKeyError as e:
            return JSONResponse({"detail": str(e)}, status_code=503)
        return JSONResponse({"token": token, "user_id": body.user_id, "expires_at": exp})

    @app.get("/v1/events")
    async def events(
        request: Request,
        _credentials: Credentials,  # declares the scheme in OpenAPI; checked below
        last_event_id: str | None = Query(default=None),
        token: str | None = Query(default=None, max_length=1024),
    ):
        from pipelines.serve.live import sse_stream

        try:
            access = stream_access(state["guard"], request.headers, token, None)
        except Denied as e:
            return _denied(e.status, e.detail)
        if not state["redis_url"]:
            return JSONResponse({"detail": "events need CLIPFLOW_REDIS"}, status_code=503)
        resume = request.headers.get("last-event-id") or last_event_id
        return StreamingResponse(
            sse_stream(state["redis_url"], resume, heartbeat_s, request.is_disconnected, access),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.websocket("/v1/ws")
    async def ws(websocket: WebSocket, user_id: str | None = None, token: str | None = None):
        from pipelines.serve.live import ws_stream

        try:
            access = stream_access(state["guard"], websocket.headers, token, user_id)
        except Denied as e:  # an HTTP answer to the upgrade, before any accept
            await websocket.send_denial_response(_denied(e.status, e.detail))
            return
        await websocket.accept()
        if not state["redis_url"]:
            await websocket.close(code=1011, reason="events need CLIPFLOW_REDIS")
            return
        with suppress(WebSocketDisconnect, asyncio.CancelledError):
            await ws_stream(websocket, state["redis_url"], access, heartbeat_s)

    return app


class _Timing:
    """Pure ASGI middleware: request counts, latency histogram, `Server-Timing` header."""

    def __init__(self, app, requests, latency):
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                ms = 1000 * (time.perf_counter() - t0)
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.requests.labels(endpoint, str(status[0])).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - t0)


def _default_scorer(s):
    from feature_repo.config import feature_store
    from models.experiments.config import load_experiments
    from models.serving.scorer import Scorer

    experiments, _ = load_experiments(s.landing_dir / "experiments" / "experiments.yaml")
    return Scorer(feature_store(s), s.mlflow_uri, experiments)


def _denied(status: int, detail: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# /healthz is open: it says ok, down or not configured, never why (no error text, no hosts)
def _ping_redis(url: str | None) -> str:
    if not url:
        return "not configured"
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from models.core.redis_url import ping, redis_client

    try:  # one attempt: redis-py's default 3 retries made a down Redis answer in 2-5 s
        with redis_client(url, socket_timeout=1, socket_connect_timeout=1,
                          retry=Retry(NoBackoff(), 0)) as client:  # fmt: skip
            ping(client)  # every node of a cluster
        return "ok"
    except Exception:  # noqa: BLE001 - any failure is "down"; the reason stays inside
        return "down"


def _missing(e: Exception) -> str:
    """What a home lacks, said without paths or hosts (the log has the traceback)."""
    from feast.errors import FeastObjectNotFoundException

    if isinstance(e, FeastObjectNotFoundException):
        return "the feature store has no clipflow features yet: run the pipeline (clipflow run)"
    if isinstance(e, LookupError):  # no version holds the champion alias
        return "no champion model yet: run the pipeline until a model is registered"
    return f"the scorer could not start ({type(e).__name__}); the server log says why"


def _ping_registry(state: dict) -> str:
    if state["scorer"] is None:
        return "not ready"
    return state["scorer"].registry_status()  # asked now: never "ok" from a cache
