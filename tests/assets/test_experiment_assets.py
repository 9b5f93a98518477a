"""ab_results through Dagster on generated experiments: reports, table and decision."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import duckdb
import pytest
import yaml
from support import tiny_training_set

from assets.experiments import ab_results
from assets.ingest import ingest_assets
from assets.resources import EventsResource, LandingResource, MlflowResource, WarehouseResource
from models.experiments.promotion import shipped_variant
from models.synthetic.landing import generate_landing
from models.training import registry
from models.training import train as training
from models.training.evaluation import metrics

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("lift,srm,decision", [(0.6, 0.0, "ship"), (0.0, 0.3, "invalid_srm")])
def test_ab_results_writes_reports_and_decides(tmp_path, home, lift, srm, decision):
    landing = tmp_path / "landing"
    generate_landing(
        landing,
        days=8,
        start=date(2026, 6, 1),
        clips_per_day=20,
        users=6000,
        seed=4,
        ab_lift=lift,
        srm=srm,
        bad_row_rate=0.0,
    )
    # the experiment runs from 06-03 to the end of 06-08: a 3-day minimum runtime (default 7)
    spec_path = landing / "experiments" / "experiments.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["experiments"][0]["min_runtime_days"] = 3
    spec_path.write_text(yaml.safe_dump(spec))
    resources = {
        "warehouse": WarehouseResource(),
        "mlflow": MlflowResource(),
        "events": EventsResource(),
        "landing": LandingResource(landing_dir=str(landing)),
    }
    # the experiment's variants are served by aliases: control = champion (v1), treatment =
    # challenger (v2), both real versions in the home's MLflow registry
    uri = resources["mlflow"].uri
    trained = training.train(tiny_training_set(200), training.TrainParams(n_estimators=5))
    scores = metrics(trained.y_holdout, trained.holdout_pred)
    v1, v2 = (registry.log_and_register(trained, scores, None, None, uri) for _ in range(2))
    client = resources["mlflow"].client()
    assert registry.promote(client, v1, "first model", expected_champion=None, tracking_uri=uri)
    assert registry.set_challenger(client, v2, "gate passed", tracking_uri=uri)
    assets = [a for a in ingest_assets if a.key.path[-1] in ("assignments", "user_metrics")]
    with dg.instance_for_test() as instance:
        for d in range(1, 9):
            day = f"2026-06-0{d}"
            r = dg.materialize(
                [*assets, ab_results], partition_key=day, instance=instance, resources=resources
            )
            assert r.success
    report = json.loads((home / "reports" / "ab" / "exp_ranker_v2.json").read_text())
    assert report["decision"] == decision
    assert set(report) >= {"experiment_id", "analyzed_at", "srm", "metrics", "decision"}
    assert report["analyzed_at"].startswith("2026-06-08T23:59:59")
    # one look a day from the start (06-03); none decides before 3 days (06-05 23:59:59)
    looks = report["history"]
    assert [h["analyzed_at"][:10] for h in looks] == [f"2026-06-0{d}" for d in range(3, 9)]
    assert report["method"] == "sequential"
    if decision == "invalid_srm":  # checked on every look, before the minimum runtime too
        assert [h["decision_reason"] for h in looks] == ["srm"] * 6 and not report["final"]
    else:
        assert [h["decision_reason"] for h in looks[:2]] == ["min_runtime"] * 2
        first = next(h for h in looks if h["final"])
        assert first["decision"] == decision and report["decided_on"] == first["analyzed_at"]
        assert all(h["decision"] == decision for h in looks[looks.index(first):])  # it stands
    html = (home / "reports" / "ab" / "exp_ranker_v2.html").read_text()
    assert "<img" in html
    rows = duckdb.sql(
        f"SELECT DISTINCT metric FROM read_parquet('{home}/warehouse/ab_results/"
        "**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert {r[0] for r in rows} == {"watch_time_s", "sessions", "clips_viewed"}
    assert (shipped_variant(report) == "treatment") == (decision == "ship")
    # a ship moves champion to the challenger, tagged with the experiment; otherwise nothing
    now = registry.aliases(client)
    if decision == "ship":
        assert now == {"champion": v2}
        tags = client.get_model_version(registry.MODEL_NAME, v2).tags
        assert tags["promoted_by_experiment"] == "exp_ranker_v2"
    else:
        assert now == {"champion": v1, "challenger": v2}
