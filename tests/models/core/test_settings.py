"""Environment resolution, and the real Redis the feature-store tests run against."""

from __future__ import annotations

from pathlib import Path

import redis

from models.core import settings


def test_defaults_and_overrides(monkeypatch, tmp_path):
    for var in [
        "CLIPFLOW_HOME",
        "CLIPFLOW_LANDING_DIR",
        "CLIPFLOW_REDIS",
        "MLFLOW_TRACKING_URI",
        "DAGSTER_HOME",
        "CLIPFLOW_ENV",
        "CI",
    ]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    s = settings.current()
    assert (s.env, s.home, s.landing_dir) == (
        "local",
        tmp_path / ".clipflow",
        tmp_path / "data" / "landing",
    )
    assert s.mlflow_uri == f"sqlite:///{tmp_path / '.clipflow' / 'mlflow.db'}"
    assert s.redis is None and s.dagster_home == tmp_path / ".clipflow" / "dagster"
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("CLIPFLOW_REDIS", "127.0.0.1:6390")
    s = settings.current()
    assert (s.env, s.redis) == ("ci", "127.0.0.1:6390")


def test_prepare_process_exports_paths_and_writes_the_dagster_yaml(monkeypatch, tmp_path):
    for var in ["CLIPFLOW_HOME", "CLIPFLOW_LANDING_DIR", "DAGSTER_HOME"]:
        monkeypatch.delenv(var, raising=False)
    s = settings.prepare_process(home=tmp_path / "h", landing_dir=tmp_path / "l")
    assert s.home == tmp_path / "h" and s.dagster_home == tmp_path / "h" / "dagster"
    assert "telemetry:\n  enabled: false" in (s.dagster_home / "dagster.yaml").read_text()
    import os

    assert Path(os.environ["DAGSTER_HOME"]) == s.dagster_home
    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"


def test_real_redis_round_trip(redis_server):
    r = redis.Redis(host=redis_server["host"], port=redis_server["port"])
    key = "clipflow:test:roundtrip"
    with r.pipeline() as p:
        p.hset(key, mapping={"a": "1", "b": "2"}).expire(key, 30)
        p.execute()
    assert r.hgetall(key) == {b"a": b"1", b"b": b"2"}
    r.delete(key)
