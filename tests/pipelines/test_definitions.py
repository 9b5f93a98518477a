"""The one Definitions loads, every job resolves, and the CLI stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from assets.constants import GROUPS, OWNERS
from models.core.settings import prepare_process
from pipelines.definitions import defs
from pipelines.jobs import NIGHTLY_AT_ENV, build_nightly_schedule, nightly_time

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_resolve_every_job_and_schedule():
    repo = defs.get_repository_def()
    jobs = {j.name for j in repo.get_all_jobs()}
    assert {"nightly_job", "training_job", "ingest_job", "online_push_job"} <= jobs
    for name in jobs:
        job = defs.resolve_job_def(name)
        assert job.graph.node_defs, name  # resolves to a graph with steps
        assert job.executor_def.name == "in_process", name  # ~50 ms a step, not ~1.7 s
    sched = defs.resolve_schedule_def("nightly_schedule")
    assert sched.job_name == "nightly_job" and sched.cron_schedule == "0 2 * * *"
    assert sched.execution_timezone == "UTC"
    assert sched.default_status == dg.DefaultScheduleStatus.RUNNING  # ticks under `clipflow ui`
    nightly = set(defs.resolve_job_def("nightly_job").asset_layer.executable_asset_keys)
    assert nightly == set(defs.get_repository_def().asset_graph.get_all_asset_keys())


@pytest.mark.parametrize(
    "fired, day",
    [
        (datetime(2026, 11, 25, 2, 0, tzinfo=UTC), "2026-11-24"),
        (datetime(2026, 3, 1, 2, 0, tzinfo=UTC), "2026-02-28"),
        (datetime(2028, 3, 1, 2, 0, tzinfo=UTC), "2028-02-29"),
    ],
)
def test_nightly_schedule_runs_the_day_that_just_closed(fired, day):
    sched = defs.resolve_schedule_def("nightly_schedule")
    ctx = dg.build_schedule_context(scheduled_execution_time=fired)
    [request] = sched.evaluate_tick(ctx).run_requests
    assert request.partition_key == day


def test_nightly_time_is_configurable_and_checked(monkeypatch):
    assert nightly_time("") == (2, 0)
    assert build_nightly_schedule("23:30").cron_schedule == "30 23 * * *"
    monkeypatch.setenv(NIGHTLY_AT_ENV, "5:07")
    assert build_nightly_schedule().cron_schedule == "7 5 * * *"
    for bad in ["25:00", "2am", "02:60", "0200"]:
        with pytest.raises(ValueError, match=NIGHTLY_AT_ENV):
            nightly_time(bad)
    # the code location reads it when it loads, as `clipflow ui` does
    code = (
        "from pipelines.definitions import defs; "
        "print(defs.resolve_schedule_def('nightly_schedule').cron_schedule)"
    )
    env = {**os.environ, NIGHTLY_AT_ENV: "04:45"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "45 4 * * *", out.stderr[-2000:]


def test_every_asset_has_a_group_owners_kinds_and_a_description():
    graph = defs.get_repository_def().asset_graph
    groups = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.group_name in GROUPS, name
        assert node.owners == OWNERS[node.group_name], name
        assert node.kinds and node.description and len(node.description) > 30, name
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), name
        groups.add(node.group_name)
    assert groups == set(GROUPS)  # no group without assets, none undeclared


@pytest.mark.parametrize(
    ("warehouse", "slots_env", "slots"),
    [("", "", 1), ("s3://clipflow/wh", "", 2), ("", "3", 3), ("s3://clipflow/wh", "1", 1)],
)
def test_the_instance_clipflow_creates_queues_runs_with_one_run_per_lane(
    tmp_path, monkeypatch, warehouse, slots_env, slots
):
    """One run at a time on the local warehouse (one writer), two on Iceberg, or
    CLIPFLOW_RUN_SLOTS; each lane a pool of one run, counted per run."""
    for var in ("CLIPFLOW_HOME", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLIPFLOW_WAREHOUSE", warehouse)
    monkeypatch.setenv("CLIPFLOW_RUN_SLOTS", slots_env)
    s = prepare_process(home=tmp_path / "home")
    instance = dg.DagsterInstance.from_config(str(s.dagster_home))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == slots
        assert config.pool_config.pool_granularity.value == "run"
        assert config.pool_config.default_pool_limit == 1
    finally:
        instance.dispose()


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("64", True), ("0", False),
                                           ("65", False), ("2.5", False), ("-1", False)])  # fmt: skip
def test_run_slots_are_a_whole_number_from_1_to_64(monkeypatch, value, ok):
    from models.core.settings import current, run_slots

    monkeypatch.setenv("CLIPFLOW_RUN_SLOTS", value)
    if ok:
        assert run_slots(current()) == int(value)
    else:
        with pytest.raises(ValueError, match="CLIPFLOW_RUN_SLOTS"):
            run_slots(current())


def _pools(job_name: str) -> dict[str, set[str]]:
    """Each asset of the job: its pools."""
    job = defs.resolve_job_def(job_name)
    graph = defs.resolve_asset_graph()
    keys = job.asset_layer.selected_asset_keys
    return {k.to_user_string(): set(graph.get(k).pools or ()) for k in keys}


def test_a_day_is_two_lanes_each_in_its_pool_and_the_nightly_holds_both():
    from assets.constants import DATA_LANE, MODEL_LANE

    data, model, nightly = (_pools(j) for j in ("data_job", "model_job", "nightly_job"))
    assert data and model and not set(data) & set(model)
    assert set(data) | set(model) == set(nightly)
    assert all(p == {DATA_LANE} for p in data.values()), data
    assert all(p == {MODEL_LANE} for p in model.values()), model
    assert {"clips", "clip_features"} <= set(data)
    # `feast apply` rewrites the registry file in place: in the lane that reads it
    assert {"feast_registry", "training_set", "clip_quality_model", "ab_results"} <= set(model)
    # the model lane reads nothing the next day's data lane writes before it is done: its
    # assets depend only on the data lane and on each other
    graph = defs.resolve_asset_graph()
    for name in data:
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey(name)).parent_keys}
        assert parents <= set(data), (name, parents)


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


def workspace_jobs(workspace: Path, home: Path) -> tuple[subprocess.CompletedProcess, set]:
    """`dagster job list -w WORKSPACE -l pipelines.definitions`: the code location loaded
    as `dagster dev` loads it (a code server in its own process); (the run, its job names)."""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "list", "-w", str(workspace),
         "-l", "pipelines.definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out, {line.removeprefix("Job: ") for line in out.stdout.splitlines() if "Job: " in line}


@pytest.mark.slow
def test_workspace_loads_pipelines_definitions(tmp_path):
    out, jobs = workspace_jobs(ROOT / "workspace.yaml", tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert jobs == {j.name for j in defs.get_repository_def().get_all_jobs()}
    assert {"nightly_job", "training_job", "ingest_job", "online_push_job"} <= jobs


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


def test_the_lanes_pools_exist_before_the_first_run_is_queued(tmp_path, monkeypatch):
    """Dagster's queue creates a pool only after its first pass over the runs using it: two
    data runs queued on a fresh instance would start together. `clipflow ui` and `clipflow
    backfill` create both pools first, at the instance's default limit of one run."""
    from assets.constants import DATA_LANE, MODEL_LANE
    from pipelines.backfill import ensure_lane_pools

    for var in ("CLIPFLOW_HOME", "DAGSTER_HOME", "CLIPFLOW_RUN_SLOTS", "CLIPFLOW_WAREHOUSE"):
        monkeypatch.delenv(var, raising=False)
    s = prepare_process(home=tmp_path / "home")
    instance = dg.DagsterInstance.from_config(str(s.dagster_home))
    try:
        storage = instance.event_log_storage
        assert not {DATA_LANE, MODEL_LANE} & set(storage.get_concurrency_keys())
        assert sorted(ensure_lane_pools(instance)) == sorted([DATA_LANE, MODEL_LANE])
        assert ensure_lane_pools(instance) == []  # once
        for pool in (DATA_LANE, MODEL_LANE):
            assert storage.get_concurrency_info(pool).slot_count == 1
    finally:
        instance.dispose()
