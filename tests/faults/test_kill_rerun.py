"""`kill -9` of `clipflow run` at a random step, then a re-run of the same days, ends in the
warehouse an uninterrupted run writes: the same partition files, byte for byte (#16).

The step is drawn at random from the nightly graph (day and step; the seed is printed, and
`CLIPFLOW_FAULT_SEED` replays it); the run is killed once the Dagster run log shows that
step started, after a random pause of up to 0.3 s (so the kill falls inside the step's
work, a partition swap included, as often as before it). The re-run also marks the killed
Dagster run failed (it read STARTED for ever before: pipelines/runner.py `fail_orphans`).

Two columns are wall times by design and are compared without their value: `quarantine.
detected_at` (when the run that wrote the day rejected the row) and `video_metadata.
fetched_at` (when the metadata API answered; not written here: no API is configured).
Every other partition file must match byte for byte, `ab_results` included: its per-arm
sums are exact (DECIMAL, models/experiments/aggregate.py), so the order DuckDB's threads
add them in does not show (with float sums its last bits varied between two clean runs).
Before the rows were written in one order (models/core/warehouse.py `_sorted`), DuckDB's
parallel scans wrote the same rows in a different order from run to run, and no two runs
gave the same files (clip_features, assignments, ...)."""

from __future__ import annotations

import os
import random
import time

import dagster as dg
import pyarrow.parquet as pq
import pytest
from faults.fault_support import (
    RUN_S,
    SLOW,
    checksums,
    clipflow,
    clipflow_env,
    generate,
    kill9,
    leftovers,
    partition_files,
    start_clipflow,
    wait_for_step,
)

pytestmark = SLOW
DAYS = ["2026-01-01"]  # one day keeps it fast; the kill and the re-run are what count
# the nightly graph's steps that read and write (checks run inside their asset's step)
STEPS = ["clips", "engagement", "labels", "assignments", "user_metrics", "feast_registry",
         "clip_features", "training_set", "clip_quality_model", "clip_scores",
         "online_store", "drift_report", "ab_results"]  # fmt: skip
WALL_TIMES = {"quarantine": "detected_at", "video_metadata": "fetched_at"}


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "landing"
    generate(out, days=len(DAYS), start=DAYS[0])
    return out


@pytest.fixture(scope="module")
def uninterrupted(landing, tmp_path_factory):
    home = tmp_path_factory.mktemp("kill") / "home"
    r = clipflow("run", "--landing", str(landing), env=clipflow_env(home))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return home


def _same_partitions(got, want) -> None:
    """Every partition file byte-identical, with the exceptions of the docstring."""
    files, want_files = partition_files(got), partition_files(want)
    assert files.keys() == want_files.keys() and len(files) >= 10 * len(DAYS)
    sums, want_sums = checksums(got), checksums(want)
    differ = [k for k in files if sums[k] != want_sums[k]]
    for key in differ:
        table = key.split("/")[0]
        assert table in WALL_TIMES, f"{key} differs from an uninterrupted run"
        a, b = pq.read_table(files[key]), pq.read_table(want_files[key])
        assert a.drop([WALL_TIMES[table]]).equals(b.drop([WALL_TIMES[table]])), key
    assert len(differ) < len(files) / 2  # a wall time differs; the rest are the same bytes


def test_kill_9_at_a_random_step_then_a_rerun_writes_the_same_warehouse(
    landing, uninterrupted, tmp_path
):
    seed = int(os.environ.get("CLIPFLOW_FAULT_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    day, step, pause = rng.choice(DAYS), rng.choice(STEPS), rng.uniform(0, 0.3)
    print(f"CLIPFLOW_FAULT_SEED={seed}: kill -9 in {day} step {step} after {pause:.2f}s")
    home = tmp_path / "home"
    env = clipflow_env(home)
    proc = start_clipflow("run", "--landing", str(landing), env=env, log=tmp_path / "killed.log")
    try:
        started = wait_for_step(home, day, step, proc, timeout=RUN_S)
        time.sleep(pause)
    finally:
        kill9(proc)
    assert started, (tmp_path / "killed.log").read_text()[-3000:]
    assert proc.returncode == -9  # killed, not ended on its own
    # the last steps are short: the kill can land after the run's end (the process was
    # printing its summary); then there is no interrupted run to mark failed
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        (killed,) = [run.status for run in instance.get_runs()]
    finally:
        instance.dispose()
    interrupted = killed == dg.DagsterRunStatus.STARTED
    assert interrupted or killed == dg.DagsterRunStatus.SUCCESS, killed

    r = clipflow("run", "--landing", str(landing), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{len(DAYS)}/{len(DAYS)} days succeeded" in r.stdout
    assert leftovers(home) == []
    _same_partitions(home, uninterrupted)
    # the killed run no longer reads STARTED: the re-run marked it failed, saying why
    assert ("ended before this run did (killed?)" in r.stdout) is interrupted
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        statuses = [run.status for run in instance.get_runs()]
    finally:
        instance.dispose()
    assert statuses.count(dg.DagsterRunStatus.FAILURE) == int(interrupted)
    assert statuses.count(dg.DagsterRunStatus.SUCCESS) == len(statuses) - int(interrupted)
    assert len(statuses) - int(interrupted) >= len(DAYS)
