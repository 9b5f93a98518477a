"""`clipflow backfill` interrupted (Ctrl-C, or SIGTERM from a service manager): the runs it queued and no one started are
cancelled (nothing is left queued for a later daemon to start out of order), the run that
had started is left to end, and the command exits non-zero saying so."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
from faults.fault_support import ROOT, SLOW, clipflow_env, generate

pytestmark = SLOW
START = "2026-04-01"


def _runs(instance) -> list:
    return list(
        instance.get_runs(dg.RunsFilter(tags={"clipflow/launched_by": "clipflow backfill"}))
    )


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; a service stop
def test_an_interrupted_backfill_cancels_its_queued_runs(tmp_path, signo):
    landing, home = tmp_path / "landing", tmp_path / "home"
    generate(landing, 3, START)
    log = tmp_path / "backfill.log"
    # as from a terminal: SIGINT at its default (a pytest-xdist worker ignores it, and an
    # ignored signal stays ignored in the processes it starts)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "backfill", "--landing",
                             str(landing)], cwd=ROOT, env=clipflow_env(home),
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        started = []
        while not started and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if "run slot(s)" in log.read_text():  # its instance's storage is set up: read it
                with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
                    started = [
                        r for r in _runs(instance) if r.status == dg.DagsterRunStatus.STARTED
                    ]
        assert started, log.read_text()[-3000:]
        proc.send_signal(signo)
        assert proc.wait(timeout=120) == 130
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
