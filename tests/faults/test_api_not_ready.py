"""`clipflow serve` on a home the pipeline has not run on yet (#16, case 11): it starts,
answers 503 naming what is missing (never a traceback at start-up), and serves once the
home has its feature store and champion, without a restart."""

from __future__ import annotations

import time

import httpx
import pytest
from security.api_support import DB, api_env, launch, prepare_world, stop_api

pytestmark = pytest.mark.slow


def test_serve_starts_on_an_empty_home_and_recovers_when_the_pipeline_has_run(
    tmp_path, redis_server
):
    from models.core.redis_url import redis_client

    conn = f"{redis_server['connection_string']},db={DB + 1}"
    redis_client(conn).flushdb()
    env = api_env(tmp_path, conn)
    api = launch(tmp_path, env, [], healthy=False)
    try:
        key = api.key("scorer", "score", "--rate", "0")
        health = httpx.get(f"{api.base}/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json() == {"ok": False, "redis": "ok", "registry": "not ready"}
        r = httpx.get(f"{api.base}/v1/clips/c1/score", headers=api.auth(key), timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["detail"] == (
            "not ready: the feature store has no clipflow features yet: run the pipeline"
            " (clipflow run)"
        )
        assert "Traceback" not in r.text and str(api.home) not in r.text
        r = httpx.post(f"{api.base}/v1/score", json={"clip_ids": ["c1"]},
                       headers=api.auth(key), timeout=10)  # fmt: skip
        assert r.status_code == 503
        assert httpx.get(f"{api.base}/v1/clips/c1/score", timeout=10).status_code == 401

        ids = prepare_world(env)  # the pipeline's outputs appear; the server is not restarted
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(f"{api.base}/v1/clips/{ids[0]}/score", headers=api.auth(key), timeout=30)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        assert r.json()["score"] == 50.0 and r.json()["source"] == "online"
        assert httpx.get(f"{api.base}/healthz", timeout=10).status_code == 200
        assert api.proc.poll() is None
    finally:
        stop_api(api)
