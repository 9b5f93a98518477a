"""The scorer under faults, in milliseconds (stand-ins for the store and the registry, as in
test_scorer.py; the real registry's own answers are tested at the end): a registry that
does not answer, an artifact that does not load, an alias deleted mid-experiment."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from scorer_support import DAY, NO_INTERVAL, T0, Store, experiment

from models.experiments.config import assign_variant
from models.serving import scorer as sc
from models.training import registry


@pytest.fixture
def flaky(monkeypatch):
    """A registry that can go down and versions whose artifacts can be corrupt."""
    state = SimpleNamespace(held={}, down=False, corrupt=set(), loads=[], asked=[])

    def version(uri, alias):
        state.asked.append((uri, alias))
        if state.down:
            raise ConnectionError("registry down")
        return state.held.get(alias)

    def load(alias, uri):
        state.loads.append((alias, state.held[alias]))
        if state.held[alias] in state.corrupt:
            raise ValueError("corrupt model.ubj")
        return SimpleNamespace(version=int(state.held[alias]))

    monkeypatch.setattr(sc, "_alias_version", version)
    monkeypatch.setattr(registry, "load_by_alias", load)
    # the stand-in registry holds no intervals.json unless a test puts one in `calibrations`
    calibrations: dict[str, dict] = {}
    monkeypatch.setattr(registry, "load_document", lambda v, name, uri: calibrations.get(str(v)))
    return state


def test_the_last_model_keeps_serving_while_the_registry_is_down(flaky, caplog):
    caplog.set_level(logging.WARNING, logger="clipflow.scorer")
    flaky.held["champion"] = "1"
    s = sc.Scorer(Store(), "uri", alias_check_s=0.0)
    assert s.registry_error is None
    assert s.model("champion").version == 1 and s.registry_error is None
    flaky.down = True
    # not "unset": the last good model, call after call
    assert [s.model("champion").version for _ in range(2)] == [1, 1]
    assert s.registry_error == "ConnectionError" and s.registry_status() == "down"
    kept = "registry unavailable (ConnectionError): champion keeps serving v1"
    assert caplog.messages == [kept, kept]
    flaky.down = False
    flaky.held["champion"] = "2"
    assert s.model("champion").version == 2 and s.registry_error is None
    asked = len(flaky.asked)
    assert s.registry_status() == "ok"  # asked now, though the model is cached
    assert flaky.asked[asked:] == [("uri", "champion")]


def test_with_no_model_loaded_a_registry_outage_is_model_unavailable(flaky):
    flaky.down = True
    s = sc.Scorer(Store(), "uri", alias_check_s=0.0)
    with pytest.raises(sc.ModelUnavailable, match=r"^model registry unavailable \(Connection"):
        s.model("champion")


def test_a_corrupt_version_is_quarantined_and_not_retried_until_the_alias_moves(flaky, caplog):
    caplog.set_level(logging.WARNING, logger="clipflow.scorer")
    flaky.held["champion"] = "1"
    s = sc.Scorer(Store(), "uri", alias_check_s=0.0)
    assert s.model("champion").version == 1
    flaky.held["champion"], flaky.corrupt = "2", {"2"}
    assert [s.model("champion").version for _ in range(5)] == [1] * 5  # the last good serves
    assert flaky.loads == [("champion", "1"), ("champion", "2")]  # v2 tried once, not per call
    assert caplog.messages == [
        "version 2 of champion does not load (ValueError): quarantined, v1 keeps serving"
    ]
    flaky.held["champion"] = "3"
    assert s.model("champion").version == 3
    fresh = sc.Scorer(Store(), "uri", alias_check_s=0.0)
    flaky.corrupt.add("3")
    with pytest.raises(sc.ModelUnavailable, match="^champion version 3 does not load$"):
        fresh.model("champion")
    assert caplog.messages[-1] == (
        "version 3 of champion does not load (ValueError): quarantined, no model"
    )


def test_a_variant_whose_alias_is_gone_is_served_by_the_champion_and_says_so(flaky):
    exp = experiment()
    user = next(f"u{i}" for i in range(100) if assign_variant(exp, f"u{i}") == "treatment")
    flaky.held["champion"] = "1"  # the challenger alias was deleted by a promotion
    store = Store(scores={"c1": (55.0, "1"), "c2": (40.0, "0")})
    s = sc.Scorer(store, "uri", [exp], clock=lambda: T0 + DAY, alias_check_s=0.0)
    route, got = s.scores(["c1", "c2"], user)
    why = "alias 'challenger' is not set: champion serves"
    assert route == sc.Route("exp", "treatment", "champion", why)
    assert got == [  # c2: made by v0, stale for the champion's model
        {"clip_id": "c1", "score": 55.0, "model_version": "1", "source": "online", **NO_INTERVAL},
        None,
    ]
    flaky.held["challenger"] = "2"
    route, _ = s.scores(["c1"], user)
    assert (route.alias, route.fallback) == ("challenger", None)


def test_the_real_registry_says_unset_only_for_a_missing_model_or_alias(tmp_path, monkeypatch):
    """(A store that does not answer raises instead: a PostgreSQL URI on a closed port
    raised OperationalError after MLflow's own connection retries, ~2 minutes, too slow
    for the suite; the stand-in outage above covers the scorer's side.)"""
    from support import tiny_training_set

    from models.training import train as training
    from models.training.evaluation import metrics

    uri = f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}"
    (tmp_path / "reg").mkdir()
    assert sc._alias_version(uri, "champion") is None  # no model registered yet
    model = training.train(tiny_training_set(100), training.TrainParams(n_estimators=2))
    v = registry.log_and_register(model, metrics(model.y_holdout, model.holdout_pred), None,
                                  None, uri)  # fmt: skip
    assert sc._alias_version(uri, "champion") is None  # registered, alias not set
    registry.promote(registry._client(uri), v, "t", expected_champion=None, tracking_uri=uri)
    assert sc._alias_version(uri, "champion") == str(v)
    # the registry it is given, not the environment's (nor one opened there)
    elsewhere = tmp_path / "env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{elsewhere}")
    assert sc._alias_version(uri, "champion") == str(v)
    assert not elsewhere.exists()


def test_any_other_registry_error_is_an_outage_not_an_unset_alias(monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

    class Failing:
        def __init__(self, tracking_uri, registry_uri):
            pass

        def get_model_version_by_alias(self, name, alias):
            raise MlflowException("database is locked", error_code=INTERNAL_ERROR)

    monkeypatch.setattr(mlflow, "MlflowClient", Failing)
    with pytest.raises(MlflowException) as raised:
        sc._alias_version("uri", "champion")
    assert raised.value.error_code == "INTERNAL_ERROR"
    s = sc.Scorer(Store(), "uri")
    with pytest.raises(sc.ModelUnavailable, match=r"\(MlflowException\)$"):
        s.model("champion")
    assert s.registry_error == "MlflowException" and s.registry_status() == "down"


def test_an_alias_seen_unset_stays_unset_while_the_registry_is_down(flaky, caplog):
    """The treatment arm after a ship (challenger deleted), then a registry outage: its users
    keep the champion's fallback (was: 503 for every treatment user)."""
    caplog.set_level(logging.WARNING, logger="clipflow.scorer")
    exp = experiment()
    user = next(f"u{i}" for i in range(100) if assign_variant(exp, f"u{i}") == "treatment")
    flaky.held["champion"] = "1"
    store = Store(scores={"c1": (55.0, "1")})
    s = sc.Scorer(store, "uri", [exp], clock=lambda: T0 + DAY, alias_check_s=0.0)
    route, _ = s.scores(["c1"], user)
    assert route.fallback == "alias 'challenger' is not set: champion serves"
    flaky.down = True
    route, got = s.scores(["c1"], user)
    assert route == sc.Route("exp", "treatment", "champion",
                             "alias 'challenger' is not set: champion serves")  # fmt: skip
    assert got == [
        {"clip_id": "c1", "score": 55.0, "model_version": "1", "source": "online", **NO_INTERVAL}
    ]
    assert s.registry_error == "ConnectionError"
    assert caplog.messages == [
        "registry unavailable (ConnectionError): challenger unset: the champion serves",
        "registry unavailable (ConnectionError): champion keeps serving v1",
    ]


def test_a_variant_alias_never_seen_while_the_registry_is_down_is_served_by_the_champion(flaky):
    exp = experiment()
    user = next(f"u{i}" for i in range(100) if assign_variant(exp, f"u{i}") == "treatment")
    flaky.held.update(champion="1", challenger="2")
    store = Store(scores={"c1": (55.0, "1")})
    s = sc.Scorer(store, "uri", [exp], clock=lambda: T0 + DAY, alias_check_s=0.0)
    assert s.model("champion").version == 1  # control users were served before the outage
    flaky.down = True
    route, got = s.scores(["c1"], user)
    why = "alias 'challenger' is not known (model registry unavailable): champion serves"
    assert route == sc.Route("exp", "treatment", "champion", why)
    assert got[0]["model_version"] == "1"
    flaky.down = False  # back: the variant's own alias serves, no fallback
    route, _ = s.scores(["c1"], user)
    assert (route.alias, route.fallback) == ("challenger", None)
    assert s.versions() == {"champion": "1", "challenger": "2"}
    flaky.held.pop("challenger")  # deleted later: "not set", no longer "not known"
    route, _ = s.scores(["c1"], user)
    assert route.fallback == "alias 'challenger' is not set: champion serves"
