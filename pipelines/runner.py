"""`clipflow run`: the daily job, in-process, for each day in date order.

Each day is one run of `nightly_job` on the Dagster instance under `$DAGSTER_HOME`, exactly
what the nightly schedule launches, so N days of `clipflow run` end in the same state as N
nightly runs, and the runs show up in `clipflow ui`. The in-process executor keeps the cost
per asset at tens of milliseconds (the multiprocess executor costs ~1.7 s per step here).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TextIO

from models.core.errors import root_cause
from pipelines.step_memory import logged_peak, peak_rss_mb, reset_peak_rss

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
LAUNCHED_BY, PID, HOST = "clipflow/launched_by", "clipflow/pid", "clipflow/host"


@dataclass
class DayOutcome:
    day: str
    success: bool
    seconds: float
    run_id: str
    steps: list[dict] = field(default_factory=list)
    job: str = "nightly_job"
    peak_rss_mb: float | None = None  # the day's own peak (None: this OS cannot say)


@dataclass
class RunSummary:
    days: list[DayOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(d.success for d in self.days)


def days_between(start: date, end: date) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def resolve_days(a, command: str, last_complete: date):
    """(settings, the days of `a.start`..`a.end`, by default those of the landing data, up to
    `last_complete`) for CLI `command`, or its exit code after printing why not."""
    from models.core.contract import TABLES
    from models.core.settings import prepare_process
    from models.ingest.landing import landing_days

    s = prepare_process(home=a.home, landing_dir=a.landing)
    if not s.landing_dir.is_dir():
        print(f"error: landing directory not found: {s.landing_dir}", file=sys.stderr)
        return 2
    found = landing_days(s.landing_dir, TABLES.values())
    if found is None and (a.start is None or a.end is None):
        print(f"error: no readable landing data under {s.landing_dir}", file=sys.stderr)
        return 2
    start = a.start or found[0]
    end = a.end or found[1]
    if end > last_complete:
        print(f"note: stopping at {last_complete}: later days are not complete yet")
        end = last_complete
    if start > end:
        print(f"error: nothing to run: start {start} is after end {end}", file=sys.stderr)
        return 2
    days = days_between(start, end)
    print(
        f"clipflow {command}: {len(days)} day(s) {start}..{end}\n  landing {s.landing_dir}\n"
        f"  home    {s.home}"
    )
    return s, days


def _steps(instance, run_id: str) -> list[dict]:
    """One line per asset or check of the run, with what a person wants to know."""
    starts, out, peaks = {}, [], {}
    meta = defaultdict(dict)
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None:
            peak = logged_peak(entry.user_message)  # pipelines.step_memory's hooks
            if peak is not None and entry.step_key:
                peaks[entry.step_key] = peak
            continue
        ev.timestamp = entry.timestamp
        et = ev.event_type_value
        key = ev.step_key
        if et == "STEP_START":
            starts[key] = ev.timestamp
        elif et == "ASSET_MATERIALIZATION":
            m = ev.event_specific_data.materialization.metadata
            meta[key].update({k: getattr(v, "value", v) for k, v in m.items()})
        elif et == "ASSET_CHECK_EVALUATION":
            ce = ev.event_specific_data
            if not ce.passed and getattr(ce.severity, "value", None) == "WARN":
                meta[key].setdefault("warnings", []).append(ce.check_name)  # an alert
                continue
            meta[key]["check"] = ce.check_name
            meta[key]["passed"] = ce.passed
            failed = (ce.metadata or {}).get("failed")
            if failed is not None:
                meta[key]["failed"] = getattr(failed, "value", failed)
        elif et in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED", "STEP_UP_FOR_RETRY"):
            status = (
                {"STEP_SUCCESS": "ok", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}[et]
                if et != "STEP_UP_FOR_RETRY"
                else "retry"
            )
            if status == "ok" and meta[key].get("passed") is False:
                status = "CHECK FAILED"
            err = ""
            if et == "STEP_FAILURE":
                lines = root_cause(ev.event_specific_data.error).splitlines()
                err = (lines[0] if lines else "")[:300]  # one line for the summary
            out.append(
                {
                    "step": key,
                    "status": status,
                    "seconds": ev.timestamp - starts.get(key, ev.timestamp),
                    "meta": dict(meta[key]),
                    "error": err,
                }
            )
    for step in out:  # a step's hook logs after the step's own events
        step["peak_rss_mb"] = peaks.get(step["step"])
    return out


def _describe(step: dict) -> str:
    m = step["meta"]
    parts = []
    if "dagster/row_count" in m:
        parts.append(f"{m['dagster/row_count']:,} rows")
    if m.get("rows_quarantined"):
        parts.append(f"{m['rows_quarantined']:,} quarantined")
    if m.get("files_quarantined"):
        parts.append(f"{m['files_quarantined']} unreadable file(s)")
    if "passed" in m:
        parts.append(
            f"{m.get('check', 'check')} passed"
            if m["passed"]
            else f"{m.get('check', 'check')} FAILED ({m.get('failed', '?')} failed)"
        )
    if m.get("warnings"):
        parts.append("WARN: " + ", ".join(m["warnings"]))
    for key in ("decision", "note"):  # why a step did what it did (trained, skipped)
        if isinstance(m.get(key), str):
            parts.append(m[key])
    if step["error"]:
        parts.append(step["error"])
    return ", ".join(parts)


def run_days(
    days: list[str], job_name: str = "nightly_job", out: TextIO | None = None
) -> RunSummary:
    """Run `job_name` for each day (ISO dates, ascending) in-process; print progress."""
    import dagster as dg

    def say(msg: str) -> None:
        if out is not None:
            print(msg, file=out, flush=True)

    summary, last_retrain, day = RunSummary(), None, days[0] if days else ""
    try:
        with dg.DagsterInstance.get() as instance:
            for line in fail_orphans(instance):
                say(line)
            for day in days:
                outcome = _execute(instance, job_name, day)
                summary.days.append(outcome)
                say(
                    f"{day}  {'ok' if outcome.success else 'FAILED'}  ({outcome.seconds:.1f}s, "
                    f"peak RSS {_mb(outcome.peak_rss_mb)}, run {outcome.run_id[:8]})"
                )
                _say_steps(say, outcome)
                if job_name == "nightly_job":
                    last_retrain = _retrain_on_drift(instance, outcome, last_retrain, say, summary)
    except Exception as e:
        if not storage_failure(e):
            raise
        summary.days.append(DayOutcome(day, False, 0.0, "", job=job_name))
        say(
            f"{day}  FAILED  the Dagster instance's storage stopped answering "
            f"({DAGSTER_STORAGE}): {_first_line(e)}\n  stopped here: run again once it is "
            "back; the next run marks this day's unfinished run failed and writes the day again"
        )
    return summary


DAGSTER_STORAGE = "$DAGSTER_HOME/dagster.yaml, e.g. PostgreSQL at DAGSTER_PG_URL"
_STORAGE_ERRORS = {"OperationalError", "InterfaceError", "DagsterPostgresException"}


def storage_failure(error: BaseException) -> bool:
    """Whether `error` (or one it came from) is a database connection failure of the
    instance's storage (psycopg2/SQLAlchemy/dagster-postgres), not a failure of a step."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if {c.__name__ for c in type(error).__mro__} & _STORAGE_ERRORS:
            return True
        error = error.__cause__ or error.__context__
    return False


def _first_line(error: BaseException) -> str:
    """The error's class and first line (a database error names host and port, never the
    URL's password)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def fail_orphans(instance) -> list[str]:
    """Mark failed the runs of a `clipflow run` on this host whose process is gone (killed,
    or the machine went down): they would read STARTED for ever. One line per run."""
    import dagster as dg

    found = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED],
            tags={LAUNCHED_BY: "clipflow run", HOST: socket.gethostname()},
        )
    )
    done = []
    for run in found:
        pid = run.tags.get(PID, "")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        why = (
            f"the clipflow run process (pid {pid}) ended before this run did (killed?); "
            "the next writer finished or undid its interrupted writes"
        )
        instance.report_run_failed(run, why)
        done.append(f"run {run.run_id[:8]} ({run.tags.get('dagster/partition', '?')}): {why}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _retrain_on_drift(instance, outcome: DayOutcome, last: str | None, say, summary) -> str | None:
    """What `retrain_on_drift_sensor` does in the daemon, applied right after the day's run:
    a gated `training_job` run for the day when its drift report calls for one (same rule,
    same cool-down in partition days). Returns the day of the last drift retrain."""
    from models.core.settings import current
    from pipelines.sensors.retrain_on_drift import drift_trigger, retrain_request

    report = next((s["meta"] for s in outcome.steps if s["step"] == "drift_report"), None)
    why = drift_trigger(report or {}, outcome.day, last, current().retrain_cooldown_days)
    if why is None:
        return last
    request = retrain_request(outcome.day, why)
    retrain = _execute(instance, "training_job", outcome.day, request.run_config, request.tags)
    summary.days.append(retrain)
    say(f"{outcome.day}  retrain on drift ({why}): {'ok' if retrain.success else 'FAILED'}")
    _say_steps(say, retrain)
    return outcome.day


def _execute(
    instance, job_name: str, day: str, run_config: dict | None = None, tags: dict | None = None
) -> DayOutcome:
    """One in-process run of `job_name` for partition `day`, with its steps."""
    from pipelines.definitions import defs

    reset = reset_peak_rss()
    t0 = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        partition_key=day,
        instance=instance,
        raise_on_error=False,
        run_config={**QUIET_LOGS, **(run_config or {})},
        tags={
            **(tags or {}),
            LAUNCHED_BY: "clipflow run",
            PID: str(os.getpid()),
            HOST: socket.gethostname(),
        },
    )
    seconds, peak = time.perf_counter() - t0, peak_rss_mb() if reset else None
    steps = _steps(instance, result.run_id)
    if peak is not None:  # the hooks start the peak afresh after each step: the day's is
        peak = max([peak, *(s["peak_rss_mb"] for s in steps if s["peak_rss_mb"])])  # the max
    return DayOutcome(
        day, result.success, seconds, result.run_id, steps, job=job_name, peak_rss_mb=peak
    )


def _mb(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f} MB"


def _say_steps(say, outcome: DayOutcome) -> None:
    for s in outcome.steps:
        peak = "" if s.get("peak_rss_mb") is None else f"{s['peak_rss_mb']:7,.0f} MB"
        say(
            f"    {s['step']:<32} {s['status']:<12} {s['seconds']:6.2f}s {peak:>10}  {_describe(s)}"
        )


def print_summary(summary: RunSummary, out: TextIO) -> None:
    days = [d for d in summary.days if d.job != "training_job"]
    retrains = [d for d in summary.days if d.job == "training_job"]
    print(f"\n{sum(d.success for d in days)}/{len(days)} days succeeded", file=out)
    if retrains:
        ok = sum(d.success for d in retrains)
        print(f"{ok}/{len(retrains)} retrains on drift succeeded", file=out)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for d in summary.days:
        for s in d.steps:
            m = s["meta"]
            if "dagster/row_count" in m:
                t = totals[s["step"]]
                t[0] += int(m["dagster/row_count"])
                t[1] += int(m.get("rows_quarantined", 0) or 0)
                t[2] += int(m.get("files_quarantined", 0) or 0)
    if totals:
        print(f"{'asset':<28}{'rows':>12}{'quarantined':>13}{'bad files':>11}", file=out)
        for k, (rows, q, f) in totals.items():
            print(f"{k:<28}{rows:>12,}{q:>13,}{f:>11}", file=out)
    failed = [(d.day, s) for d in summary.days for s in d.steps if s["status"] not in ("ok",)]
    for day, s in failed:
        print(f"  {day} {s['step']}: {s['status']} {s['error']}", file=out)
