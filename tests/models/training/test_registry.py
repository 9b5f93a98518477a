"""The registry on a real MLflow SQLite store: logging, tags, no pickle, aliases, loading."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from support import tiny_training_set

from models.features.clip_features import FEATURE_COLUMNS
from models.serving import scoring
from models.training import aliases as aliases_module
from models.training import registry
from models.training import train as training
from models.training.evaluation import GateResult, gate, metrics

REQUIRED_TAGS = {
    "dagster_run_id",
    "training_start",
    "training_end",
    "training_rows",
    "feature_service",
    "data_fingerprint",
}


@pytest.fixture(scope="module")
def df():
    return tiny_training_set()


@pytest.fixture(scope="module")
def good(df):
    return training.train(df, training.TrainParams(n_estimators=50))


@pytest.fixture(scope="module")
def poor(df):
    """An underfit model: 3 stumps."""
    return training.train(df, training.TrainParams(n_estimators=3, max_depth=1))


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One real MLflow SQLite store for the module (creating one costs seconds); each test
    registers under its own model name."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db"


@pytest.fixture
def name(request):
    return f"clip_quality_{request.node.name}".replace("[", "_").replace("]", "")


@pytest.fixture
def client(uri):
    return registry._client(uri)


def log(trained, uri, name, run="run-1"):
    m = metrics(trained.y_holdout, trained.holdout_pred)
    return registry.log_and_register(trained, m, {"dagster_run_id": run}, None, uri, name=name)


def decide(client, uri, name, trained, version):
    """What the training asset does: gate against the champion (if any), then act."""
    champion = registry.load_by_alias(registry.CHAMPION, uri, name=name)
    champ_pred = None if champion is None else scoring.score(champion, trained.holdout)
    result = gate(
        trained.y_holdout,
        trained.holdout_pred,
        trained.y_train_mean,
        champ_pred,
        groups=trained.holdout["clip_id"].to_numpy(),
    )
    expected = None if champion is None else champion.version
    return registry.apply_gate(client, version, result, expected, name=name, tracking_uri=uri)


def test_version_tags_metrics_and_artifacts(good, df, uri, client, name):
    v = log(good, uri, name, run="dagster-run-42")
    mv = client.get_model_version(name, v)
    assert set(mv.tags) >= REQUIRED_TAGS
    assert mv.tags["dagster_run_id"] == "dagster-run-42"
    assert mv.tags["feature_service"] == "clip_quality_v1"
    assert mv.tags["training_rows"] == str(len(df))
    assert mv.tags["data_fingerprint"] == training.fingerprint(df)
    assert pd.Timestamp(mv.tags["training_end"]) == df["event_timestamp"].max()
    assert json.loads(mv.tags["category_maps"]) == good.categories
    run = client.get_run(mv.run_id)
    assert run.data.metrics["rmse"] == pytest.approx(
        metrics(good.y_holdout, good.holdout_pred)["rmse"]
    )
    assert {"mae", "r2"} <= set(run.data.metrics)
    assert run.data.params["max_depth"] == "6"
    plots = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    assert plots == {"plots/feature_importance.png", "plots/residuals.png"}


def test_logged_model_is_xgboost_ubj_and_nothing_is_pickled(good, uri, client, name):
    v = log(good, uri, name)
    mv = client.get_model_version(name, v)
    model_dir = Path(registry._local_dir(registry._artifact_location(client, mv)))
    run_dir = Path(registry._local_dir(client.get_run(mv.run_id).info.artifact_uri))
    files = [p for d in (model_dir, run_dir) for p in d.rglob("*") if p.is_file()]
    assert "model.ubj" in {p.name for p in files}
    assert not [p for p in files if p.suffix in {".pkl", ".pickle", ".joblib", ".cloudpickle"}]
    assert (model_dir / "model.ubj").read_bytes()[:1] == b"{"  # a UBJSON object
    assert "model_format: ubj" in (model_dir / "MLmodel").read_text()
    assert "xgboost==" in (model_dir / "requirements.txt").read_text()
    xgb.Booster(model_file=str(model_dir / "model.ubj"))  # loads natively


def test_first_model_becomes_champion_and_a_worse_one_leaves_it(good, poor, uri, client, name):
    v1 = log(good, uri, name)
    assert decide(client, uri, name, good, v1) == "champion"
    assert registry.aliases(client, name) == {"champion": v1}
    assert client.get_model_version(name, v1).tags["promoted_reason"].startswith("Candidate RMSE")

    v2 = log(poor, uri, name)
    assert decide(client, uri, name, poor, v2) == "rejected"
    assert registry.aliases(client, name) == {"champion": v1}
    assert client.get_model_version(name, v2).tags["validation_status"] == "rejected"

    # an equally good model passes but does not replace the champion: it is the challenger
    v3 = log(good, uri, name)
    assert decide(client, uri, name, good, v3) == "challenger"
    assert registry.aliases(client, name) == {"champion": v1, "challenger": v3}
    # promoting the challenger clears the challenger alias
    assert registry.promote(client, v3, "manual", expected_champion=v1, name=name)
    assert registry.aliases(client, name) == {"champion": v3}


def test_set_alias_checked_refuses_a_stale_expectation(good, uri, client, name):
    v1, v2 = log(good, uri, name), log(good, uri, name)
    assert registry.set_alias_checked(client, name, "champion", v1, None)
    assert not registry.set_alias_checked(client, name, "champion", v2, None)  # stale
    assert not registry.set_alias_checked(client, name, "champion", v2, "99")
    assert registry.aliases(client, name) == {"champion": v1}
    assert registry.set_alias_checked(client, name, "champion", v2, v1)
    assert registry.aliases(client, name) == {"champion": v2}
    assert not registry.promote(client, v1, "late decision", expected_champion=v1, name=name)
    assert registry.aliases(client, name) == {"champion": v2}


def test_concurrent_promotions_from_the_same_champion_have_one_winner(good, uri, name):
    client = registry._client(uri)
    base = log(good, uri, name)
    assert registry.set_alias_checked(client, name, "champion", base, None)
    versions = [log(good, uri, name) for _ in range(4)]
    results = {}

    def attempt(v):
        results[v] = registry.promote(registry._client(uri), v, "race", base, name=name)

    threads = [threading.Thread(target=attempt, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, won in results.items() if won]
    assert len(winners) == 1
    assert registry.aliases(client, name)["champion"] == winners[0]


def test_load_by_alias_predicts_like_the_in_memory_booster(good, uri, client, name):
    assert registry.load_by_alias("champion", uri, name=name) is None  # no such model
    v = log(good, uri, name)
    assert registry.load_by_alias("champion", uri, name=name) is None  # no such alias
    registry.promote(client, v, "first", None, name=name)
    loaded = registry.load_by_alias("champion", uri, name=name)
    assert loaded.version == v and loaded.alias == "champion"
    assert loaded.categories == good.categories and loaded.features == FEATURE_COLUMNS
    x = training.to_matrix(good.holdout, good.categories)
    assert np.array_equal(loaded.booster.inplace_predict(x), good.booster.inplace_predict(x))
    assert np.array_equal(scoring.score(loaded, good.holdout), good.holdout_pred.astype(np.float32))


def test_logging_leaves_the_global_tracking_uri_alone(good, uri, name, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    log(good, uri, name)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"
    assert mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"
    assert list(tmp_path.iterdir()) == []  # no default store or artifacts in the cwd


def test_apply_gate_outcomes_and_tags(good, uri, client, name):
    v1, v2, v3, v4, v5 = (log(good, uri, name) for _ in range(5))

    def apply(version, result, expected):
        return registry.apply_gate(client, version, result, expected, name=name, tracking_uri=uri)

    def tags(version):
        return client.get_model_version(name, version).tags

    ok = GateResult(True, [], {"checks": ["ok.", "fine."], "better_than_champion": False})
    better = GateResult(True, [], {"checks": ["better."], "better_than_champion": True})
    # no champion yet: a passing version becomes champion, clearly better or not
    assert apply(v1, ok, None) == "champion"
    assert tags(v1)["gate"] == "ok. fine." and tags(v1)["promoted_reason"] == "ok. fine."
    assert tags(v1)["validation_status"] == "passed"
    # passed, not clearly better: challenger; an older one after it only passes
    assert apply(v3, ok, v1) == "challenger" and tags(v3)["challenger_reason"] == "ok. fine."
    assert apply(v2, ok, v1) == "passed" and tags(v2)["validation_status"] == "passed"
    assert "challenger_reason" not in tags(v2)
    # clearly better, but the champion moved since the decision: challenger, not champion
    assert apply(v4, better, v2) == "challenger"
    assert registry.aliases(client, name) == {"champion": v1, "challenger": v4}
    assert apply(v5, better, v1) == "champion"
    assert registry.aliases(client, name) == {"champion": v5, "challenger": v4}
    # failed: the reasons are the gate's text when there are no checks
    assert apply(v2, GateResult(False, ["bad.", "worse."], {}), v5) == "rejected"
    assert tags(v2)["gate"] == "bad. worse." and tags(v2)["validation_status"] == "rejected"
    # the text is cut at 5,000 characters
    long = GateResult(False, ["x" * 4999, "yz"], {})
    assert apply(v3, long, v5) == "rejected" and tags(v3)["gate"] == "x" * 4999 + " "


def test_set_challenger_refuses_the_champion_and_no_newer_version(good, uri, client, name):
    v1, v2, v3, v4 = (log(good, uri, name) for _ in range(4))
    assert registry.promote(client, v1, "first", expected_champion=None, name=name)

    def challenger(version):
        return registry.set_challenger(client, version, f"gate {version}", name, uri)

    assert not challenger(v1)  # the champion
    assert challenger(v3) and not challenger(v3) and not challenger(v2)  # same, older
    assert client.get_model_version(name, v3).tags["challenger_reason"] == f"gate {v3}"
    assert challenger(v4)  # newer: moves the alias
    assert registry.aliases(client, name) == {"champion": v1, "challenger": v4}
    assert "challenger_reason" not in client.get_model_version(name, v2).tags
    # promote without an expected champion takes the champion as it is under the lock
    assert registry.promote(client, v4, "now", name=name, tracking_uri=uri)
    assert registry.aliases(client, name) == {"champion": v4}


def test_sqlite_path_of_a_store_uri():
    assert aliases_module.sqlite_path("sqlite:///tmp/m/mlflow.db") == Path("tmp/m/mlflow.db")
    assert aliases_module.sqlite_path("sqlite:////abs/mlflow.db?timeout=20") == Path(
        "/abs/mlflow.db"
    )
    assert aliases_module.sqlite_path("sqlite:///") is None
    assert aliases_module.sqlite_path("sqlite:///:memory:") is None
    assert aliases_module.sqlite_path("sqlite:///:memory:?cache=shared") is None
    assert aliases_module.sqlite_path("postgresql://u@h/db") is None


def test_the_lock_follows_the_tracking_uri_else_the_clients_registry():
    client = SimpleNamespace(_registry_uri="sqlite:///r.db")
    assert aliases_module._store_uri(client, "sqlite:///t.db") == "sqlite:///t.db"
    assert aliases_module._store_uri(client, None) == "sqlite:///r.db"
    assert aliases_module._store_uri(object(), None) == ""
    assert aliases_module._store_uri(SimpleNamespace(_registry_uri=None), None) == ""


def _bare_versions(client, name, n):
    """Versions without artifacts (alias moves need none)."""
    client.create_registered_model(name)
    return [client.create_model_version(name, source="/none").version for _ in range(n)]


def test_every_move_is_logged_with_the_aliases_after_it(uri, client, name):
    from datetime import UTC, datetime

    v1, v2, v3 = (str(v) for v in _bare_versions(client, name, 3))
    day = datetime(2026, 6, 10, 23, 59, 59, 999999, tzinfo=UTC)
    before = datetime.now(UTC)
    assert registry.alias_log(client, name) == []
    assert registry.set_alias_checked(client, name, "champion", v1, None, uri)
    assert not registry.set_alias_checked(client, name, "champion", v2, None, uri)  # stale
    assert not registry.set_challenger(client, v1, "the champion", name, uri)
    assert registry.set_challenger(client, v2, "gate", name, uri, as_of=day)
    assert registry.promote(client, v2, "ab", v1, name, uri, as_of=day, experiment="exp")
    assert not registry.promote(client, v3, "stale", v1, name, uri)
    ok = GateResult(True, [], {"checks": ["ok."], "better_than_champion": False})
    assert registry.apply_gate(client, v3, ok, v2, name, uri, as_of=day) == "challenger"
    log = registry.alias_log(client, name)
    assert [(e["aliases"], e["as_of"], e["why"]) for e in log] == [
        ({"champion": v1}, None, f"champion <- v{v1}"),
        ({"champion": v1, "challenger": v2}, day.isoformat(), f"challenger <- v{v2}: gate"),
        ({"champion": v2}, day.isoformat(), f"champion <- v{v2}: ab"),
        ({"champion": v2, "challenger": v3}, day.isoformat(), f"challenger <- v{v3}: ok."),
    ]
    assert [e.get("experiment") for e in log] == [None, None, "exp", None]
    assert ["experiment" in e for e in log] == [False, False, True, False]  # only when given
    assert all(before <= datetime.fromisoformat(e["at"]) <= datetime.now(UTC) for e in log)
    keys = sorted(k for k in client.get_registered_model(name).tags if k.startswith("alias_"))
    assert keys == [f"alias_log.{i:08d}" for i in range(1, 5)]
    assert registry.alias_log(client, f"{name}_never_registered") == []
    # a long reason is cut in the log (the version's own tag keeps it whole)
    assert registry.promote(client, v3, "r" * 400, v2, name, uri)
    last = registry.alias_log(client, name)[-1]
    why = last["why"]
    assert len(why) == 300 and why == (f"champion <- v{v3}: " + "r" * 400)[:300]
    assert "experiment" not in last  # a promotion by no experiment says none, not null


def test_a_challenger_move_another_writer_won_is_not_a_move(uri, client, name, monkeypatch):
    """The alias re-read after the move shows another version (a writer outside clipflow's
    lock, e.g. the MLflow UI): set_challenger says no, logs nothing, tags nothing."""
    from models.training import aliases as al

    v1, v2 = (str(v) for v in _bare_versions(client, name, 2))
    assert registry.set_alias_checked(client, name, "champion", v1, None, uri)
    monkeypatch.setattr(al, "_checked_move", lambda *a: False)
    assert registry.set_challenger(client, v2, "gate", name, uri) is False
    assert len(registry.alias_log(client, name)) == 1
    assert "challenger_reason" not in client.get_model_version(name, v2).tags


def test_the_moves_log_the_data_day_they_were_made_for(uri, client, name):
    """`as_of` reaches the log from every mover: a checked move, and a gate's promotion."""
    from datetime import UTC, datetime, timedelta

    v1, v2 = (str(v) for v in _bare_versions(client, name, 2))
    d1 = datetime(2026, 6, 10, 23, 59, 59, 999999, tzinfo=UTC)
    d2 = d1 + timedelta(days=1)
    assert registry.set_alias_checked(client, name, "champion", v1, None, uri, as_of=d1)
    better = GateResult(True, [], {"checks": ["ok."], "better_than_champion": True})
    assert registry.apply_gate(client, v2, better, v1, name, uri, as_of=d2) == "champion"
    log = registry.alias_log(client, name)
    assert [(e["aliases"], e["as_of"]) for e in log] == [
        ({"champion": v1}, d1.isoformat()),
        ({"champion": v2}, d2.isoformat()),
    ]


def test_the_daily_stamp_logs_only_what_the_log_does_not_say_yet(uri, client, name):
    from datetime import UTC, datetime, timedelta

    d1 = datetime(2026, 6, 10, tzinfo=UTC)
    assert registry.stamp(client, d1, name, uri) is None  # no registered model
    (v1, v2) = (str(v) for v in _bare_versions(client, name, 2))
    first = registry.stamp(client, d1, name, uri)  # nothing logged yet: the aliases as found
    assert (first["aliases"], first["as_of"], first["why"]) == ({}, d1.isoformat(), "observed")
    assert registry.stamp(client, d1 + timedelta(days=1), name, uri) is None  # said already
    assert registry.set_alias_checked(client, name, "champion", v1, None, uri)
    d3 = d1 + timedelta(days=2)
    assert registry.stamp(client, d3, name, uri)["aliases"] == {"champion": v1}  # unstamped move
    assert registry.stamp(client, d3, name, uri) is None
    client.set_registered_model_alias(name, "challenger", v2)  # by hand: not logged
    hand = registry.stamp(client, d3, name, uri)
    assert hand["aliases"] == {"champion": v1, "challenger": v2}
    assert [e["as_of"] for e in registry.alias_log(client, name)] == [
        d1.isoformat(), None, d3.isoformat(), d3.isoformat(),
    ]  # fmt: skip
