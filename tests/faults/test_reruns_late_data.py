"""Re-runs and late data (#16, case 7), on real processes: a redis-server, a Dagster instance
in a temp DAGSTER_HOME, the real Feast SDK; sensors evaluated with `build_sensor_context`
against that instance, their runs executed on it.

- A file that lands late for an ingested day is noticed by `late_data_sensor`, which asks
  for a re-run of that day tagged with the file and its rows; after the re-run, the online
  store serves what the warehouse holds for that day (same event time, new values).
  On the old code nothing noticed, and the re-run left the stale values online.
- Late days are re-run one at a time, in date order; a failed re-run is named, not retried.
- `online_push_sensor` takes a file only once it is stable (a half-written file waits and
  is pushed whole), sees a file moved in with an older mtime, and pushes a changed file
  again. On the old code the half-written file was pushed at once and the moved-in one
  never.
"""

from __future__ import annotations

import os
import time
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
from pipelines.sensors.late_data import late_data_sensor
from pipelines.sensors.online_push import online_push_sensor

pytestmark = pytest.mark.slow
D1, D2 = "2026-04-01", "2026-04-02"
DAY_ASSETS = [*ingest_assets, clip_features, feast_registry, online_store]


@pytest.fixture
def ingested(tmp_path, home, monkeypatch, redis_server):
    """Two days ingested, featurized and written online (a Redis db of the test's own), on
    the Dagster instance of the temp DAGSTER_HOME."""
    db = 7
    client = redis.Redis(host=redis_server["host"], port=redis_server["port"], db=db)
    if redis_server["owned"]:
        client.flushdb()
    monkeypatch.setenv("CLIPFLOW_REDIS", f"{redis_server['connection_string']},db={db}")
    landing = tmp_path / "landing"
    generate_landing(landing, days=2, start=date(2026, 4, 1), clips_per_day=40, users=30,
                     seed=4, bad_row_rate=0.0, csv_every=0)  # fmt: skip
    resources = {
        "warehouse": WarehouseResource(),
        "landing": LandingResource(landing_dir=str(landing)),
        "feast": FeastResource(),
        "events": EventsResource(),
    }
    with dg.DagsterInstance.get() as instance:
        for day in (D1, D2):
            assert dg.materialize(DAY_ASSETS, partition_key=day, resources=resources,
                                  instance=instance).success  # fmt: skip
        yield landing, resources, instance


def _engagement(landing, name: str, rows: list[tuple[str, datetime, int]], mtime=None):
    path = landing / "engagement" / "late" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({
            "clip_id": [r[0] for r in rows],
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "views": [r[2] for r in rows], "likes": [1] * len(rows), "shares": [0] * len(rows),
            "comments": [0] * len(rows), "completions": [1] * len(rows),
            "watch_time_s": [5.0] * len(rows),
        }),
        path,
    )  # fmt: skip
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


def _clip_of(resources, day: str) -> str:
    """A clip created on D1: it has a day-end row on D1 and on D2."""
    glob = resources["warehouse"].get().glob("clip_features")
    return duckdb.sql(
        f"SELECT min(clip_id) FROM read_parquet('{glob}', hive_partitioning=true) "
        f"WHERE created_at::DATE = DATE '{D1}' AND ds = '{day}'"
    ).fetchall()[0][0]


def _warehouse_row(resources, clip_id: str, day: str) -> dict:
    """The clip's newest clip_features row of `day`, read from the warehouse Parquet."""
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    glob = resources["warehouse"].get().glob("clip_features")
    cols = ", ".join(f'"{c}"' for c in CLIP_FEATURE_NAMES)
    rel = duckdb.sql(
        f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning=true) "
        f"WHERE clip_id = '{clip_id}' AND ds = '{day}' ORDER BY event_timestamp DESC LIMIT 1"
    )
    return dict(zip(CLIP_FEATURE_NAMES, rel.fetchall()[0], strict=True))


def _online(clip_id: str) -> dict:
    from feature_repo.config import feature_store
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    store = feature_store()
    got = store.get_online_features(
        features=store.get_feature_service("clip_quality_v1"), entity_rows=[{"clip_id": clip_id}]
    ).to_dict()
    return {k: got[k][0] for k in CLIP_FEATURE_NAMES}


def _late_tick(resources, instance):
    ctx = dg.build_sensor_context(instance=instance, resources={"landing": resources["landing"]})
    return late_data_sensor(ctx)


def test_a_late_file_reruns_its_day_and_the_online_store_equals_the_warehouse(ingested):
    landing, resources, instance = ingested
    assert "no landing file adds rows" in _late_tick(resources, instance).skip_message
    clip_id = _clip_of(resources, D2)
    before = _warehouse_row(resources, clip_id, D2)
    assert _online(clip_id) == before
    late = _engagement(
        landing, "d2.parquet", [(clip_id, datetime(2026, 4, 2, 13, tzinfo=UTC), 5000)]
    )

    req, *then = _late_tick(resources, instance)
    assert then == []  # no ingested day after D2
    assert isinstance(req, dg.RunRequest) and req.partition_key == D2
    assert (req.tags["clipflow/late_rows"], req.tags["clipflow/late_files"]) == ("1", "1")
    assert "engagement/late/d2.parquet (1 rows)" in req.tags["clipflow/reason"]
    result = dg.materialize(DAY_ASSETS, partition_key=D2, resources=resources,
                            instance=instance, tags=req.tags)  # fmt: skip
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["clipflow/reason"] == req.tags["clipflow/reason"]  # what the UI shows

    after = _warehouse_row(resources, clip_id, D2)
    assert after["views_7d"] == before["views_7d"] + 5000  # the re-run read the late file
    assert _online(clip_id) == after  # and the online store holds it
    assert "no landing file adds rows" in _late_tick(resources, instance).skip_message
    assert late.exists()


def test_late_days_rerun_one_at_a_time_in_date_order(ingested):
    from dagster._core.storage.dagster_run import DagsterRun

    landing, resources, instance = ingested
    clip_id = _clip_of(resources, D2)
    _engagement(landing, "d2.parquet", [(clip_id, datetime(2026, 4, 2, 9, tzinfo=UTC), 7)])
    _engagement(landing, "d1.parquet", [(clip_id, datetime(2026, 4, 1, 22, tzinfo=UTC), 3),
                                        (clip_id, datetime(2026, 4, 1, 23, tzinfo=UTC), 4)])  # fmt: skip

    first, *then = _late_tick(resources, instance)
    assert (first.partition_key, first.tags["clipflow/late_rows"]) == (D1, "2")
    # D1's late rows change D2's rolling windows: D2 is re-run after it, in the same tick
    assert [(r.partition_key, r.tags["clipflow/late_follow_up_of"]) for r in then] == [(D2, D1)]
    assert then[0].run_key == first.run_key + "-then-" + D2
    # the daemon launched it; while it runs, nothing else is asked for
    run = instance.add_run(DagsterRun(job_name="nightly_job", tags=first.tags,
                                      status=dg.DagsterRunStatus.STARTED))  # fmt: skip
    waiting = _late_tick(resources, instance)
    assert isinstance(waiting, dg.SkipReason) and run.run_id in waiting.skip_message
    # it failed without ingesting: not asked again for the same files; the next day goes on
    instance.report_run_failed(run)
    second, *then = _late_tick(resources, instance)
    assert (second.partition_key, second.tags["clipflow/late_rows"]) == (D2, "1")
    assert then == []
    assert dg.materialize(DAY_ASSETS, partition_key=D2, resources=resources,
                          instance=instance, tags=second.tags).success  # fmt: skip
    named = _late_tick(resources, instance)
    assert isinstance(named, dg.SkipReason)
    assert f"{D1} (run {run.run_id}, FAILURE)" in named.skip_message
    # re-run by hand: nothing late any more
    assert dg.materialize(DAY_ASSETS, partition_key=D1, resources=resources,
                          instance=instance).success  # fmt: skip
    assert "no landing file adds rows" in _late_tick(resources, instance).skip_message


def _push_tick(resources, instance, cursor):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor,
        resources={"landing": resources["landing"], "feast": resources["feast"]},
    )  # fmt: skip
    return online_push_sensor(ctx), ctx.cursor


def test_the_push_takes_stable_files_whole_and_sees_moved_and_changed_ones(ingested):
    landing, resources, instance = ingested
    clip_id = _clip_of(resources, D2)
    base = _online(clip_id)["views_7d"]
    today = datetime(2026, 4, 3, 1, tzinfo=UTC)  # after D2's day end: the fresh window
    first, cursor = _push_tick(resources, instance, None)
    assert isinstance(first, dg.SkipReason)

    # half-written: a writer that has put down part of the file, then the rest
    final = _engagement(landing, "fresh.parquet", [(clip_id, today, 100)])
    whole = final.read_bytes()
    final.write_bytes(whole[: len(whole) // 2])
    half, cursor = _push_tick(resources, instance, cursor)
    assert isinstance(half, dg.SkipReason) and "settling" in half.skip_message
    final.write_bytes(whole)
    grown, cursor = _push_tick(resources, instance, cursor)
    assert isinstance(grown, dg.SkipReason) and "settling" in grown.skip_message
    req, cursor = _push_tick(resources, instance, cursor)
    assert isinstance(req, dg.RunRequest)
    assert req.run_config["ops"]["push_fresh_features"]["config"]["files"] == [str(final)]
    assert online_push_job.execute_in_process(run_config=req.run_config, resources=resources,
                                              instance=instance).success  # fmt: skip
    assert _online(clip_id)["views_7d"] == base + 100
    assert isinstance(_push_tick(resources, instance, cursor)[0], dg.SkipReason)

    # moved in with an mtime older than every file already handed on
    old = time.time_ns() - 86_400 * 10**9
    moved = _engagement(landing, "moved.parquet", [(clip_id, today, 20)], mtime=old)
    seen, cursor = _push_tick(resources, instance, cursor)
    assert "settling" in seen.skip_message
    req2, cursor = _push_tick(resources, instance, cursor)
    assert req2.run_config["ops"]["push_fresh_features"]["config"]["files"] == [str(moved)]

    # changed: the same path with other content is pushed again, under another run key
    _engagement(landing, "fresh.parquet", [(clip_id, today, 100), (clip_id, today, 1)])
    _, cursor = _push_tick(resources, instance, cursor)
    req3, cursor = _push_tick(resources, instance, cursor)
    assert req3.run_config["ops"]["push_fresh_features"]["config"]["files"] == [str(final)]
    assert req3.run_key not in (req.run_key, req2.run_key)


def test_follow_ups_are_the_ingested_days_up_to_seven_after_the_late_one():
    """D+1 .. D+7 (the longest window, HISTORY_DAYS) follow, in date order; D itself, days
    before it and D+8 do not."""
    from datetime import timedelta

    from models.ingest.landing import LateDay
    from pipelines.sensors.late_data import follow_ups

    d = date(2026, 4, 10)
    ingested = [d + timedelta(days=k) for k in (8, -1, 0, 7, 1, 3)]
    got = follow_ups(LateDay(d), ingested, "late-data-x")
    want = [d + timedelta(days=k) for k in (1, 3, 7)]
    assert [r.partition_key for r in got] == [w.isoformat() for w in want]
    assert [r.run_key for r in got] == [f"late-data-x-then-{w.isoformat()}" for w in want]
    assert {r.tags["clipflow/late_follow_up_of"] for r in got} == {d.isoformat()}
