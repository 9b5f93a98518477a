"""`clipflow backfill` interrupted (Ctrl-C): the runs it queued and no one started are
cancelled (nothing is left queued for a later daemon to start out of order), the run that
had started is left to end, and the command exits non-zero saying so."""

from __future__ import annotations

import signal
import time

import dagster as dg
from faults.fault_support import SLOW, clipflow_env, generate, start_clipflow

pytestmark = SLOW
START = "2026-04-01"


def _runs(instance) -> list:
    return list(
        instance.get_runs(dg.RunsFilter(tags={"clipflow/launched_by": "clipflow backfill"}))
    )


def test_an_interrupted_backfill_cancels_its_queued_runs(tmp_path):
    landing, home = tmp_path / "landing", tmp_path / "home"
    generate(landing, 3, START)
    log = tmp_path / "backfill.log"
    proc = start_clipflow("backfill", "--landing", str(landing), env=clipflow_env(home), log=log)
    try:
        deadline = time.monotonic() + 300
        started = []
        while not started and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if (home / "dagster" / "dagster.yaml").exists():
                with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
                    started = [
                        r for r in _runs(instance) if r.status == dg.DagsterRunStatus.STARTED
                    ]
        assert started, log.read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = _runs(instance)
        # local warehouse: one run slot, so the other two days' data runs were still queued
        assert [r.job_name for r in runs].count("data_job") == 3, out[-3000:]
        canceled = [r for r in runs if r.status == dg.DagsterRunStatus.CANCELED]
        assert len(canceled) >= 1 and f"interrupted: {len(canceled)} queued run(s) cancelled" in out
        waiting = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
        assert not [r for r in runs if r.status in waiting]
        first = started[0].run_id
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not instance.get_run_by_id(first).is_finished:
            time.sleep(1)  # the started run is left to end (its process, not ours)
        assert instance.get_run_by_id(first).status != dg.DagsterRunStatus.CANCELED
