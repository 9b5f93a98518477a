"""drift_report through Dagster on generated data with a planted drift: quiet before it,
flags the shifted features after, performance history grows as labels arrive, alerts show
as failed WARN checks and notifications, and the sensor requests one gated retrain."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.resources import (
    FeastResource,
    LandingResource,
    MlflowResource,
    NotifierResource,
    WarehouseResource,
)
from pipelines.definitions import defs
from pipelines.sensors.retrain_on_drift import retrain_on_drift_sensor

pytestmark = pytest.mark.slow
START, DAYS, DRIFT_DAY = date(2026, 3, 1), 16, date(2026, 3, 11)
DRIFTED = {"duration_s", "duration_min", "speech_ratio", "resolution", "aspect_ratio", "language"}
RUN_CONFIG = {
    "ops": {
        "clip_quality_model": {
            "config": {"min_labeled_clips": 500, "n_estimators": 60, "retrain_every_days": 60}
        }
    }
}


def days() -> list[str]:
    return [date.fromordinal(START.toordinal() + i).isoformat() for i in range(DAYS)]


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, redis_server):
    from models.synthetic.landing import generate_landing

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("monitoring")
    home = root / "home"
    mp.setenv("CLIPFLOW_HOME", str(home))
    mp.setenv("CLIPFLOW_REDIS", f"{redis_server['connection_string']},db=7")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    if redis_server["owned"]:
        import redis

        redis.Redis(host=redis_server["host"], port=redis_server["port"], db=7).flushdb()
    generate_landing(
        root / "landing",
        days=DAYS,
        start=START,
        clips_per_day=500,
        users=100,
        seed=5,
        drift_start=DRIFT_DAY,
        bad_row_rate=0.0,
    )
    resources = {
        "warehouse": WarehouseResource(),
        "feast": FeastResource(),
        "mlflow": MlflowResource(),
        "landing": LandingResource(landing_dir=str(root / "landing")),
        "notifier": NotifierResource(alerts_file=str(root / "alerts.jsonl")),
    }
    job = defs.resolve_job_def("nightly_job")
    instance = dg.DagsterInstance.ephemeral()
    results = {
        day: job.execute_in_process(
            partition_key=day, instance=instance, resources=resources, run_config=RUN_CONFIG
        )
        for day in days()
    }
    yield home, root, resources, results, instance
    mp.undo()


def report(home, day: str) -> dict | None:
    path = home / "reports" / "drift" / f"{day}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_every_scored_day_has_a_report_quiet_before_the_drift(monitored):
    home, _, _, results, _ = monitored
    assert all(r.success for r in results.values())
    reports = {d: report(home, d) for d in days()}
    scored = [d for d, r in reports.items() if r is not None]
    assert scored, "no drift report at all"
    assert scored == days()[days().index(scored[0]) :]  # from the first champion on, daily
    for d in scored:
        assert (home / "reports" / "drift" / f"{d}.html").exists()
    before = [reports[d] for d in scored if date.fromisoformat(d) < DRIFT_DAY]
    assert len(before) >= 2, "the first model came too late to see stable days"
    # Creator counters grow with time and young clips' engagement differs from a young
    # model's reference: those may drift for real. The planted features must stay quiet.
    for r in before:
        assert not r["dataset_drift"], r["drifted_features"]
        assert not set(r["drifted_features"]) & DRIFTED, r["drifted_features"]


def test_the_planted_drift_is_flagged_and_alerts(monitored, redis_server):
    from models.core.redis_url import redis_client
    from models.integrations import events

    home, root, _, results, _ = monitored
    day = days()[-1]
    last = report(home, day)
    assert set(last["drifted_features"]) >= DRIFTED, last["drifted_features"]
    assert last["features"]["language"]["drifted"]
    assert set(last["features"]) >= {"duration_s", "resolution", "topic", "views_7d"}
    assert last["dataset_drift"] is True
    assert last["drift_share"] >= last["thresholds"]["drift_share"]
    checks = {
        e.asset_check_key.name: e
        for e in results[day].get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("drift_report")
    }
    assert set(checks) == {"dataset_drift", "rmse_ceiling", "missing_features", "score_range",
                           "interval_coverage"}
    # the planted drift fires the dataset_drift alert, and only it
    failed = {name for name, e in checks.items() if not e.passed}
    assert failed == {"dataset_drift"}, {n: checks[n].metadata["message"].value for n in failed}
    assert checks["dataset_drift"].severity == dg.AssetCheckSeverity.WARN
    message = checks["dataset_drift"].metadata["message"].value
    assert all(f in message for f in last["drifted_features"]), message
    # written to the notifier's file, once, with the check's message
    written = root / "alerts.jsonl"
    lines = written.read_text().splitlines() if written.exists() else []
    alerts = [json.loads(line) for line in lines]
    today = [(a["kind"], a["message"], a["model_version"]) for a in alerts if a["ds"] == day]
    assert today == [("drift_report.dataset_drift", message, last["model_version"])]
    # and published on the event stream, naming the same features
    got = events.read(redis_client(f"{redis_server['connection_string']},db=7"), count=10_000)
    drift = [e.data for e in got if e.type == "drift_detected" and e.data["ds"] == day]
    assert drift and drift[-1]["dataset_drift"] is True
    assert drift[-1]["features"] == last["drifted_features"]
    rows = duckdb.sql(
        f"SELECT feature, drifted FROM read_parquet('{home}/warehouse/drift_metrics/"
        f"ds={days()[-1]}/*.parquet')"
    ).fetchall()
    assert {f for f, d in rows if d} == set(last["drifted_features"]) | (
        {"prediction"} if last["prediction"]["drifted"] else set()
    )


def test_performance_history_grows_as_labels_arrive(monitored):
    home, *_ = monitored
    counts = duckdb.sql(
        f"SELECT ds, count(*) AS days, sum(n_labels) AS labels FROM read_parquet("
        f"'{home}/warehouse/model_performance/**/*.parquet', hive_partitioning=true) "
        "GROUP BY ds ORDER BY ds"
    ).fetchall()
    assert len(counts) >= 3
    labels = [n for _, _, n in counts]
    assert labels == sorted(labels) and labels[-1] > labels[0]
    assert report(home, days()[-1])["performance"]["n_labels"] > 0


def test_sensor_requests_one_gated_retrain_per_cooldown(monitored):
    _, _, resources, _, instance = monitored
    ctx = dg.build_sensor_context(instance=instance, definitions=defs)
    first = retrain_on_drift_sensor(ctx)
    assert isinstance(first, dg.SkipReason)  # the first tick only records history
    # from the start of history: every drifting day is seen, one request per cool-down
    ctx = dg.build_sensor_context(
        instance=instance, cursor=json.dumps({"after": None, "last": None}), definitions=defs
    )
    requests = retrain_on_drift_sensor(ctx)
    drifting = [d for d in days() if (r := report(monitored[0], d)) and r["dataset_drift"]]
    if not drifting:
        pytest.fail("the planted drift never made dataset drift: strengthen it")
    assert isinstance(requests, list) and len(requests) == 1  # 16 days, cool-down 7 from day 11
    (req,) = requests
    assert req.partition_key == drifting[0] and req.run_key == f"retrain-on-drift:{drifting[0]}"
    # the same reports again: nothing new
    again = dg.build_sensor_context(instance=instance, cursor=ctx.cursor, definitions=defs)
    assert isinstance(retrain_on_drift_sensor(again), dg.SkipReason)
    # the request runs training_job: an ordinary gated training
    result = defs.resolve_job_def("training_job").execute_in_process(
        partition_key=req.partition_key,
        instance=instance,
        resources=resources,
        run_config={
            "ops": {
                "clip_quality_model": {
                    "config": {
                        **RUN_CONFIG["ops"]["clip_quality_model"]["config"],
                        **req.run_config["ops"]["clip_quality_model"]["config"],
                    }
                }
            }
        },
        tags=req.tags,
    )
    assert result.success
    gate = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == "validation_gate"
    ]
    assert len(gate) == 1
    meta = result.asset_materializations_for_node("clip_quality_model")[0].metadata
    assert meta["decision"].value.startswith(f"drift on {drifting[0]}")
    assert meta["trained"].value is True


def test_clipflow_run_applies_the_same_rule_after_each_day(monitored):
    """`clipflow run`'s backfill: a drifting day's report launches training_job right after
    the day (once per cool-down), and the summary counts it apart from the days."""
    from pipelines.runner import DayOutcome, RunSummary, _retrain_on_drift

    home, _, _, _, instance = monitored
    drifting = [d for d in days() if (r := report(home, d)) and r["dataset_drift"]]
    said, summary = [], RunSummary()

    def outcome(day: str) -> DayOutcome:
        meta = {"dataset_drift": True, "rmse_alert": False}
        return DayOutcome(day, True, 1.0, "run", [{"step": "drift_report", "meta": meta}])

    last = _retrain_on_drift(instance, outcome(drifting[0]), None, said.append, summary)
    assert last == drifting[0]
    assert len(summary.days) == 1 and summary.days[0].job == "training_job"
    assert summary.days[0].success, said
    assert any(s["step"] == "clip_quality_model" for s in summary.days[0].steps)
    assert said[0].startswith(f"{drifting[0]}  retrain on drift (drift on {drifting[0]}")
    # the next drifting day is inside the cool-down: nothing runs
    assert _retrain_on_drift(instance, outcome(drifting[-1]), last, said.append, summary) == last
    assert len(summary.days) == 1


def test_the_pipeline_published_its_events(monitored, redis_server):
    from models.core.redis_url import redis_client
    from models.integrations import events

    client = redis_client(f"{redis_server['connection_string']},db=7")
    got = events.read(client, "0-0", count=10_000)
    types = [e.type for e in got]
    assert types.count("scores_published") >= 8  # one per scored day
    assert "model_promoted" in types  # the first model became champion
    drift = [e for e in got if e.type == "drift_detected"]
    assert drift and drift[-1].data["ds"] == days()[-1]
    assert "duration_s" in drift[-1].data["features"]
