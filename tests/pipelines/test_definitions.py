"""The one Definitions loads, every job resolves, and the CLI stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_resolve_every_job_and_schedule():
    repo = defs.get_repository_def()
    jobs = {j.name for j in repo.get_all_jobs()}
    assert {"daily_job", "ingest_job"} <= jobs
    for name in jobs:
        job = defs.resolve_job_def(name)
        assert job.graph.node_defs, name  # resolves to a graph with steps
    sched = defs.resolve_schedule_def("nightly_schedule")
    assert sched.job_name == "daily_job" and sched.cron_schedule == "0 2 * * *"


def test_every_ingest_asset_is_daily_partitioned_with_a_blocking_contract_check():
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for key in ["clips", "engagement", "labels", "assignments", "user_metrics"]:
        node = graph.get(dg.AssetKey(key))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        checks = [c for c in graph.asset_check_keys if c.asset_key == dg.AssetKey(key)]
        assert [c.name for c in checks] == ["contract"]
        assert graph.get_check_spec(checks[0]).blocking
    assert graph.get(dg.AssetKey("engagement")).parent_keys == {dg.AssetKey("clips")}


def test_workspace_loads_pipelines_definitions():
    text = (ROOT / "workspace.yaml").read_text()
    assert "module_name: pipelines.definitions" in text


def test_cli_help_is_fast_and_imports_no_heavy_library():
    code = (
        "import sys; from pipelines.cli import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('dagster', 'feast', 'great_expectations', 'mlflow', 'xgboost') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for sub in ["generate", "run", "demo", "ui"]:
        r = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", sub, "--help"], capture_output=True, text=True
        )
        assert r.returncode == 0 and "usage: clipflow " + sub in r.stdout
