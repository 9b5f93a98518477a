"""ab_results through Dagster on generated experiments: reports, table and decision."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.experiments import ab_results, shipped_variant
from assets.ingest import ingest_assets
from models.synthetic import generate_landing
from pipelines.resources import LandingResource, MlflowResource, WarehouseResource

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
    resources = {
        "warehouse": WarehouseResource(),
        "mlflow": MlflowResource(),
        "landing": LandingResource(landing_dir=str(landing)),
    }
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
    html = (home / "reports" / "ab" / "exp_ranker_v2.html").read_text()
    assert "<img" in html
    rows = duckdb.sql(
        f"SELECT DISTINCT metric FROM read_parquet('{home}/warehouse/ab_results/"
        "**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert {r[0] for r in rows} == {"watch_time_s", "sessions", "clips_viewed"}
    assert (shipped_variant(report) == "treatment") == (decision == "ship")
