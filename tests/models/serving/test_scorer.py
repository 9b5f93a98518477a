"""The scorer's decisions in milliseconds: which experiment and alias serve a user, when a
model is re-read, and whether a clip's score comes from the online store or the model.
The Feast store and the registry are stand-ins here (the real ones: tests/pipelines/serve)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from scorer_support import DAY, NO_INTERVAL, T0, Store, experiment

from models.experiments.config import assign_variant
from models.serving import scorer as sc
from models.serving import scoring
from models.training import registry


@pytest.fixture
def registry_of(monkeypatch):
    """alias -> version in a dict; loads counted; a model scores clips as 10 * version."""
    held, loads = {}, []

    def load(alias, uri):
        assert uri == "uri"
        loads.append(alias)
        return SimpleNamespace(version=int(held[alias]))

    def version(uri, alias):
        assert uri == "uri"
        return held.get(alias)

    monkeypatch.setattr(sc, "_alias_version", version)
    monkeypatch.setattr(registry, "load_by_alias", load)
    # the stand-in registry holds no intervals.json unless a test puts one in `calibrations`
    calibrations: dict[str, dict] = {}

    def document(v, name, uri):
        assert (name, uri) == ("intervals.json", "uri")
        got = calibrations.get(str(v))
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(registry, "load_document", document)
    monkeypatch.setattr(
        scoring, "score", lambda model, table: np.full(table.num_rows, 10.0 * model.version)
    )
    return SimpleNamespace(held=held, loads=loads, calibrations=calibrations)


@pytest.fixture
def clock(monkeypatch):
    """`time.monotonic` as the scorer sees it, moved by the test (starts at 1000 s)."""
    now = SimpleNamespace(t=1000.0)
    monkeypatch.setattr(sc, "time", SimpleNamespace(monotonic=lambda: now.t))
    return now


class WatchedLock:
    """Stands in for the scorer's lock: counts how often it is taken and runs `meanwhile` as
    it is (what another thread did while this one waited for it)."""

    def __init__(self, meanwhile=lambda: None):
        self.taken, self.meanwhile, self._lock = 0, meanwhile, threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        self.taken += 1
        self.meanwhile()

    def __exit__(self, *exc):
        self._lock.release()


def test_active_experiment_is_the_latest_started_live_one_with_aliases():
    a = experiment("a", start=T0, end=T0 + 5 * DAY)
    b = experiment("b", start=T0 + DAY, end=T0 + 3 * DAY)
    bare = experiment("bare", start=T0 + 2 * DAY, aliases={})
    assert sc.active_experiment([a, b, bare], T0 - timedelta(seconds=1)) is None
    assert sc.active_experiment([a, b, bare], T0) is a  # start is inclusive
    assert sc.active_experiment([b, a, bare], T0 + 2 * DAY) is b  # not the first listed
    assert sc.active_experiment([a, b, bare], T0 + 3 * DAY) is a  # end is exclusive
    assert sc.active_experiment([a, b], T0 + 5 * DAY) is None
    assert sc.active_experiment([], T0) is None


def test_a_user_in_an_experiment_gets_the_variants_alias(registry_of):
    exp = experiment(variants={"control": 0.5, "treatment": 0.5})
    users = [f"u{i}" for i in range(40)]
    live = sc.Scorer(Store(), "uri", [exp], clock=lambda: T0 + DAY)
    for user in users:
        variant = assign_variant(exp, user)
        assert live.route(user) == sc.Route("exp", variant, exp.model_aliases[variant])
    assert {live.route(u).alias for u in users} == {"champion", "challenger"}
    # no user, no live experiment, or a variant without an alias: champion serves
    assert live.route(None) == sc.Route(None, None, "champion")
    after = sc.Scorer(Store(), "uri", [exp], clock=lambda: T0 + 10 * DAY)
    assert all(after.route(u) == sc.Route(None, None, "champion") for u in users)
    partial = experiment(aliases={"treatment": "challenger"})
    routes = [sc.Scorer(Store(), "uri", [partial], clock=lambda: T0).route(u) for u in users]
    assert sc.Route("exp", "control", "champion") in routes


def test_the_model_is_reread_only_after_alias_check_s_and_reloaded_when_it_moved(registry_of):
    registry_of.held["champion"] = "1"
    lazy = sc.Scorer(Store(), "uri", alias_check_s=3600.0)
    assert lazy.model("champion").version == 1
    registry_of.held["champion"] = "2"
    assert lazy.model("champion").version == 1  # cached: not re-read yet
    eager = sc.Scorer(Store(), "uri", alias_check_s=0.0)
    assert eager.model("champion").version == 2
    assert eager.model("champion").version == 2
    assert registry_of.loads == ["champion", "champion"]  # the same version is not reloaded
    registry_of.held["champion"] = "3"
    assert eager.model("champion").version == 3
    assert eager.versions() == {"champion": "3"}
    del registry_of.held["champion"]
    assert eager.model("champion") is None
    assert eager.versions() == {}


def test_due_and_the_reread_come_exactly_alias_check_s_after_the_last_read(registry_of, clock):
    registry_of.held["champion"] = "1"
    s = sc.Scorer(Store(), "uri")  # the default: 10 s
    assert s.due("champion")  # never read
    assert s.model("champion").version == 1
    registry_of.held["champion"] = "2"
    clock.t = 1009.999
    assert not s.due("champion") and s.model("champion").version == 1
    clock.t = 1010.0
    assert s.due("champion") and s.model("champion").version == 2
    assert not s.due("champion")


def test_a_fresh_cached_model_is_served_without_taking_the_lock(registry_of, clock):
    """The API calls `model` on the event loop when not `due`: it must not wait there for a
    thread that holds the lock while it asks a slow registry."""
    registry_of.held["champion"] = "1"
    s = sc.Scorer(Store(), "uri")
    s._lock = lock = WatchedLock()
    assert s.model("champion").version == 1
    clock.t += 5.0
    assert s.model("champion").version == 1
    assert lock.taken == 1


def test_a_model_read_by_another_thread_while_waiting_for_the_lock_is_served(registry_of, clock):
    registry_of.held["champion"] = "1"
    s = sc.Scorer(Store(), "uri")
    theirs = SimpleNamespace(version=7)
    s._lock = WatchedLock(lambda: s._models.setdefault("champion", (theirs, clock.t)))
    assert s.model("champion") is theirs  # not read again, nor v1 loaded
    assert registry_of.loads == []


def test_champion_scores_come_online_when_fresh_else_from_the_model(registry_of):
    registry_of.held["champion"] = "2"
    feats = {"c": {"duration_s": 9.0}, "d": {"views_1d": 3}, "e": {"resolution": "1080p"}}
    store = Store(scores={"a": (55.0, "2"), "b": (40.0, "1"), "c": (None, None)}, features=feats)
    route, out = sc.Scorer(store, "uri").scores(["a", "b", "c", "d", "e", "x"], "u1")
    assert route == sc.Route(None, None, "champion")
    assert out == [
        {"clip_id": "a", "score": 55.0, "model_version": "2", "source": "online", **NO_INTERVAL},
        None,  # made by v1, no features: unknown rather than stale
        {"clip_id": "c", "score": 20.0, "model_version": "2", "source": "computed", **NO_INTERVAL},
        {"clip_id": "d", "score": 20.0, "model_version": "2", "source": "computed", **NO_INTERVAL},
        {"clip_id": "e", "score": 20.0, "model_version": "2", "source": "computed", **NO_INTERVAL},
        None,
    ]
    assert store.calls[1] == ("service", ["b", "c", "d", "e", "x"])


def test_without_a_champion_model_any_online_score_serves(registry_of):
    store = Store(scores={"a": (55.0, "7")}, features={"b": {"duration_s": 1.0}})
    _, out = sc.Scorer(store, "uri").scores(["a", "b"])
    assert out == [
        {"clip_id": "a", "score": 55.0, "model_version": "7", "source": "online", **NO_INTERVAL},
        None,
    ]
    assert len(store.calls) == 1  # nothing to compute with


def test_a_challenger_user_is_scored_by_the_challenger_not_the_online_store(registry_of):
    registry_of.held.update(champion="1", challenger="2")
    exp = experiment(variants={"treatment": 1.0, "control": 0.0})  # every user: treatment
    store = Store(scores={"a": (55.0, "1")}, features={"a": {"duration_s": 1.0}})
    route, out = sc.Scorer(store, "uri", [exp], clock=lambda: T0).scores(["a", "x"], "u1")
    assert route == sc.Route("exp", "treatment", "challenger")
    assert out == [
        {"clip_id": "a", "score": 20.0, "model_version": "2", "source": "computed", **NO_INTERVAL},
        None,
    ]
    assert [c[0] for c in store.calls] == ["service"]


def test_scores_carry_their_interval_stored_online_or_computed_by_age(registry_of):
    """An online score brings the interval stored with it; a computed one gets its model's
    calibration at the clip's age: creation-day residuals 0..49 give q = the 41st smallest
    (k = ceil(51 x 0.8)) = 40, 3-day residuals 0, 0.1, ... 4.9 give 4.0."""
    from models.training import intervals

    registry_of.held["champion"] = "2"
    ages = np.array([10.0] * 50 + [100.0] * 50)
    resid = np.concatenate([np.arange(50.0), np.arange(50.0) / 10])
    pred = np.full(100, 50.0)
    registry_of.calibrations["2"] = intervals.calibrate(ages, pred + resid, pred)
    feats = {"c": {"duration_s": 9.0, "clip_age_hours": 10.0},
             "d": {"views_1d": 3, "clip_age_hours": 100.0}}  # fmt: skip
    store = Store(scores={"a": (55.0, "2", 50.0, 60.0, 0.8)}, features=feats)
    _, out = sc.Scorer(store, "uri").scores(["a", "c", "d"])
    level = {"interval_level": 0.8}
    assert out == [
        {"clip_id": "a", "score": 55.0, "model_version": "2", "source": "online",
         "score_low": 50.0, "score_high": 60.0, **level},
        {"clip_id": "c", "score": 20.0, "model_version": "2", "source": "computed",
         "score_low": 0.0, "score_high": 60.0, **level},  # 20 - 40 clipped at 0
        {"clip_id": "d", "score": 20.0, "model_version": "2", "source": "computed",
         "score_low": 16.0, "score_high": 24.0, **level},
    ]  # fmt: skip


def test_unreadable_intervals_keep_the_model_serving_without_a_made_up_interval(
    registry_of, caplog
):
    registry_of.held["champion"] = "2"
    registry_of.calibrations["2"] = OSError("artifact store down")
    store = Store(features={"c": {"duration_s": 9.0, "clip_age_hours": 10.0}})
    with caplog.at_level(logging.WARNING, logger="clipflow.scorer"):
        _, out = sc.Scorer(store, "uri").scores(["c"])
    assert out == [
        {"clip_id": "c", "score": 20.0, "model_version": "2", "source": "computed", **NO_INTERVAL}
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "intervals of version 2 unreadable (OSError): computed scores carry none"
    ]


def test_a_feast_registry_from_before_intervals_serves_the_score_without_them(registry_of):
    """Applied before the view had the interval fields: the scorer asks only for the score
    and its version (asking for a field the view lacks would fail every request)."""
    store = Store(scores={"a": (55.0, "7")}, score_fields=["score", "model_version"])
    s = sc.Scorer(store, "uri")
    assert s.score_features == ["clip_scores:score", "clip_scores:model_version"]
    _, out = s.scores(["a"])
    assert out == [{"clip_id": "a", "score": 55.0, "model_version": "7", "source": "online",
                    **NO_INTERVAL}]  # fmt: skip
