"""`clipflow run`'s per-day peak RSS (#20): each day's figure is its own, not the process's
peak so far."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pipelines.runner import _mb
from pipelines.step_memory import peak_rss_mb, reset_peak_rss

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="VmHWM and clear_refs: Linux")


def test_a_reset_starts_the_peak_afresh():
    assert reset_peak_rss()
    base = peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MB, every page touched
    high = peak_rss_mb()
    assert base is not None and high is not None and high >= base + 280
    del block
    assert reset_peak_rss()
    after = peak_rss_mb()
    assert after is not None and after < high - 250  # the 300 MB are no longer the peak


def test_an_unknown_peak_says_so():
    assert _mb(None) == "unknown" and _mb(1234.4) == "1,234 MB"


def test_each_step_reports_its_own_peak(monkeypatch):
    """The jobs' hooks log each step's own peak (the previous step's 300 MB do not carry
    over), after handing what the step freed back to the OS, and `clipflow run`'s step
    lines read it back from the run's logs."""
    import dagster as dg

    import pipelines.jobs
    from pipelines.jobs import STEP_PEAK_HOOKS
    from pipelines.runner import _steps
    from pipelines.step_memory import release_memory

    released = []
    monkeypatch.setattr(pipelines.jobs, "release_memory", lambda: released.append(release_memory()))

    @dg.asset
    def big() -> None:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, every page touched
        assert block.sum() > 0

    @dg.asset(deps=[big])
    def small() -> None:
        pass

    @dg.asset(deps=[small])
    def fails() -> None:
        raise RuntimeError("planted")

    job = dg.define_asset_job("peaks", hooks=STEP_PEAK_HOOKS)
    defs = dg.Definitions(assets=[big, small, fails], jobs=[job])
    with dg.DagsterInstance.ephemeral() as instance:
        assert reset_peak_rss()
        result = defs.resolve_job_def("peaks").execute_in_process(
            instance=instance, raise_on_error=False
        )
        steps = {s["step"]: s for s in _steps(instance, result.run_id)}
    assert {k: s["status"] for k, s in steps.items()} == {
        "big": "ok", "small": "ok", "fails": "FAILED"
    }  # fmt: skip
    peaks = {k: s["peak_rss_mb"] for k, s in steps.items()}
    assert all(isinstance(p, float) and p > 0 for p in peaks.values()), peaks
    assert peaks["big"] >= peaks["small"] + 280, peaks  # each step's own, not the run's
    assert peaks["fails"] < peaks["big"] - 250, peaks  # a failed step reports its peak too
    assert released == [None] * 3  # once after each step, failed or not
