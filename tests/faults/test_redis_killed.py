"""Redis killed mid-materialization (#16): `clipflow run` with Redis as the online store, and
`redis-server` killed (-9) once the run log shows the day's `online_store` step (the
`online_features` and `online_scores` write) started.

The day fails with an error that names Redis, no online step of that day claims a
materialization (nothing stale is shown as fresh), and once Redis is back (a restart with no
persistence: an empty store, the worst case) a later run leaves the online store equal to
the warehouse: every clip's newest `clip_features` row, read back through Feast.

Redis killed mid-stream: the second test (`clipflow serve` with a live SSE client); the
hub's resume and the outbox under a longer outage are tests/faults/test_live_hub.py and
tests/faults/test_events_outage.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import httpx
import pytest
from faults.fault_support import (
    ROOT,
    RUN_S,
    SLOW,
    RedisProcess,
    clipflow,
    clipflow_env,
    generate,
    newest_rows,
    start_clipflow,
    wait_for_step,
)

from models.core.names import FEATURE_COLUMNS, FEATURE_KINDS, FEATURES_VIEW

pytestmark = SLOW
DAYS = ["2026-01-01"]
NUMERIC = [c for c in FEATURE_COLUMNS if FEATURE_KINDS[c] != "string"]

READ_ONLINE = """
import json, sys
from feature_repo.config import feature_store
ids, features = json.loads(sys.argv[1]), json.loads(sys.argv[2])
got = feature_store().get_online_features(
    features=features, entity_rows=[{"clip_id": i} for i in ids]).to_dict()
print(json.dumps(got, default=str))
"""


def online_rows(env: dict[str, str], ids: list[str]) -> dict[str, dict]:
    """What an app reads through Feast for `ids`: {clip_id: {feature: value}}."""
    refs = [f"{FEATURES_VIEW}:{c}" for c in FEATURE_COLUMNS]
    r = subprocess.run([sys.executable, "-c", READ_ONLINE, json.dumps(ids), json.dumps(refs)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_S)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    return {cid: {c: got[c][i] for c in FEATURE_COLUMNS} for i, cid in enumerate(got["clip_id"])}


def materialized(home: Path, asset: str, day: str) -> bool:
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
        ).records
        return bool(records)
    finally:
        instance.dispose()


def test_redis_killed_during_the_online_write_fails_the_day_then_a_rerun_fills_it(tmp_path):
    landing, home = tmp_path / "landing", tmp_path / "home"
    generate(landing, days=len(DAYS), start=DAYS[0])
    redis = RedisProcess().start()
    env = clipflow_env(home, CLIPFLOW_REDIS=redis.url)
    try:
        proc = start_clipflow("run", "--landing", str(landing), env=env, log=tmp_path / "run.log")
        assert wait_for_step(home, DAYS[-1], "online_store", proc, timeout=RUN_S), (
            tmp_path / "run.log"
        ).read_text()[-3000:]
        redis.kill()  # mid-materialization: the day's online write is under way
        assert proc.wait(RUN_S) == 1
        out = (tmp_path / "run.log").read_text()
        assert f"{DAYS[-1]}  FAILED" in out, out[-3000:]
        failed = {
            line.split()[0]: line
            for line in out.splitlines()
            if " FAILED " in line and "s  " in line
        }
        why = failed.get("online_store", "")  # the error names Redis: host, port, refused
        assert "onnect" in why and redis.url in why, out[-3000:]
        assert not materialized(home, "online_features", DAYS[-1])  # nothing claimed fresh

        redis.start()  # back, empty: what the dead one held is gone
        r = clipflow("run", "--landing", str(landing), env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        want = newest_rows(home, "clip_features", FEATURE_COLUMNS)
        assert len(want) >= 100 * len(DAYS)  # every clip
        got = online_rows(env, sorted(want))
        assert got.keys() == want.keys()
        for cid, row in want.items():
            for c in FEATURE_COLUMNS:
                expect = pytest.approx(row[c], rel=1e-9) if c in NUMERIC and row[c] else row[c]
                assert got[cid][c] == expect, (cid, c)
    finally:
        redis.kill()


class SseReader(threading.Thread):
    """One `/v1/events` connection, kept open; every event's data as it arrives."""

    def __init__(self, base: str, key: str):
        super().__init__(daemon=True)
        self.base, self.key, self.got = base, key, []
        self.connected, self.stop = threading.Event(), threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        timeout = httpx.Timeout(10, read=60)  # heartbeats keep it alive
        with httpx.stream("GET", f"{self.base}/v1/events", headers=headers, timeout=timeout) as r:
            self.connected.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    self.got.append(json.loads(line[6:])["data"])
                if self.stop.is_set():
                    return


def push_scores(env: dict[str, str], ids: list[str], score: float) -> None:
    """A later push: the champion's scores of `ids` written online (as online_scores does)."""
    code = (
        "import json, sys\nfrom datetime import UTC, datetime\nimport pyarrow as pa\n"
        "from feature_repo.config import feature_store\n"
        "from feature_repo.online_write import write_online\n"
        "ids, score = json.loads(sys.argv[1]), float(sys.argv[2])\n"
        "ts = pa.array([datetime(2026, 6, 2, tzinfo=UTC)] * len(ids), pa.timestamp('us', tz='UTC'))\n"
        "write_online(feature_store(), pa.table({'clip_id': ids, 'event_timestamp': ts,\n"
        "    'score': [score] * len(ids), 'model_version': ['1'] * len(ids),\n"
        "    'score_low': [score - 5] * len(ids), 'score_high': [score + 5] * len(ids),\n"
        "    'interval_level': [0.8] * len(ids)}), 'clip_scores')\n"
    )
    r = subprocess.run([sys.executable, "-c", code, json.dumps(ids), str(score)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=RUN_S)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_redis_killed_under_serve_serves_nothing_stale_and_streams_again(tmp_path):
    """Mid-stream: `clipflow serve` with an SSE client connected, and Redis (the online store
    and the event stream) killed -9 and restarted empty. While it is down nothing is
    answered as if it were fresh: /healthz says `redis: down` (503) and a score request
    gets a 503 naming the online store; hung (SIGSTOP), a score answers 503 after the
    store's socket timeout while /healthz keeps answering. After the restart a later push is what the API serves (not the score it
    served before), and the client still connected receives the events published after."""
    from security.api_support import api_env, launch, prepare_world, stop_api

    from models.integrations import events

    redis = RedisProcess().start()
    env = api_env(tmp_path, redis.url)
    ids = prepare_world(env)  # features and champion scores (50.0) online, a champion
    api = launch(tmp_path, env, ids)
    reader = None
    try:
        key = api.key("app", "score,events", "--rate", "0")
        score = f"{api.base}/v1/clips/{ids[0]}/score"
        first = httpx.get(score, headers=api.auth(key), timeout=120)
        assert first.status_code == 200 and first.json()["score"] == 50.0, first.text
        reader = SseReader(api.base, key)
        reader.start()
        assert reader.connected.wait(300)
        time.sleep(1)  # the hub reads from the stream's end from now on
        events.publish(redis.client(), "scores_published", {"n": 1})
        wait_until(lambda: reader.got == [{"n": 1}], 300, f"first event: {reader.got}")

        # hung, not dead (SIGSTOP): a score waits out the store's socket timeout in a worker
        # thread and answers 503; meanwhile /healthz still answers (it hung with the lookup
        # on the event loop and no timeout)
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(httpx.get, score, headers=api.auth(key), timeout=120)
                time.sleep(0.5)
                health = httpx.get(f"{api.base}/healthz", timeout=30)
                assert health.status_code == 503 and health.json()["redis"] == "down", health.text
                hung = pending.result()
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        assert hung.status_code == 503, hung.text
        assert hung.json()["detail"].startswith("online store unavailable"), hung.text

        redis.kill()  # mid-stream
        health = httpx.get(f"{api.base}/healthz", timeout=120)
        assert health.status_code == 503 and health.json()["redis"] == "down", health.text
        down = httpx.get(score, headers=api.auth(key), timeout=120)
        assert down.status_code == 503, down.text  # never the last score, as if fresh
        assert down.json()["detail"].startswith("online store unavailable"), down.text

        redis.start()  # back, empty
        push_scores(env, ids, 61.5)
        wait_until(lambda: httpx.get(f"{api.base}/healthz", timeout=120).status_code == 200,
                   300, "healthy again")  # fmt: skip
        again = httpx.get(score, headers=api.auth(key), timeout=120)
        assert again.status_code == 200 and again.json()["score"] == 61.5, again.text
        events.publish(redis.client(), "scores_published", {"n": 2})
        wait_until(lambda: reader.got == [{"n": 1}, {"n": 2}], 300, f"after: {reader.got}")
        assert api.proc.poll() is None
    finally:
        if reader is not None:
            reader.stop.set()
        stop_api(api)
        redis.kill()
