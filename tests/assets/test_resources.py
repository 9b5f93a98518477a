"""One home: every resource built by clipflow_resources(home) derives its paths from it,
whatever CLIPFLOW_HOME says; an empty home follows CLIPFLOW_HOME at use time."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.resources import WarehouseResource, clipflow_resources


def _paths(res) -> dict[str, Path]:
    return {
        "warehouse": res["warehouse"].get().root,
        "feast registry": Path(res["feast"].store().config.registry.path),
        "mlflow": Path(res["mlflow"].uri.removeprefix("sqlite:///")),
        "alerts": res["notifier"].path,
        "webhooks db": res["webhooks"].db_path,
        "webhook subscribers": res["webhooks"].subscribers_path,
    }


def test_every_path_follows_the_given_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPFLOW_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CLIPFLOW_WEBHOOKS", raising=False)
    home = tmp_path / "home"
    paths = _paths(clipflow_resources(home=str(home)))
    assert len(paths) == 6
    outside = {k: p for k, p in paths.items() if not p.resolve().is_relative_to(home)}
    assert outside == {}


def test_an_empty_home_is_clipflow_home_at_use_time(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CLIPFLOW_WEBHOOKS", raising=False)
    res = clipflow_resources()  # built before the variable is set, as at import
    monkeypatch.setenv("CLIPFLOW_HOME", str(tmp_path / "late"))
    paths = _paths(res)
    assert all(p.resolve().is_relative_to(tmp_path / "late") for p in paths.values())


@pytest.mark.parametrize("limit", ["1GB'; COPY (SELECT 42) TO 'owned.csv'; SELECT '", "lots", ""])
def test_a_memory_limit_that_is_not_a_size_is_refused(tmp_path, limit):
    res = clipflow_resources(home=str(tmp_path))
    wh = res["warehouse"].model_copy(update={"memory_limit": limit})
    if limit == "":
        assert wh.get().memory_limit is None  # empty: DuckDB's default
        return
    with pytest.raises(ValueError, match="memory_limit"):
        wh.get()
    assert not (tmp_path / "owned.csv").exists()


def test_an_env_var_is_checked_once_the_run_resolves_it(tmp_path, monkeypatch):
    """`home=dg.EnvVar(...)` builds (its value is not known yet); the run checks the value."""
    monkeypatch.setenv("CLIPFLOW_TEST_HOME", str(tmp_path))
    monkeypatch.setenv("CLIPFLOW_TEST_BAD_HOME", "relative'; SELECT 1; --")

    @dg.asset
    def probe(warehouse: WarehouseResource) -> None:
        assert warehouse.home == str(tmp_path)

    def run(var: str) -> dg.ExecuteInProcessResult:
        resource = WarehouseResource(home=dg.EnvVar(var))
        return dg.materialize([probe], resources={"warehouse": resource}, raise_on_error=False)

    assert run("CLIPFLOW_TEST_HOME").success
    bad = run("CLIPFLOW_TEST_BAD_HOME")
    (failure,) = [e for e in bad.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
    error, text = failure.event_specific_data.error, ""
    while error is not None:
        text, error = text + error.message, error.cause or error.context
    assert "WarehouseResource\nhome\n  Value error" in text and "absolute path" in text
