"""#16 case 1, the real flow: a real MLflow registry in a temp home, the experiment assets
materialized day by day through Dagster, the real alias moves of a passing gate, the events
on a real Redis, and the real scorer over the home's Feast store.

An experiment routes control to `champion` (v1) and treatment to `challenger` (v2). A newer
version v3 passes the gate (not clearly better: it becomes `challenger`):
- mid-experiment: treatment users saw v2 then v3, so the decision is `invalid_model_change`
  and nothing is promoted (the old code promoted v3, which served a few days at most);
- in the ship day's own run: v3 never served the experiment, so the ship promotes v2 (the
  old code promoted v3, which never served a user), and the treatment users still get
  scores afterwards."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import dagster as dg
import pytest
from support import clip_feature_rows, tiny_training_set

from assets.resources import EventsResource, LandingResource, MlflowResource, WarehouseResource
from models.core.redis_url import redis_client
from models.experiments.config import assign_variant, load_experiments
from models.integrations import events
from models.training import registry
from models.training import train as training
from models.training.evaluation import GateResult, metrics

pytestmark = pytest.mark.slow
DB = 11
EXP = "exp_ranker_v2"
PASSED = GateResult(True, [], {"checks": ["passed."], "better_than_champion": False})


@pytest.fixture
def world(tmp_path, monkeypatch, redis_server):
    """A landing whose experiment ships (a real lift), a home whose registry holds v1
    (champion) and v2 (challenger) set by the gate, and v3 trained, not yet registered."""
    from models.synthetic.landing import generate_landing

    home, landing = tmp_path / "home", tmp_path / "landing"
    conn = f"{redis_server['connection_string']},db={DB}"
    monkeypatch.setenv("CLIPFLOW_HOME", str(home))
    monkeypatch.setenv("CLIPFLOW_REDIS", conn)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    redis_client(conn).flushdb()
    generate_landing(landing, days=8, start=date(2026, 6, 1), clips_per_day=20, users=6000,
                     seed=4, ab_lift=0.6, bad_row_rate=0.0)  # fmt: skip
    # ~450 users per arm a day from 2026-06-03: the sample is reached on 06-06, not before
    yaml = landing / "experiments" / "experiments.yaml"
    text = yaml.read_text()
    assert "min_sample_size: 200\n" in text
    # and no minimum runtime (#18's default is 7 days): the ship comes on that day
    yaml.write_text(text.replace("min_sample_size: 200\n",
                                 "min_sample_size: 1500\n  min_runtime_days: 0\n"))  # fmt: skip
    resources = {
        "warehouse": WarehouseResource(),
        "mlflow": MlflowResource(),
        "events": EventsResource(),
        "landing": LandingResource(landing_dir=str(landing)),
    }
    uri = resources["mlflow"].uri
    data = tiny_training_set(300)
    params = training.TrainParams(n_estimators=8)
    models = [training.train(data.assign(quality_score=(data["quality_score"] + shift)
                                         .clip(0, 100)), params) for shift in (0, -20, 20)]  # fmt: skip
    client = resources["mlflow"].client()

    def register(i: int) -> str:
        m = models[i]
        return registry.log_and_register(m, metrics(m.y_holdout, m.holdout_pred), None, None, uri)

    v1 = register(0)
    assert registry.apply_gate(client, v1, PASSED, None, tracking_uri=uri) == "champion"
    v2 = register(1)
    assert registry.apply_gate(client, v2, PASSED, v1, tracking_uri=uri) == "challenger"
    return {"home": home, "landing": landing, "resources": resources, "uri": uri,
            "client": client, "register": register, "v1": v1, "v2": v2, "conn": conn,
            "models": models}  # fmt: skip


def run_days(world, days, before_ab=None) -> dict[str, str]:
    """Materialize the experiment assets day by day (as `clipflow run` would, the day's
    training first: `before_ab(day)`); the decision of each day."""
    from assets.experiments import ab_results
    from assets.ingest import ingest_assets

    assets = [a for a in ingest_assets if a.key.path[-1] in ("assignments", "user_metrics")]
    decisions = {}
    with dg.instance_for_test() as instance:
        for d in days:
            day = f"2026-06-{d:02d}"
            if before_ab is not None:
                before_ab(day)
            r = dg.materialize([*assets, ab_results], partition_key=day, instance=instance,
                               resources=world["resources"])  # fmt: skip
            assert r.success
            report = world["home"] / "reports" / "ab" / f"{EXP}.json"
            if report.exists():
                decisions[day] = json.loads(report.read_text())["decision"]
    return decisions


def decided_events(world) -> list[dict]:
    stream = events.read(events.client(world["conn"]), after="0-0", count=1000)
    return [e.data for e in stream if e.type == "experiment_decided"]


def tags(world, version) -> dict:
    return world["client"].get_model_version(registry.MODEL_NAME, version).tags


def test_a_version_that_passed_the_gate_mid_experiment_is_never_promoted(world):
    v1, v2, made = world["v1"], world["v2"], {}

    def training(day: str) -> None:  # the 06-04 run's training: v3 passes the gate
        if day == "2026-06-04":
            made["v3"] = world["register"](2)
            assert registry.apply_gate(world["client"], made["v3"], PASSED, v1,
                                       tracking_uri=world["uri"]) == "challenger"  # fmt: skip

    decisions = run_days(world, range(1, 7), training)
    v3 = made["v3"]
    # 06-03 and 06-04 were served by v2 alone (the move took effect at 06-04's end)
    assert [decisions[f"2026-06-0{d}"] for d in (3, 4)] == ["inconclusive"] * 2
    assert [decisions[f"2026-06-0{d}"] for d in (5, 6)] == ["invalid_model_change"] * 2
    assert registry.aliases(world["client"]) == {"champion": v1, "challenger": v3}
    assert all("promoted_by_experiment" not in tags(world, v) for v in (v1, v2, v3))
    why = (f"served model changed mid-experiment: treatment was served by v{v2}, then v{v3} "
           "from 2026-06-04 23:59; nothing promoted")  # fmt: skip
    report = json.loads((world["home"] / "reports" / "ab" / f"{EXP}.json").read_text())
    assert report["decision"] == "invalid_model_change"
    assert report["promotion"] == {"promoted": False, "version": None, "reason": why}
    assert report["model_versions"]["variants"]["treatment"] == [
        {"version": v2, "from": None}, {"version": v3, "from": "2026-06-04T23:59:59.999999+00:00"},
    ]  # fmt: skip
    html = (world["home"] / "reports" / "ab" / f"{EXP}.html").read_text()
    assert "Model versions served" in html and "Do not trust these results" in html
    decided = decided_events(world)
    assert [(e["decision"], e["promotion"]) for e in decided[-2:]] == [
        ("invalid_model_change", why)
    ] * 2
    assert [e["decision"] for e in decided] == ["inconclusive"] * 2 + ["invalid_model_change"] * 2


def test_a_ship_promotes_the_version_that_served_and_treatment_users_keep_their_scores(world):
    from feature_repo import config
    from feature_repo.online_write import write_online
    from models.serving.scorer import Scorer

    v1, v2, made = world["v1"], world["v2"], {}
    store = config.feature_store()
    config.apply(store)
    rows = clip_feature_rows(4, "pb")
    write_online(store, rows)
    clips = sorted(set(rows.column("clip_id").to_pylist()))
    exps, errors = load_experiments(world["landing"] / "experiments" / "experiments.yaml")
    assert not errors
    (exp,) = exps
    scorer = Scorer(store, world["uri"], exps, clock=lambda: datetime(2026, 6, 7, tzinfo=UTC),
                    alias_check_s=0.0)  # fmt: skip
    user = {v: next(f"user{i}" for i in range(1000) if assign_variant(exp, f"user{i}") == v)
            for v in exp.variants}  # fmt: skip

    def versions(variant):
        route, got = scorer.scores(clips, user[variant])
        assert all(g is not None for g in got), got  # every clip the store knows is scored
        return route.alias, route.fallback, {g["model_version"] for g in got}

    assert versions("treatment") == ("challenger", None, {v2})

    def training(day: str) -> None:  # the ship day's own run: v3 passes the gate first
        if day == "2026-06-06":
            made["v3"] = world["register"](2)
            assert registry.apply_gate(world["client"], made["v3"], PASSED, v1,
                                       tracking_uri=world["uri"]) == "challenger"  # fmt: skip

    decisions = run_days(world, range(1, 8), training)
    v3 = made["v3"]
    assert [decisions[f"2026-06-0{d}"] for d in (3, 4, 5, 6, 7)] == ["inconclusive"] * 3 + [
        "ship"
    ] * 2
    assert registry.aliases(world["client"]) == {"champion": v2, "challenger": v3}
    assert tags(world, v2)["promoted_by_experiment"] == EXP
    assert "promoted_by_experiment" not in tags(world, v3)
    decided = decided_events(world)
    assert [e["promotion"] for e in decided[-2:]] == [
        f"champion <- v{v2}",
        f"already shipped by this experiment: champion <- v{v2}: A/B experiment {EXP}: ship",
    ]
    # the treatment users keep getting scores: from the challenger it holds now, and from
    # the champion (saying so) once the challenger alias is cleared
    assert versions("control") == ("champion", None, {v2})
    assert versions("treatment") == ("challenger", None, {v3})
    world["client"].delete_registered_model_alias(registry.MODEL_NAME, "challenger")
    fallback = "alias 'challenger' is not set: champion serves"
    assert versions("treatment") == ("champion", fallback, {v2})
