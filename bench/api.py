"""Benchmark of the scoring API: `api` (`clipflow serve` under load on loopback).

Set-up: a throwaway `redis-server` (or `CLIPFLOW_REDIS`), a fresh home with the Feast repo
applied, 10,000 clips (times `scale`, at least 200) with their features and their
precomputed champion scores online, a champion model (version 1) in a SQLite MLflow
store, and `clipflow serve` (one uvicorn process) started as a subprocess. The load
generator runs in this process (asyncio + httpx, keep-alive connections), so client and
server share the 2 cores, as an app beside the API would.

* single: `GET /v1/clips/{id}/score` open-loop at 200 requests/s for 10 s (times `scale`,
  at least 1 s), random clips; latency measured by the client (p50, p99). Target: p99 under
  10 ms. Floor: `Scorer.scores([id])` in-process (the same Feast lookup, no HTTP), p99.
* batch: `POST /v1/score` of 100 random clips, one at a time, 500 requests (times
  `scale`, at least 20); server-side latency from the `Server-Timing` header. Target: p99
  under 8 ms. Floor: `Scorer.scores(100 ids)` in-process, p99.
* saturation: 16 requests in flight (single score) for 5 s: requests/s (no target).

Authentication is on, as in production: the load sends `Authorization: Bearer` with a key
made by `clipflow api-keys create` (scope `score`, no rate limit). The same load then runs
against the same app started with `create_app(auth=False)` (no command offers that), and
its figures are reported beside (`*_noauth`): the cost of authentication.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.common import Record, log, peak_rss_mb
from bench.feast_env import feast_store as _feast_store
from bench.feast_env import free_port as _free_port
from bench.feast_env import redis_server
from bench.feature_data import make_clip_features

CLIPS, RATE, SECONDS, BATCH, BATCH_REQUESTS = 10_000, 200, 10.0, 100, 500
SINGLE_P99_MS, BATCH_P99_MS = 10.0, 8.0


def _setup(tmp: Path, redis, n_clips: int) -> tuple[str, list[str], object]:
    from bench.model import make_training_set
    from feature_repo.online_write import write_online
    from models.training.evaluation import metrics
    from models.training.registry import _client, log_and_register, promote
    from models.training.train import TrainParams, train

    store = _feast_store(tmp / "home", redis)
    feats, _ = make_clip_features(n_clips, all_moments=False, seed=3, prefix="a")
    write_online(store, feats)
    ids = feats.column("clip_id").to_pylist()
    now = datetime(2026, 1, 14, 23, 59, 59, tzinfo=UTC)
    score = np.random.default_rng(1).uniform(0, 100, len(ids))
    scores = pa.table(
        {
            "clip_id": ids,
            "event_timestamp": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
            "score": score,
            "model_version": ["1"] * len(ids),
            "score_low": score - 8.0,  # an interval, as the pipeline stores one
            "score_high": score + 8.0,
            "interval_level": np.full(len(ids), 0.8),
        }
    )
    write_online(store, scores, "clip_scores")
    uri = f"sqlite:///{tmp / 'home' / 'mlflow.db'}"
    trained = train(make_training_set(2_000), TrainParams(n_estimators=50))
    version = log_and_register(
        trained, metrics(trained.y_holdout, trained.holdout_pred), None, None, uri
    )
    promote(_client(uri), version, "benchmark", expected_champion=None, tracking_uri=uri)
    return uri, ids, store


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def _single(
    base: str, ids: list[str], rate: float, seconds: float, headers: dict
) -> list[float]:
    import httpx

    lat: list[float] = []
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers) as c:

        async def one(clip: str):
            t0 = time.perf_counter()
            r = await c.get(f"/v1/clips/{clip}/score")
            lat.append(1000 * (time.perf_counter() - t0))
            r.raise_for_status()

        tasks, start, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):  # open loop: requests leave on schedule, whatever the replies do
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(random.choice(ids))))
        await asyncio.gather(*tasks)
    return lat


async def _batch(base: str, ids: list[str], n: int, headers: dict) -> list[float]:
    import httpx

    server: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        for _ in range(n):
            r = await c.post("/v1/score", json={"clip_ids": random.sample(ids, BATCH)})
            r.raise_for_status()
            server.append(float(r.headers["server-timing"].split("dur=")[1]))
    return server


async def _saturate(
    base: str, ids: list[str], seconds: float, headers: dict, inflight: int = 16
) -> float:
    import httpx

    done, stop = 0, time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=inflight)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers) as c:

        async def worker():
            nonlocal done
            while time.perf_counter() < stop:
                (await c.get(f"/v1/clips/{random.choice(ids)}/score")).raise_for_status()
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
    return done / (time.perf_counter() - t0)


def _floor(store, uri: str, ids: list[str], n: int, size: int) -> list[float]:
    from models.serving.scorer import Scorer

    scorer = Scorer(store, uri)
    scorer.scores(ids[:size])  # warm: the model loaded, the feature service cached
    out = []
    for _ in range(n):
        batch = random.sample(ids, size)
        t0 = time.perf_counter()
        scorer.scores(batch)
        out.append(1000 * (time.perf_counter() - t0))
    return out


_OPEN_SERVER = (
    "import sys, uvicorn\n"
    "from models.core.settings import prepare_process\n"
    "prepare_process(home=None, landing_dir=sys.argv[2])\n"
    "from pipelines.serve.app import create_app\n"
    "uvicorn.run(create_app(auth=False), host='127.0.0.1', port=int(sys.argv[1]),"
    " log_level='warning', access_log=False)\n"
)


def _load(tmp: Path, env: dict, ids: list[str], auth: bool, seconds: float, n_batch: int,
          scale: float) -> tuple[list[float], list[float], float]:  # fmt: skip
    """(single latencies, batch server latencies, saturation rps) of one server."""
    import httpx

    port, headers = _free_port(), {}
    if auth:
        key = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "api-keys", "create", "--name", "bench",
             "--scopes", "score", "--rate", "0"],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        headers = {"Authorization": f"Bearer {key}"}
        cmd = [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port),
               "--landing", str(tmp / "no-landing")]  # fmt: skip
    else:
        cmd = [sys.executable, "-c", _OPEN_SERVER, str(port), str(tmp / "no-landing")]
    # the server's log goes to a file (a pipe nobody drains can block the server), and its
    # tail comes with any failure: a 500 says nothing without the traceback behind it
    log_path = tmp / f"serve-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True
        )

    def server_log() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"clipflow serve did not start: {server_log()}")
            time.sleep(0.5)
        try:
            # the first score loads the model from the registry: on a busy machine that can
            # take longer than httpx's default 5 s, so one request waits for it alone
            httpx.get(f"{base}/v1/clips/{ids[0]}/score", headers=headers, timeout=120)
            asyncio.run(_single(base, ids, RATE, 1.0, headers))  # warm-up
            single = asyncio.run(_single(base, ids, RATE, seconds, headers))
            batch = asyncio.run(_batch(base, ids, n_batch, headers))
            rps = asyncio.run(_saturate(base, ids, max(1.0, 5.0 * scale), headers))
        except httpx.HTTPError as e:
            raise RuntimeError(f"{e}; the server's log:\n{server_log()}") from e
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return single, batch, rps


def run_api(scale: float, tmp: Path) -> list[Record]:
    random.seed(0)
    n_clips = max(200, round(CLIPS * scale))
    seconds = max(1.0, SECONDS * scale)
    n_batch = max(20, round(BATCH_REQUESTS * scale))
    with redis_server(tmp) as redis:
        uri, ids, store = _setup(tmp, redis, n_clips)
        env = {**os.environ, "CLIPFLOW_HOME": str(tmp / "home"), "MLFLOW_TRACKING_URI": uri,
               "CLIPFLOW_REDIS": redis.connection_string,
               "CLIPFLOW_API_KEY_PEPPER": "bench-pepper"}  # fmt: skip
        single, batch, rps = _load(tmp, env, ids, True, seconds, n_batch, scale)
        single0, batch0, rps0 = _load(tmp, env, ids, False, seconds, n_batch, scale)
        floor1 = _floor(store, uri, ids, 2000, 1)
        floor100 = _floor(store, uri, ids, n_batch, BATCH)
    p99, f99 = _pct(single, 99), _pct(floor1, 99)
    b99, fb99 = _pct(batch, 99), _pct(floor100, 99)
    p99_0, b99_0 = _pct(single0, 99), _pct(batch0, 99)
    log(f"api (auth on): single p50 {_pct(single, 50):.2f} ms p99 {p99:.2f} ms (in-process p99 "
        f"{f99:.2f}); batch of {BATCH} server p99 {b99:.2f} ms (in-process {fb99:.2f}); "
        f"saturation {rps:.0f} rps. Auth off: single p99 {p99_0:.2f} ms, batch p99 "
        f"{b99_0:.2f} ms, saturation {rps0:.0f} rps")  # fmt: skip
    peak = peak_rss_mb()
    common = dict(benchmark="api", unit="ms", peak_rss_mb=peak, scale=scale)
    return [
        Record(
            metric="single_score_p99_ms",
            value=round(p99, 3),
            floor_metric="in_process_scores_p99_ms",
            floor_value=round(f99, 3),
            ratio=round(p99 / f99, 2),
            target=f"p99 < {SINGLE_P99_MS:g} ms at {RATE} req/s",
            met=p99 < SINGLE_P99_MS,
            rows=len(single),
            **common,
        ),
        Record(
            metric="single_score_p50_ms",
            value=round(_pct(single, 50), 3),
            floor_metric="in_process_scores_p50_ms",
            floor_value=round(_pct(floor1, 50), 3),
            ratio=round(_pct(single, 50) / _pct(floor1, 50), 2),
            target="no target",
            met=True,
            rows=len(single),
            **common,
        ),
        Record(
            metric="batch100_server_p99_ms",
            value=round(b99, 3),
            floor_metric="in_process_scores_100_p99_ms",
            floor_value=round(fb99, 3),
            ratio=round(b99 / fb99, 2),
            target=f"server-side p99 < {BATCH_P99_MS:g} ms",
            met=b99 < BATCH_P99_MS,
            rows=len(batch),
            **common,
        ),
        Record(
            metric="single_score_p99_ms_noauth",
            value=round(p99_0, 3),
            floor_metric="in_process_scores_p99_ms",
            floor_value=round(f99, 3),
            ratio=round(p99_0 / f99, 2),
            target="baseline for the auth cost",
            met=True,
            rows=len(single0),
            **common,
        ),
        Record(
            metric="batch100_server_p99_ms_noauth",
            value=round(b99_0, 3),
            floor_metric="in_process_scores_100_p99_ms",
            floor_value=round(fb99, 3),
            ratio=round(b99_0 / fb99, 2),
            target="baseline for the auth cost",
            met=True,
            rows=len(batch0),
            **common,
        ),
        Record(
            metric="saturation_requests_per_s",
            value=round(rps, 1),
            unit="req/s",
            floor_metric="saturation_requests_per_s_noauth",
            floor_value=round(rps0, 1),
            ratio=round(rps0 / rps, 2),
            target="no target (16 in flight)",
            met=True,
            rows=1,
            **{k: v for k, v in common.items() if k != "unit"},
        ),
    ]


BENCHMARKS = {"api": run_api}
