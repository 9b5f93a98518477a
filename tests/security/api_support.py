"""A real `clipflow serve` process on loopback for the security tests, on a small world:
a Feast store on the test Redis with a few clips' features and champion scores online, a
champion model in a SQLite MLflow store, a pepper, an event-token secret and an Origin
allowlist in the environment. Keys are made with the real CLI (`clipflow api-keys`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
from support import clip_feature_rows, free_port, tiny_training_set

PEPPER = "pepper-kept-apart-from-the-db"
TOKEN_SECRET = "event-token-secret"
ALLOWED_ORIGIN = "https://app.example.com"
DB = 11


@dataclass
class Api:
    base: str
    port: int
    env: dict
    home: Path
    ids: list[str]
    proc: subprocess.Popen
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "api-keys", *args],
            env=self.env, capture_output=True, text=True, timeout=60, check=check,
        )  # fmt: skip

    def key(self, name: str, scopes: str, *extra: str) -> str:
        if name not in self.keys:
            out = self.cli("create", "--name", name, "--scopes", scopes, *extra)
            self.keys[name] = out.stdout.strip()
        return self.keys[name]

    def auth(self, key: str) -> dict:
        return {"Authorization": f"Bearer {key}"}


def api_env(tmp: Path, redis_conn: str) -> dict:
    home = tmp / "home"
    env = {
        **os.environ,
        "CLIPFLOW_HOME": str(home), "CLIPFLOW_REDIS": redis_conn,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "CLIPFLOW_API_KEY_PEPPER": PEPPER, "CLIPFLOW_EVENT_TOKEN_SECRET": TOKEN_SECRET,
        "CLIPFLOW_API_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
    }  # fmt: skip
    env.pop("CLIPFLOW_API_KEYS_DB", None)
    return env


def prepare_world(env: dict) -> list[str]:
    """The Feast repo applied, 4 clips' features and champion scores online, a champion
    registered, in the home of `env`; the clip ids."""
    from feature_repo import config
    from feature_repo.online_write import write_online
    from models.core.settings import current
    from models.training import registry
    from models.training import train as training
    from models.training.evaluation import metrics

    home, uri = Path(env["CLIPFLOW_HOME"]), env["MLFLOW_TRACKING_URI"]
    old = {k: os.environ.get(k) for k in ("CLIPFLOW_HOME", "CLIPFLOW_REDIS")}
    os.environ.update(CLIPFLOW_HOME=str(home), CLIPFLOW_REDIS=env["CLIPFLOW_REDIS"])
    try:
        store = config.feature_store(current())
        config.apply(store)
        rows = clip_feature_rows(4, "sec")
        write_online(store, rows)
        ids = sorted(set(rows.column("clip_id").to_pylist()))
        model = training.train(tiny_training_set(200), training.TrainParams(n_estimators=5))
        v1 = registry.log_and_register(
            model, metrics(model.y_holdout, model.holdout_pred), None, None, uri
        )
        registry.promote(registry._client(uri), v1, "sec", expected_champion=None, tracking_uri=uri)
        now = datetime(2026, 6, 1, tzinfo=UTC)
        write_online(
            store,
            pa.table({
                "clip_id": ids, "event_timestamp": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
                "score": [50.0] * len(ids), "model_version": [v1] * len(ids),
                "score_low": [45.0] * len(ids), "score_high": [55.0] * len(ids),
                "interval_level": [0.8] * len(ids),
            }),
            "clip_scores",
        )  # fmt: skip
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return ids


def launch(tmp: Path, env: dict, ids: list[str], healthy: bool = True) -> Api:
    """`clipflow serve` as a subprocess, once it answers /healthz (with 200 if `healthy`)."""
    port = free_port()
    log = tmp / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port),
         "--landing", str(tmp / "no-landing")],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            code = httpx.get(f"{base}/healthz", timeout=2).status_code
            if code == 200 or (not healthy and code == 503):
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"clipflow serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    return Api(base, port, env, Path(env["CLIPFLOW_HOME"]), ids, proc, log)


def start_api(tmp: Path, redis_conn: str) -> Api:
    env = api_env(tmp, redis_conn)
    return launch(tmp, env, prepare_world(env))


def stop_api(api: Api) -> None:
    api.proc.terminate()
    try:
        api.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        api.proc.kill()
