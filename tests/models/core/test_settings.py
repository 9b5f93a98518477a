"""Environment resolution, and the real Redis the feature-store tests run against."""

from __future__ import annotations

from pathlib import Path

import pytest
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


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),  # the default: the environment's path
        ('/srv/it\'s a "home" 50% [x]*? env=prod', True),
        ("/srv/clipflow/", True),
        ("relative/home", False),
        ("~/home", False),
        ("/srv/../etc", False),
        ("/srv/a\x00b", False),
        ("/srv/a\nb", False),
        ("/srv/a\tb", False),
        ("/" + "a" * 4096, False),
    ],
)
def test_run_config_paths(value, ok):
    if ok:
        assert settings.check_path(value) == value
    else:
        with pytest.raises(ValueError):
            settings.check_path(value)


def test_a_file_path_needs_its_suffix():
    assert settings.check_path("/srv/alerts.JSONL", (".jsonl",))
    for bad in ["/home/me/.bashrc", "/srv/alerts.jsonl.sh", "/srv/alerts"]:
        with pytest.raises(ValueError, match="ending in .jsonl"):
            settings.check_path(bad, (".jsonl",))


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("", True),
        ("sqlite:////srv/clipflow/mlflow.db", True),
        ("sqlite:////srv/it's a home/mlflow.sqlite", True),
        ("sqlite:///relative.db", False),
        ("sqlite:////srv/../etc/mlflow.db", False),
        ("sqlite:////srv/mlflow.db?mode=ro", False),
        ("sqlite:////srv/mlflow.txt", False),
        ("http://attacker.example:5000", False),
        ("https://mlflow.internal", False),
        ("postgresql://user:pw@db/mlflow", False),
        ("databricks", False),
        ("file:///srv/mlruns", False),
    ],
)
def test_a_launch_may_name_only_a_local_sqlite_mlflow_store(uri, ok):
    if ok:
        assert settings.check_sqlite_uri(uri) == uri
    else:
        with pytest.raises(ValueError):
            settings.check_sqlite_uri(uri)


@pytest.mark.parametrize(
    "name", ["plain", 'it\'s a "home" 50% [x]*', "q?", "hash #1", "50%41", "a\\b"]
)
def test_the_default_mlflow_store_is_the_home_s_file_whatever_its_name(name, tmp_path):
    from sqlalchemy.engine import make_url

    db = tmp_path / name / "mlflow.db"
    uri = settings.sqlite_uri(db)
    assert make_url(uri).database == str(db)  # what SQLAlchemy (MLflow's store) opens
    assert uri == f"sqlite:///{db}" or any(c in name for c in "%?#")  # plain when it can be
