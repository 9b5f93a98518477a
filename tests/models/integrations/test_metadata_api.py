"""The video metadata client against a fake of the API on loopback."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest
from fake_metadata_api import FakeMetadataApi, video
from support import free_port

from assets.resources import VideoMetadataResource
from models.integrations.metadata_api import (
    KEY_ENV,
    NOT_FOUND,
    URL_ENV,
    MetadataAuthError,
)
from models.integrations.outbound import ALLOW_ENV

FAST = {"backoff_s": 0.01, "max_retries": 3, "requests_per_second": 1000.0, "timeout_s": 2.0}


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch):
    """The fake API listens on loopback, which outbound requests refuse unless allowlisted."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


def client(api: FakeMetadataApi, **kw) -> VideoMetadataResource:
    return VideoMetadataResource(base_url=api.url, **{**FAST, **kw})


def test_fetch_sends_the_key_batches_and_reports_missing_ids(monkeypatch):
    with FakeMetadataApi(api_key="s3cret", missing_ids={"v2"}) as api:
        monkeypatch.setenv(URL_ENV, api.url)  # the key goes only to the configured URL
        monkeypatch.setenv(KEY_ENV, "s3cret")
        rows, failures = client(api, batch_size=2).fetch(["v1", "v2", "v3", "v1"])
    assert [r["video_id"] for r in rows] == ["v1", "v3"]
    assert rows[0] | {"fetched_at": None} == video("v1") | {"fetched_at": None}
    assert rows[0]["fetched_at"].tzinfo is not None
    assert failures == {"v2": NOT_FOUND}
    assert [r.ids for r in api.requests] == [("v1", "v2"), ("v3",)]
    assert {r.authorization for r in api.requests} == {"Bearer s3cret"}


def test_a_refused_key_is_a_clear_error_and_is_not_retried(monkeypatch):
    with FakeMetadataApi(api_key="s3cret") as api:
        monkeypatch.setenv(URL_ENV, api.url)
        monkeypatch.setenv(KEY_ENV, "wrong")
        c = client(api)
        with pytest.raises(MetadataAuthError, match=KEY_ENV) as e:
            c.fetch(["v1", "v2"])
        assert "401" in str(e.value) and "wrong" not in str(e.value)
        assert len(api.requests) == 1 and api.requests[0].authorization == "Bearer wrong"
        assert KEY_ENV in c.health()


def test_503s_are_retried_until_the_api_answers():
    with FakeMetadataApi(fail_first=2) as api:
        rows, failures = client(api).fetch(["v1"])
    assert [r["video_id"] for r in rows] == ["v1"] and failures == {}
    assert len(api.requests) == 3


def test_retry_after_of_a_429_is_honoured():
    with FakeMetadataApi(rate_limit=1, window_s=1.0, retry_after="1") as api:
        rows, failures = client(api, batch_size=1).fetch(["v1", "v2"])
    assert len(rows) == 2 and failures == {}
    t = api.times
    assert len(t) == 3  # v1, v2 (429), v2 again
    assert t[2] - t[1] >= 1.0


def test_a_retry_after_beyond_the_cap_fails_the_batch_at_once():
    with FakeMetadataApi(rate_limit=0, retry_after="120") as api:
        rows, failures = client(api, max_backoff_s=5).fetch(["v1"])
    assert rows == [] and "429" in failures["v1"] and "exceeds" in failures["v1"]
    assert len(api.requests) == 1


def test_the_client_side_rate_limit_spaces_requests_across_threads():
    with FakeMetadataApi() as api:
        c = client(api, batch_size=1, requests_per_second=20.0)
        out: list = []
        workers = [
            threading.Thread(target=lambda ids: out.append(c.fetch(ids)), args=(ids,))
            for ids in (["a1", "a2", "a3", "a4", "a5"], ["b1", "b2", "b3", "b4", "b5"])
        ]
        start = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - start
    assert sum(len(rows) for rows, _ in out) == 10
    assert elapsed >= 0.45
    # receipt times jitter on a loaded machine: check spans, not single gaps (a burst of
    # 5 requests would arrive within a few ms; at 20/s they span 0.2 s)
    t = sorted(api.times)
    assert t[-1] - t[0] >= 0.40
    assert min(t[i + 4] - t[i] for i in range(len(t) - 4)) >= 0.15


def test_a_timeout_is_retried():
    with FakeMetadataApi(slow_requests=1, delay_s=2.0) as api:
        start = time.monotonic()
        rows, failures = client(api, timeout_s=0.3).fetch(["v1"])
        elapsed = time.monotonic() - start
    assert [r["video_id"] for r in rows] == ["v1"] and failures == {}
    assert len(api.requests) == 2 and elapsed < 1.5


def test_a_batch_that_keeps_failing_is_reported_not_raised():
    with FakeMetadataApi(fail_ids={"v3"}) as api:
        rows, failures = client(api, batch_size=2, max_retries=2).fetch(["v1", "v2", "v3", "v4"])
    assert [r["video_id"] for r in rows] == ["v1", "v2"]
    assert set(failures) == {"v3", "v4"}
    assert "HTTP 500" in failures["v3"] and "3 attempts" in failures["v3"]
    assert len(api.requests) == 1 + 3


def test_other_4xx_are_not_retried():
    with FakeMetadataApi(max_batch=2) as api:
        rows, failures = client(api, batch_size=3).fetch(["v1", "v2", "v3"])
    assert rows == [] and set(failures) == {"v1", "v2", "v3"}
    assert all("HTTP 400" in r for r in failures.values())
    assert len(api.requests) == 1


def test_health_up_down_and_not_configured(monkeypatch):
    api = FakeMetadataApi().start()
    c = client(api, max_retries=1)
    assert c.health() is None
    api.stop()
    assert "ConnectionError" in c.health()
    monkeypatch.delenv(URL_ENV, raising=False)
    assert URL_ENV in VideoMetadataResource().health()
    assert not VideoMetadataResource().configured
    down = VideoMetadataResource(base_url=f"http://127.0.0.1:{free_port()}", **FAST)
    assert "gave up after 4 attempts" in down.health()


def test_empty_fields_read_the_environment_at_run_time(monkeypatch):
    with FakeMetadataApi(api_key="from-env") as api:
        monkeypatch.setenv(URL_ENV, api.url + "/")
        monkeypatch.setenv(KEY_ENV, "from-env")
        c = VideoMetadataResource(**FAST)
        assert c.configured and c.url == api.url
        rows, _ = c.fetch(["v1"])
    assert len(rows) == 1 and api.requests[0].authorization == "Bearer from-env"


def _run(resource: VideoMetadataResource) -> dg.ExecuteInProcessResult:
    @dg.asset
    def probe(metadata_api: VideoMetadataResource) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"configured": metadata_api.configured})

    defs = dg.Definitions(
        assets=[probe],
        jobs=[dg.define_asset_job("probe_job", selection=[probe])],
        resources={"metadata_api": resource},
    )
    return defs.resolve_job_def("probe_job").execute_in_process()


def test_defaults_launch_without_the_env_vars_where_an_unset_envvar_would_not(monkeypatch):
    """Why definitions.py constructs `VideoMetadataResource()` rather than with EnvVar."""
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = _run(VideoMetadataResource())
    assert result.success
    (mat,) = result.get_asset_materialization_events()
    assert mat.materialization.metadata["configured"].value is False
    with pytest.raises(dg.DagsterInvalidConfigError, match=URL_ENV):
        _run(VideoMetadataResource(base_url=dg.EnvVar(URL_ENV)))
