"""`clipflow backfill`'s decisions (pipelines/backfill.py) without running anything: when the
model lane of a day may start, and what the summary says. The runs themselves, on a real
instance and the Iceberg profile, are tests/scaleout/test_scaleout_run.py."""

from __future__ import annotations

import pytest

from pipelines.backfill import BackfillSummary, RunLine, next_model_runs

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
A, B, C = DAYS


@pytest.mark.parametrize(
    ("nxt", "ended", "lane_free", "want_nxt", "want"),
    [
        (0, {}, True, 0, []),  # day A's data run has not ended
        (0, {A: "SUCCESS"}, False, 0, []),  # the lane's last run has not ended
        (0, {A: "SUCCESS", B: "SUCCESS"}, True, 1, [("submit", A)]),  # one day at a time
        (1, {A: "SUCCESS", B: "FAILURE"}, True, 2, [("skip", B)]),  # C not ended: wait
        (1, {A: "SUCCESS", B: "FAILURE", C: "SUCCESS"}, True, 3, [("skip", B), ("submit", C)]),
        (1, {A: "SUCCESS", B: "CANCELED", C: "FAILURE"}, True, 3, [("skip", B), ("skip", C)]),
        (3, {A: "SUCCESS", B: "SUCCESS", C: "SUCCESS"}, True, 3, []),  # all done
    ],
)
def test_a_days_model_lane_starts_after_its_data_lane_succeeded_and_the_lane_is_free(
    nxt, ended, lane_free, want_nxt, want
):
    assert next_model_runs(DAYS, nxt, ended, lane_free) == (want_nxt, want)


def _run(day, job, status="SUCCESS", start=0.0, end=1.0):
    return RunLine(day, job, f"{job}-{day}", status, start, end)


def test_a_backfill_succeeds_only_with_every_days_model_lane_and_every_run_ok():
    runs = [_run(d, j) for d in DAYS for j in ("data_job", "model_job")]
    assert BackfillSummary(DAYS, 2, runs=runs).success
    assert not BackfillSummary(DAYS, 2, runs=runs[:-1]).success  # a day without its model run
    failed = [*runs[:-1], _run(C, "model_job", "FAILURE")]
    assert not BackfillSummary(DAYS, 2, runs=failed).success
    skipped = [*runs[:-1], RunLine(C, "model_job", "", "NOT RUN", why="data lane failed")]
    assert not BackfillSummary(DAYS, 2, runs=skipped).success
    assert not BackfillSummary([], 2, runs=[]).success  # nothing ran: not a success


def test_max_parallel_counts_runs_executing_at_one_moment():
    runs = [_run(A, "data_job", start=0, end=10), _run(B, "data_job", start=10, end=20),
            _run(A, "model_job", start=11, end=30), _run(C, "data_job", start=20, end=25),
            RunLine(C, "model_job", "", "NOT RUN")]  # fmt: skip
    assert BackfillSummary(DAYS, 2, runs=runs).max_parallel() == 2
    assert BackfillSummary(DAYS, 2, runs=runs[:2]).max_parallel() == 1  # end == next start
