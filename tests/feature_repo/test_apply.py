"""The Feast repo: a programmatic apply, the generated YAML and the `feast` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from feature_repo import config

FEAST = str(Path(sys.executable).parent / "feast")
ROOT = Path(__file__).resolve().parents[2]


def test_apply_registers_the_repo_on_a_temp_registry(home, monkeypatch):
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    monkeypatch.delenv("CLIPFLOW_REDIS", raising=False)
    applied = config.apply()
    assert applied["entities"] == ["clip"]
    assert applied["feature_views"] == ["clip_features", "clip_scores"]
    assert "clip_quality_v1" in applied["feature_services"]
    assert (home / "feast" / "registry.db").is_file()

    store = config.feature_store()
    assert store.project == "clipflow"
    [clip] = store.list_entities()
    assert (clip.name, clip.join_key, clip.tags["owner"]) == (
        "clip",
        "clip_id",
        "ml-platform@clipflow",
    )
    assert sorted(v.name for v in store.list_feature_views()) == ["clip_features", "clip_scores"]
    service = store.get_feature_service("clip_quality_v1")
    [projection] = service.feature_view_projections
    assert projection.name == "clip_features"
    assert [f.name for f in projection.features] == CLIP_FEATURE_NAMES
    scores = store.get_feature_view("clip_scores")
    assert [f.name for f in scores.features] == [
        "score", "model_version", "score_low", "score_high", "interval_level"
    ]  # fmt: skip
    for view in store.list_feature_views():
        assert view.tags["owner"] == "ml-platform@clipflow"
    source = store.get_data_source("clip_features_source")
    assert source.path == str(home / "warehouse" / "clip_features" / "**" / "*.parquet")
    assert store.get_data_source("clip_features_push").batch_source.name == "clip_features_source"

    again = config.apply()
    assert again["deleted"] == [] and again == applied


def test_apply_follows_a_changed_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPFLOW_REDIS", raising=False)
    for name in ("a", "b"):
        monkeypatch.setenv("CLIPFLOW_HOME", str(tmp_path / name))
        config.apply()
        source = config.feature_store().get_data_source("clip_scores_source")
        assert source.path.startswith(str(tmp_path / name / "warehouse" / "clip_scores"))


def test_repo_config_picks_redis_when_clipflow_redis_is_set(home, monkeypatch):
    monkeypatch.setenv("CLIPFLOW_REDIS", "127.0.0.1:6399,db=2")
    cfg = config.repo_config()
    assert (cfg.online_store.type, cfg.online_store.connection_string) == (
        "feature_repo.online_store.FastRedisOnlineStore",
        "127.0.0.1:6399,db=2",
    )
    assert cfg.offline_store.type == "duckdb"
    assert cfg.entity_key_serialization_version == 3
    assert Path(cfg.registry.path) == home / "feast" / "registry.db"
    monkeypatch.delenv("CLIPFLOW_REDIS")
    cfg = config.repo_config()
    assert cfg.online_store.type == "sqlite"
    assert Path(cfg.online_store.path) == home / "feast" / "online.db"


def test_yaml_keeps_the_redis_connection_string_a_variable(home, monkeypatch):
    from feast.repo_config import load_repo_config

    secret = "127.0.0.1:6399,password=s3#c: ret"
    monkeypatch.setenv("CLIPFLOW_REDIS", secret)
    path = config.write_feature_store_yaml()
    assert path == home / "feast" / "feature_store.yaml"
    text = path.read_text()
    assert "s3#c" not in text
    assert yaml.safe_load(text)["online_store"]["connection_string"] == "${CLIPFLOW_REDIS}"
    loaded = load_repo_config(config.REPO_DIR, path)
    assert loaded.online_store.connection_string == secret


def test_feast_cli_applies_and_lists_the_repo_from_the_generated_yaml(home, monkeypatch):
    monkeypatch.delenv("CLIPFLOW_REDIS", raising=False)
    path = config.write_feature_store_yaml()

    def feast(*args: str) -> str:
        proc = subprocess.run(
            [FEAST, "-c", "feature_repo", "-f", str(path), *args],
            cwd=ROOT,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert "Created feature view clip_features" in feast("apply")
    views = feast("feature-views", "list")
    assert "clip_features" in views and "clip_scores" in views
    assert "clip_quality_v1" in feast("feature-services", "list")
    # the programmatic apply sees the registry the CLI wrote as matching the code
    assert config.apply()["deleted"] == []


def test_importing_the_config_does_not_import_feast():
    code = "import sys, feature_repo.config; print('feast' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
