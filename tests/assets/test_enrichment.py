"""video_metadata materialized through Dagster after `clips`, against the fake API."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import pytest
from fake_metadata_api import FakeMetadataApi, video
from support import GOOD_CLIP, free_port

from assets.enrichment import video_metadata
from assets.ingest import ingest_assets
from assets.resources import LandingResource, VideoMetadataResource, WarehouseResource
from models.integrations.metadata_api import KEY_ENV, NOT_FOUND, URL_ENV
from models.integrations.outbound import ALLOW_ENV

DAY = "2026-01-01"
VIDEOS = ["v1", "v2", "v3", "v4", "v5", "v6"]
CLIPS = next(a for a in ingest_assets if a.key == dg.AssetKey("clips"))
FAST = {"backoff_s": 0.01, "max_retries": 1, "requests_per_second": 1000.0, "timeout_s": 2.0}


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch):
    """The fake API listens on loopback, which outbound requests refuse unless allowlisted."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


@pytest.fixture
def day_of_clips(landing):
    """Eight clips of six videos on DAY, and one clip that ingest quarantines."""
    rows = [
        GOOD_CLIP
        | {
            "clip_id": f"c{i}",
            "video_id": VIDEOS[i % len(VIDEOS)],
            "created_at": GOOD_CLIP["created_at"] + timedelta(minutes=i),
        }
        for i in range(8)
    ]
    rows.append(GOOD_CLIP | {"clip_id": "bad", "video_id": "v9", "hook_strength": 1.5})
    landing.write("clips", rows)
    return landing.root


def _materialize(home, landing_dir, api: VideoMetadataResource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [CLIPS, video_metadata],
        partition_key=DAY,
        resources={
            "warehouse": WarehouseResource(home=str(home)),
            "landing": LandingResource(landing_dir=str(landing_dir)),
            "metadata_api": api,
        },
        raise_on_error=False,
    )


def _query(home, sql: str) -> list[tuple]:
    glob = f"{home}/warehouse/{{}}/**/*.parquet"
    sql = sql.replace("{vm}", f"read_parquet('{glob.format('video_metadata')}')")
    sql = sql.replace("{q}", f"read_parquet('{glob.format('quarantine')}', hive_partitioning=1)")
    return duckdb.connect().execute(sql).fetchall()


def _meta(result, key: str) -> dict:
    (mat,) = [m for m in result.get_asset_materialization_events() if m.asset_key.path == [key]]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def test_found_videos_are_written_and_the_others_quarantined(home, day_of_clips, monkeypatch):
    with FakeMetadataApi(api_key="k", fail_ids={"v3"}, missing_ids={"v5"}) as api:
        monkeypatch.setenv(URL_ENV, api.url)  # the key goes only to the configured URL
        monkeypatch.setenv(KEY_ENV, "k")
        resource = VideoMetadataResource(base_url=api.url, batch_size=1, **FAST)
        result = _materialize(home, day_of_clips, resource)
        assert result.success
        meta = _meta(result, "video_metadata")
        assert meta["dagster/row_count"] == 4 and meta["failed"] == 2
        assert meta["api"] == api.url and "Video v1" in meta["preview"]
        assert {r.authorization for r in api.requests} == {"Bearer k"}
        source = api.url + "/v1/videos"

    rows = _query(home, "SELECT video_id, title, channel, view_count, like_count FROM {vm}")
    assert sorted(rows) == [tuple(video(v).values()) for v in ["v1", "v2", "v4", "v6"]]
    types = dict(_query(home, "SELECT column_name, column_type FROM (DESCRIBE FROM {vm})"))
    assert types["view_count"] == "BIGINT" and types["fetched_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["ds"] == "DATE"

    quarantined = _query(
        home,
        'SELECT source_file, reason, "row"::VARCHAR, ds::VARCHAR, detected_at IS NOT NULL '
        "FROM {q} WHERE table_name = 'video_metadata' ORDER BY 3",
    )
    assert [(r[0], r[2], r[3], r[4]) for r in quarantined] == [
        (source, '{"video_id":"v3"}', DAY, True),
        (source, '{"video_id":"v5"}', DAY, True),
    ]
    assert "HTTP 500" in quarantined[0][1] and quarantined[1][1] == NOT_FOUND
    # the ingest quarantine of the same day is untouched, in its own file
    assert _query(home, "SELECT count(*) FROM {q} WHERE table_name = 'clips'") == [(1,)]

    with FakeMetadataApi() as healed:  # a re-run replaces the day: no duplicates
        resource = VideoMetadataResource(base_url=healed.url, **FAST)
        assert _materialize(home, day_of_clips, resource).success
    assert _query(home, "SELECT count(*), count(DISTINCT video_id) FROM {vm}") == [(6, 6)]
    assert _query(home, "SELECT table_name, count(*) FROM {q} GROUP BY 1") == [("clips", 1)]


def test_not_configured_writes_nothing_and_succeeds(home, day_of_clips, monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = _materialize(home, day_of_clips, VideoMetadataResource())
    assert result.success
    meta = _meta(result, "video_metadata")
    assert meta["configured"] is False and meta["dagster/row_count"] == 0
    assert URL_ENV in meta["note"]  # the UI says why nothing was fetched
    assert not (home / "warehouse" / "video_metadata").exists()
    assert (home / "warehouse" / "clips").exists()


@pytest.mark.parametrize("down", ["unhealthy", "every batch"])
def test_an_api_that_is_down_fails_the_asset_with_the_reason(home, day_of_clips, down):
    if down == "unhealthy":
        resource = VideoMetadataResource(base_url=f"http://127.0.0.1:{free_port()}", **FAST)
        result = _materialize(home, day_of_clips, resource)
    else:
        with FakeMetadataApi(fail_ids=VIDEOS) as api:
            result = _materialize(
                home, day_of_clips, VideoMetadataResource(base_url=api.url, **FAST)
            )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "video_metadata"
    assert down in failure.event_specific_data.error.message
    assert {m.asset_key.path[-1] for m in result.get_asset_materialization_events()} == {"clips"}
    assert not (home / "warehouse" / "video_metadata").exists()
