"""An experiment's `ship` bound to the versions that served (models/experiments/promotion.py):
when each alias-log entry took effect and which versions served each variant (pure, from
log entries), then the promotion on a real MLflow SQLite store (bare versions: aliases
need no artifacts)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from models.experiments import promotion as pr
from models.experiments.config import ExperimentConfig
from models.training import registry

T0 = datetime(2026, 6, 10, tzinfo=UTC)
DAY, US = timedelta(days=1), timedelta(microseconds=1)
BOTH = {"champion": "1", "challenger": "2"}


def exp_(**changes) -> ExperimentConfig:
    base = ExperimentConfig(
        experiment_id="exp", name="exp", variants={"control": 0.5, "treatment": 0.5},
        start=T0, end=T0 + 10 * DAY, primary_metric="watch_time_s", min_sample_size=1,
        confidence_level=0.95, model_aliases={"control": "champion", "treatment": "challenger"},
    )  # fmt: skip
    return replace(base, **changes)


def entry(aliases, at, as_of=None, **extra) -> dict:
    iso = None if as_of is None else as_of.isoformat()
    return {"aliases": aliases, "at": at.isoformat(), "as_of": iso, "why": "t", **extra}


# -- when an entry took effect ----------------------------------------------------------
def test_a_stamped_entry_counts_from_its_as_of_an_unstamped_one_from_the_next_stamp():
    later = T0 + 100 * DAY  # a backfill: every move happens long after its data day
    log = [
        entry(BOTH, later),  # unstamped, a stamp follows: that stamp's as_of
        entry(BOTH, later, T0 + DAY),
        entry(BOTH, T0 + DAY + 5 * US),  # unstamped, happened before the next stamp: then
        entry(BOTH, later, T0 + 2 * DAY),
        entry(BOTH, T0 + 3 * DAY),  # no stamp after it: when it happened
    ]
    assert pr.effective_times(log) == [T0 + DAY, T0 + DAY, T0 + DAY + 5 * US, T0 + 2 * DAY,
                                       T0 + 3 * DAY]  # fmt: skip
    assert pr.effective_times([]) == []


def test_nothing_takes_effect_before_a_day_already_stamped():
    log = [
        entry(BOTH, T0, T0 + 5 * DAY),
        entry(BOTH, T0, T0 + 2 * DAY),  # a re-run of an older day
        entry(BOTH, T0 + DAY),  # happened "before", logged after the day-5 stamp
        entry(BOTH, T0, T0 + 6 * DAY),
    ]
    assert pr.effective_times(log) == [T0 + 5 * DAY] * 3 + [T0 + 6 * DAY]
    # the floor is the stamps', not an unstamped move's time
    log = [entry(BOTH, T0 + 5 * DAY), entry(BOTH, T0 + 3 * DAY)]
    assert pr.effective_times(log) == [T0 + 5 * DAY, T0 + 3 * DAY]


# -- which versions served --------------------------------------------------------------
def test_a_move_during_the_experiment_changes_the_served_version():
    moved = {"champion": "1", "challenger": "3"}
    log = [entry(BOTH, T0 - DAY, T0 - DAY), entry(moved, T0 + 2 * DAY, T0 + 2 * DAY)]
    b = pr.bind_versions(log, exp_(), T0 + 5 * DAY)
    assert b.changed == ["treatment"] and b.known_from == T0 and b.shipped is None
    assert b.versions == {"control": [("1", None)],
                          "treatment": [("2", None), ("3", T0 + 2 * DAY)]}  # fmt: skip
    assert b.served("treatment") == "3" and b.served("control") == "1"
    assert b.to_dict() == {
        "known_from": T0.isoformat(),
        "changed": ["treatment"],
        "variants": {
            "control": [{"version": "1", "from": None}],
            "treatment": [{"version": "2", "from": None},
                          {"version": "3", "from": (T0 + 2 * DAY).isoformat()}],
        },
    }  # fmt: skip
    both = [log[0], entry({"champion": "4", "challenger": "3"}, T0, T0 + 2 * DAY)]
    assert pr._changes(pr.bind_versions(both, exp_(), T0 + 5 * DAY)) == (
        "control was served by v1, then v4 from 2026-06-12 00:00; "
        "treatment was served by v2, then v3 from 2026-06-12 00:00"
    )


@pytest.mark.parametrize(
    ("when", "changed"),
    [(T0, []), (T0 + US, ["treatment"]), (T0 + 5 * DAY - US, ["treatment"]), (T0 + 5 * DAY, [])],
)
def test_the_window_is_after_the_start_and_before_the_end_of_the_analysed_day(when, changed):
    """A move at the start is the starting state; one at the as-of moment serves later data."""
    log = [entry(BOTH, T0 - DAY, T0 - DAY), entry({**BOTH, "challenger": "3"}, when, when)]
    b = pr.bind_versions(log, exp_(), T0 + 5 * DAY)
    assert b.changed == changed and b.known_from == T0
    assert b.versions["treatment"][0] == ("3" if when == T0 else "2", None)  # at the start


def test_after_the_experiments_end_nothing_counts():
    log = [entry(BOTH, T0 - DAY, T0 - DAY), entry({**BOTH, "challenger": "3"}, T0, T0 + 3 * DAY)]
    assert pr.bind_versions(log, exp_(end=T0 + 3 * DAY + US), T0 + 9 * DAY).changed == ["treatment"]
    assert pr.bind_versions(log, exp_(end=T0 + 3 * DAY), T0 + 9 * DAY).changed == []


def test_an_unset_alias_is_served_by_the_champion_and_no_model_is_no_version():
    log = [
        entry({}, T0 - DAY, T0 - DAY),
        entry({"champion": "1"}, T0, T0 + DAY),  # no model, then v1 for both: no change
        entry({"champion": "1", "challenger": "2"}, T0, T0 + 2 * DAY),
    ]
    b = pr.bind_versions(log, exp_(), T0 + 5 * DAY)
    assert b.versions["control"] == [(None, None), ("1", T0 + DAY)]
    assert b.versions["treatment"] == [(None, None), ("1", T0 + DAY), ("2", T0 + 2 * DAY)]
    assert b.changed == ["treatment"]
    # a variant the config gives no alias is served by the champion
    single = exp_(model_aliases={"treatment": "challenger"})
    assert pr.bind_versions(log, single, T0 + 5 * DAY).versions["control"][-1] == ("1", T0 + DAY)
    assert pr.served_version(single, "control", {"champion": "7", "challenger": "8"}) == "7"
    assert pr.served_version(single, "treatment", {"champion": "7"}) == "7"
    assert pr.served_version(single, "treatment", {}) is None


def test_a_log_that_begins_after_the_start_is_known_from_its_first_entry():
    log = [entry(BOTH, T0, T0 + 2 * DAY)]
    b = pr.bind_versions(log, exp_(), T0 + 5 * DAY)
    assert b.known_from == T0 + 2 * DAY and b.served("treatment") == "2" and not b.changed
    empty = pr.bind_versions([], exp_(), T0 + 5 * DAY)
    assert empty.known_from is None and empty.served("treatment") is None
    assert empty.versions == {"control": [], "treatment": []}
    assert empty.to_dict() == {"known_from": None, "changed": [],
                               "variants": {"control": [], "treatment": []}}  # fmt: skip
    assert b.served("not a variant") is None


def test_the_experiments_own_promotion_ends_its_binding():
    shipped = entry({"champion": "2"}, T0, T0 + 4 * DAY, experiment="exp")
    other = entry({"champion": "2"}, T0, T0 + 3 * DAY, experiment="another")
    log = [entry(BOTH, T0 - DAY, T0 - DAY), other, shipped,
           entry({"champion": "5"}, T0, T0 + 5 * DAY)]  # fmt: skip
    b = pr.bind_versions(log, exp_(), T0 + 8 * DAY)
    # another experiment's promotion is a change like any other; its own ends the binding
    assert b.shipped == shipped and b.changed == ["control"]
    assert b.versions["control"] == [("1", None), ("2", T0 + 3 * DAY)]
    assert pr.bind_versions(log, exp_(experiment_id="x"), T0 + 8 * DAY).shipped is None


# -- the promotion on a real registry ---------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store holding versions 1..4 of `clip_quality` and no alias (bare versions)."""
    root = tmp_path_factory.mktemp("registry")
    client = registry._client(f"sqlite:///{root / 'mlflow.db'}")
    client.create_registered_model(registry.MODEL_NAME)
    for _ in range(4):
        client.create_model_version(registry.MODEL_NAME, source=str(root / "none"))
    return root / "mlflow.db"


@pytest.fixture
def reg(store, tmp_path):
    shutil.copy(store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry._client(uri)
    assert registry.promote(client, "1", "first", None, tracking_uri=uri, as_of=T0 - DAY)
    assert registry.set_challenger(client, "2", "gate", tracking_uri=uri, as_of=T0 - DAY)
    return client, uri


def up(variant="treatment"):
    return {"primary": True, "significant": True, "lift": 1.0, "variant": variant}


def result(decision="ship", day=5):
    return {"decision": decision, "metrics": [up()], "analyzed_at": (T0 + day * DAY).isoformat()}


def tags(client, version):
    return client.get_model_version(registry.MODEL_NAME, version).tags


def test_a_ship_promotes_the_version_that_served_not_the_challenger_of_today(reg):
    client, uri = reg
    # v3 passes the gate in the ship day's own run: it never served the experiment's data
    assert registry.set_challenger(client, "3", "gate", tracking_uri=uri, as_of=T0 + 5 * DAY)
    got = pr.promote_from_experiment(client, exp_(), result(), uri)
    assert (got.promoted, got.version, got.reason, got.decision) == (
        True, "2", "champion <- v2", "ship",
    )  # fmt: skip
    assert registry.aliases(client) == {"champion": "2", "challenger": "3"}
    assert tags(client, "2")["promoted_by_experiment"] == "exp"
    assert tags(client, "2")["promoted_reason"] == "A/B experiment exp: ship"
    assert "promoted_by_experiment" not in tags(client, "3")
    last = registry.alias_log(client)[-1]
    assert (last["experiment"], last["as_of"]) == ("exp", (T0 + 5 * DAY).isoformat())
    fields = got.report_fields()
    assert fields["decision"] == "ship" and fields["model_versions"] == got.binding.to_dict()
    assert fields["promotion"] == {"promoted": True, "version": "2", "reason": "champion <- v2"}
    # the next day's ship promotes nothing again; the binding ended with the promotion
    again = pr.promote_from_experiment(client, exp_(), result(day=6), uri)
    assert (again.promoted, again.decision, again.binding.changed) == (False, "ship", [])
    assert again.reason == (
        "already shipped by this experiment: champion <- v2: A/B experiment exp: ship"
    )
    assert registry.aliases(client) == {"champion": "2", "challenger": "3"}


def test_a_served_version_that_changed_mid_experiment_is_invalid_and_promotes_nothing(reg):
    client, uri = reg
    assert registry.set_challenger(client, "3", "gate", tracking_uri=uri, as_of=T0 + 2 * DAY)
    got = pr.promote_from_experiment(client, exp_(), result(), uri)
    assert (got.promoted, got.version, got.decision) == (False, None, pr.INVALID_MODEL_CHANGE)
    assert got.reason == ("served model changed mid-experiment: treatment was served by v2, "
                          "then v3 from 2026-06-12 00:00; nothing promoted")  # fmt: skip
    assert got.report_fields()["decision"] == "invalid_model_change"
    assert got.report_fields()["model_versions"]["changed"] == ["treatment"]
    assert registry.aliases(client) == {"champion": "1", "challenger": "3"}
    assert "promoted_by_experiment" not in tags(client, "3") | tags(client, "2")
    # every decision but invalid_srm becomes invalid_model_change
    for decision in ("no_ship", "inconclusive"):
        assert pr.promote_from_experiment(client, exp_(), result(decision), uri).decision == (
            pr.INVALID_MODEL_CHANGE
        )
    srm = pr.promote_from_experiment(client, exp_(), result("invalid_srm"), uri)
    assert (srm.decision, srm.reason) == ("invalid_srm", "no promotion")
    assert pr.INVALID_MODEL_CHANGE in pr.DECISIONS


def test_what_a_result_that_ships_nothing_says(reg):
    client, uri = reg
    no = pr.promote_from_experiment(client, exp_(), result("no_ship"), uri)
    assert (no.promoted, no.reason, no.decision) == (False, "no promotion", "no_ship")
    assert no.binding.served("treatment") == "2"
    both_champion = exp_(model_aliases={"control": "champion", "treatment": "champion"})
    same = pr.promote_from_experiment(client, both_champion, result(), uri)
    why = "treatment was served by v1, as the control: nothing to promote"
    assert same == pr.Promotion(False, None, why, "ship", same.binding)
    assert same.promoted is False and same.binding.served("treatment") == "1"
    plain = pr.promote_from_experiment(client, exp_(model_aliases={}), result(), uri)
    assert plain == pr.Promotion(False, None, "no promotion", "ship")
    assert plain.report_fields() == {
        "promotion": {"promoted": False, "version": None, "reason": "no promotion"},
        "decision": "ship",
    }
    # a result without a decision keeps it so (none is invented)
    assert pr.Promotion(False, None, "why").report_fields() == {
        "promotion": {"promoted": False, "version": None, "reason": "why"}
    }
    early = exp_(start=T0 - 3 * DAY)  # analysed before the first logged move took effect
    none = pr.promote_from_experiment(client, early, result(), uri, as_of=T0 - 2 * DAY)
    why = "no logged model version served treatment (alias log from None)"
    assert none == pr.Promotion(False, None, why, "ship", none.binding)
    assert none.promoted is False and none.binding.versions == {"control": [], "treatment": []}
    assert registry.aliases(client) == {"champion": "1", "challenger": "2"}


def test_a_promotion_against_a_champion_that_moved_since_says_so(reg):
    client, uri = reg
    # the day's training made v4 champion: the treatment was compared with v1, not v4
    assert registry.promote(client, "4", "better", tracking_uri=uri, as_of=T0 + 5 * DAY)
    got = pr.promote_from_experiment(client, exp_(), result(), uri)
    assert (got.promoted, got.decision) == (False, "ship")
    assert got.reason == "promotion lost a race: champion is no longer v1; nothing promoted"
    assert got.binding.served("treatment") == "2"  # a refusal still says what served
    assert registry.aliases(client) == {"champion": "4", "challenger": "2"}
    assert "promoted_by_experiment" not in tags(client, "2")
    # a control the config gives no alias is served by the champion: compared with v1 too
    unmapped = exp_(model_aliases={"treatment": "challenger"})
    lost = pr.promote_from_experiment(client, unmapped, result(), uri)
    assert lost == pr.Promotion(False, None, got.reason, "ship", lost.binding)
    assert lost.promoted is False and registry.aliases(client)["champion"] == "4"
    assert lost.binding.served("treatment") == "2"
    # a control served by another alias is compared with the champion as it is now
    other = exp_(model_aliases={"control": "challenger", "treatment": "champion"})
    moved = pr.promote_from_experiment(client, other, result(), uri, as_of=T0 + 5 * DAY)
    assert (moved.promoted, moved.version) == (True, "1")
    assert registry.aliases(client) == {"champion": "1", "challenger": "2"}


def _metric(variant, lift, primary=True, significant=True):
    return {"variant": variant, "lift": lift, "primary": primary, "significant": significant}


def test_shipped_variant_is_the_biggest_significant_primary_win():
    wins = [_metric("b", 0.2), _metric("c", 0.5), _metric("d", 0.3)]
    assert pr.shipped_variant({"decision": "ship", "metrics": wins}) == "c"
    assert pr.shipped_variant({"decision": "no_ship", "metrics": wins}) is None
    assert pr.shipped_variant({"metrics": wins}) is None
    # a secondary metric, an insignificant win, no lift or a loss never ship a variant
    others = [
        _metric("x", 9.0, primary=False),
        _metric("y", 9.0, significant=False),
        _metric("z", 0.0),
        _metric("w", -1.0),
    ]
    assert pr.shipped_variant({"decision": "ship", "metrics": others}) is None
    assert pr.shipped_variant({"decision": "ship", "metrics": [*others, _metric("b", 0.1)]}) == "b"


def test_a_variant_a_guardrail_blocks_is_never_the_shipped_one():
    blocked = {**_metric("c", 0.5), "guardrail_blocked": True}
    got = pr.shipped_variant({"decision": "ship", "metrics": [_metric("b", 0.2), blocked]})
    assert got == "b"  # c's lift is larger, but a guardrail fell for it
    assert pr.shipped_variant({"decision": "ship", "metrics": [blocked]}) is None
