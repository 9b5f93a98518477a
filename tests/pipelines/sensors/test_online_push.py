"""The online push sensor and job, on a real Redis and the real Feast SDK."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from assets.feature_store import feast_registry
from assets.features import clip_features
from assets.ingest import ingest_assets
from assets.online_store import online_store
from assets.resources import EventsResource, FeastResource, LandingResource, WarehouseResource
from models.synthetic.landing import generate_landing
from pipelines.jobs import online_push_job
from pipelines.sensors.online_push import online_push_sensor

pytestmark = pytest.mark.slow
DAYS = ["2026-04-01", "2026-04-02"]


@pytest.fixture
def pushed_home(tmp_path, home, monkeypatch, redis_server):
    """Two days ingested, featurized and materialized to a Redis db of the test's own."""
    conn = f"{redis_server['connection_string']},db=5"
    client = redis.Redis(host=redis_server["host"], port=redis_server["port"], db=5)
    if redis_server["owned"]:
        client.flushdb()
    monkeypatch.setenv("CLIPFLOW_REDIS", conn)
    landing = tmp_path / "landing"
    generate_landing(
        landing,
        days=2,
        start=date(2026, 4, 1),
        clips_per_day=60,
        users=50,
        seed=9,
        bad_row_rate=0.0,
        csv_every=0,
    )
    resources = {
        "warehouse": WarehouseResource(),
        "landing": LandingResource(landing_dir=str(landing)),
        "feast": FeastResource(),
        "events": EventsResource(),
    }
    with dg.instance_for_test() as instance:
        for day in DAYS:
            r = dg.materialize(
                [*ingest_assets, clip_features, feast_registry, online_store],
                partition_key=day,
                resources=resources,
                instance=instance,
            )
            assert r.success
    return landing, resources, client


def _new_engagement_file(landing, clip_id: str, views: int):
    path = landing / "engagement" / "live" / f"{clip_id}-{views}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    # today, after the last processed day's day-end rows: the fresh window
    ts = pa.array([datetime(2026, 4, 3, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "clip_id": [clip_id],
                "event_timestamp": ts,
                "views": [views],
                "likes": [1],
                "shares": [0],
                "comments": [0],
                "completions": [1],
                "watch_time_s": [10.0],
            }
        ),
        path,
    )
    return path


def _online(clip_id: str) -> dict:
    from feature_repo.config import feature_store

    store = feature_store()
    return store.get_online_features(
        features=store.get_feature_service("clip_quality_v1"), entity_rows=[{"clip_id": clip_id}]
    ).to_dict()


def test_new_files_are_pushed_once_and_redis_down_keeps_the_cursor(pushed_home, monkeypatch):
    landing, resources, client = pushed_home
    good = (
        f"{client.connection_pool.connection_kwargs['host']}:"
        f"{client.connection_pool.connection_kwargs['port']},db=5"
    )
    glob = resources["warehouse"].get().glob("clip_features")
    clip_id, before = duckdb.sql(
        f"SELECT clip_id, views_7d FROM read_parquet('{glob}') "
        "WHERE created_at::DATE = DATE '2026-04-01' ORDER BY event_timestamp DESC, clip_id"
    ).fetchall()[0]
    assert _online(clip_id)["views_7d"] == [before]
    sensor_resources = {"landing": resources["landing"], "feast": resources["feast"]}

    def tick(cursor):
        ctx = dg.build_sensor_context(cursor=cursor, resources=sensor_resources)
        return online_push_sensor(ctx), ctx.cursor

    # the first tick records what is there; nothing new: no run
    first, cursor = tick(None)
    assert isinstance(first, dg.SkipReason) and cursor is not None
    assert isinstance(tick(cursor)[0], dg.SkipReason)

    path = _new_engagement_file(landing, clip_id, views=1000)

    # first seen: it waits a tick, to be taken only once unchanged
    seen, cursor = tick(cursor)
    assert isinstance(seen, dg.SkipReason) and "1 new file(s) settling" in seen.skip_message
    assert json.loads(cursor)["pending"] == {
        str(path): [path.stat().st_size, path.stat().st_mtime_ns]
    }

    # Redis down: skip, and the cursor does not move
    monkeypatch.setenv("CLIPFLOW_REDIS", "127.0.0.1:1,db=5")
    down, down_cursor = tick(cursor)
    assert isinstance(down, dg.SkipReason) and "unreachable" in down.skip_message
    assert down_cursor == cursor

    # Redis back: the next tick requests one run for the file set; then nothing
    monkeypatch.setenv("CLIPFLOW_REDIS", good)
    req, up_cursor = tick(cursor)
    assert isinstance(req, dg.RunRequest) and req.run_key.startswith("online-push-")
    assert len(json.loads(up_cursor)["done"]) == len(json.loads(cursor)["done"]) + 1
    assert json.loads(up_cursor)["pending"] == {}
    assert isinstance(tick(up_cursor)[0], dg.SkipReason)
    again, _ = tick(cursor)  # the same file set asks with the same run_key
    assert again.run_key == req.run_key

    result = online_push_job.execute_in_process(run_config=req.run_config, resources=resources)
    assert result.success
    assert _online(clip_id)["views_7d"] == [before + 1000]


def test_a_cursor_of_the_mtime_form_counts_the_files_up_to_its_mark_as_pushed(tmp_path):
    """A cursor written before run keys held sizes and mtimes: files at or before its mark
    (the mark's own only when named) are not pushed again; the others settle as new."""
    landing = tmp_path / "landing"
    paths = [_new_engagement_file(landing, f"c{i}", views=i) for i in range(4)]
    for p, t in zip(paths, [0, 1, 1, 2], strict=True):  # two files at the mark
        os.utime(p, ns=(10**18 + t, 10**18 + t))
    old = json.dumps({"mtime_ns": 10**18 + 1, "names": [str(paths[1])]})
    ctx = dg.build_sensor_context(
        cursor=old, resources={"landing": LandingResource(landing_dir=str(landing)),
                               "feast": FeastResource()},
    )  # fmt: skip
    result = online_push_sensor(ctx)
    assert "2 new file(s) settling" in result.skip_message  # the mark's unnamed one, the later
    cur = json.loads(ctx.cursor)
    assert sorted(cur["pending"]) == sorted(str(p) for p in paths[2:])
    assert len(cur["done"]) == 2
