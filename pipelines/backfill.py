"""`clipflow backfill`: a range of days with day D+1's data lane beside day D's model lane
(#21).

A day is two lanes (assets.constants, pipelines.jobs): `data_job` (ingestion, video
metadata, features) and `model_job` (the Feast registry, training set, model, A/B, scores,
drift, the online store). Within a lane the days must keep date order (ingestion
deduplicates against the other days, features advance the day before's creator state,
every model step reads or moves the registry's aliases), but day D+1's data lane does not
read what day D's model lane writes, so the two run at once. With cores to spare that is up
to twice as fast as `clipflow run` when the lanes take about as long; on this 2-core
machine, where one day in-process already keeps both cores busy, 1.00-1.07x (bench
`backfill`, README "Scaling out").

The runs are Dagster's: each is submitted to the instance's run queue (the `dagster job
launch` path), started by its run launcher in a process of its own once a run slot
(`CLIPFLOW_RUN_SLOTS`) and its lane's pool (one run per lane) are free, and shows up in
the UI. What this command decides is only when to submit: every day's data run at once (the
data pool starts them one by one, in the queue's order: date order); day D's model run
once day D's data run succeeded and day D-1's model run, and the retrain on drift it
called for (the rule of `retrain_on_drift_sensor`, as `clipflow run` applies it), ended. A
day whose data run failed gets no model run: its model lane would read a day the data lane
did not finish (`clipflow run` runs the steps a failure did not reach); later days go on.

Why not Dagster's asset backfill: it launches a run per asset as each one's parents land,
so a day's model lane is split over several runs and only a graph edge orders two days;
the model lane's order is the registry's (day D+1 must not train before day D has scored
and promoted), which the asset graph cannot say without a cycle.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from assets.constants import DATA_LANE, MODEL_LANE
from pipelines.runner import LAUNCHED_BY, QUIET_LOGS

TICK_S = 0.5


@dataclass
class RunLine:
    day: str
    job: str
    run_id: str
    status: str  # SUCCESS, FAILURE, CANCELED, ... or NOT RUN (with `why`)
    start: float | None = None
    end: float | None = None
    why: str = ""


@dataclass
class BackfillSummary:
    days: list[str]
    slots: int
    seconds: float = 0.0
    runs: list[RunLine] = field(default_factory=list)

    @property
    def success(self) -> bool:
        models = [r for r in self.runs if r.job == "model_job"]
        return len(models) == len(self.days) > 0 and all(r.status == "SUCCESS" for r in self.runs)

    def max_parallel(self) -> int:
        """The most runs executing at one moment."""
        edges = sorted(
            (t, d)
            for r in self.runs
            if r.start is not None and r.end is not None
            for t, d in ((r.start, 1), (r.end, -1))
        )
        now = best = 0
        for _, d in edges:
            now += d
            best = max(best, now)
        return best


def workspace_target():
    """The code location of `clipflow ui` (workspace.yaml at the project's root)."""
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from pipelines.cli import PROJECT_ROOT

    return WorkspaceFileTarget([str(PROJECT_ROOT / "workspace.yaml")])


def ensure_lane_pools(instance=None) -> list[str]:
    """Create the lanes' pools (DATA_LANE, MODEL_LANE) at the instance's default limit, if it
    has one: Dagster's run queue creates a pool when it first sees a queued run use it, but
    only after deciding which runs to start in that pass, so two runs of one lane queued
    before could start together. `clipflow ui` and `clipflow backfill` call it; a
    deployment that runs its own daemon sets them once (`dagster instance concurrency set
    clipflow_data 1`, the same for clipflow_models). Returns the pools created."""
    import dagster as dg

    if instance is None:
        with dg.DagsterInstance.get() as own:
            return ensure_lane_pools(own)
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    known = storage.get_concurrency_keys()
    missing = [pool for pool in (DATA_LANE, MODEL_LANE) if pool not in known]
    return [pool for pool in missing if storage.initialize_concurrency_limit_to_default(pool)]


class _Submitter:
    """Submits runs of the code location's jobs to the instance's run queue."""

    def __init__(self, instance, ctx) -> None:
        self.instance, self.ctx = instance, ctx

    def __call__(self, job: str, day: str, run_config: dict | None = None, tags=None) -> str:
        from dagster._cli.job import _create_run

        request = self.ctx.create_request_context()
        (location,) = request.code_locations
        (repo,) = location.get_repositories().values()
        run = _create_run(
            instance=self.instance,
            code_location=location,
            remote_repo=repo,
            remote_job=repo.get_full_job(job),
            run_config={**QUIET_LOGS, **(run_config or {})},
            tags={**(tags or {}), "dagster/partition": day, LAUNCHED_BY: "clipflow backfill"},
            op_selection=None,
            run_id=None,
        )
        self.instance.submit_run(run.run_id, request)
        return run.run_id


def run_backfill(days: list[str], say: Callable[[str], None] = lambda m: None) -> BackfillSummary:
    """Run `days` (ISO dates, ascending) on the instance under `$DAGSTER_HOME`, two lanes at
    a time; returns when every run submitted has ended."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    t0 = time.time()
    with (
        dg.DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, workspace_target()) as ctx,
        QueuedRunCoordinatorDaemon(interval_seconds=TICK_S) as queue,
    ):
        slots = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
        say(f"backfill: {len(days)} day(s), {slots} run slot(s); data lane beside model lane")
        ensure_lane_pools(instance)
        lanes = _Lanes(instance, _Submitter(instance, ctx), days, say, t0)
        with _StopSignals() as stop:
            try:
                lanes.start()
                while not stop.check():
                    list(queue.run_iteration(ctx))  # starts what the slots and pools allow
                    if lanes.tick():
                        break
                    time.sleep(TICK_S)
            except KeyboardInterrupt:
                _cancel_queued(instance, lanes.run_ids(), say)
                raise
    return BackfillSummary(days, slots, time.time() - t0, [*lanes.lines.values(), *lanes.not_run])


class _Lanes:
    """The backfill's state: every day's data run (submitted at once), the model lane's
    runs so far (model runs and retrains on drift, in order), the runs that ended."""

    def __init__(self, instance, submit, days: list[str], say, t0: float) -> None:
        from models.core.settings import current

        self.instance, self.submit, self.days, self.say, self.t0 = instance, submit, days, say, t0
        self.data: dict[str, str] = {}  # day -> its data run
        self.chain: list[tuple[str, str, str]] = []  # (day, job, run id)
        self.lines: dict[str, RunLine] = {}  # the runs that ended, by id
        self.not_run: list[RunLine] = []
        self.judged: set[str] = set()  # model runs whose drift report was looked at
        self.nxt, self.last_retrain = 0, None
        self.cooldown = current().retrain_cooldown_days

    def start(self) -> None:
        """Every day's data run, in date order (the data pool starts them in that order)."""
        for day in self.days:
            self.data[day] = self.submit("data_job", day)

    def run_ids(self) -> list[str]:
        return [*self.data.values(), *(r for _, _, r in self.chain)]

    def tick(self) -> bool:
        """Note the runs that ended, submit what may start now; True when all is done."""
        self._note_ended()
        if not self._retrain_on_drift():
            self._next_model_run()
        return self.nxt == len(self.days) and all(r in self.lines for r in self.run_ids())

    def _note_ended(self) -> None:
        import dagster as dg

        runs = self.instance.get_runs(dg.RunsFilter(run_ids=self.run_ids()))
        by_id = {r.run_id: r for r in runs}
        _fail_dead(self.instance, runs)
        for day, job, rid in [*((d, "data_job", r) for d, r in self.data.items()), *self.chain]:
            if rid not in self.lines and by_id[rid].is_finished:
                self.lines[rid] = _line(self.instance, day, job, by_id[rid])
                self.say(_describe(self.lines[rid], self.t0))

    def _retrain_on_drift(self) -> bool:
        """When the last model run ended and its drift report calls for a retrain (the
        sensor's rule and cool-down, as `clipflow run` applies it), submit it: True."""
        from pipelines.runner import _steps
        from pipelines.sensors.retrain_on_drift import drift_trigger, retrain_request

        if not self.chain or self.chain[-1][1] != "model_job":
            return False
        day, _, rid = self.chain[-1]
        if rid not in self.lines or rid in self.judged:
            return False
        self.judged.add(rid)
        report = next((s["meta"] for s in _steps(self.instance, rid)
                       if s["step"] == "drift_report"), None)  # fmt: skip
        why = drift_trigger(report or {}, day, self.last_retrain, self.cooldown)
        if why is None or self.lines[rid].status != "SUCCESS":
            return False
        request, self.last_retrain = retrain_request(day, why), day
        self.say(f"{day}  retrain on drift ({why})")
        self.chain.append(
            (day, "training_job", self.submit("training_job", day, request.run_config,
                                              request.tags))
        )  # fmt: skip
        return True

    def _next_model_run(self) -> None:
        ended = {d: self.lines[r].status for d, r in self.data.items() if r in self.lines}
        free = not self.chain or self.chain[-1][2] in self.lines
        self.nxt, actions = next_model_runs(self.days, self.nxt, ended, free)
        for action, day in actions:
            if action == "submit":
                self.chain.append((day, "model_job", self.submit("model_job", day)))
                continue
            why = "the day's data lane failed"
            self.not_run.append(RunLine(day, "model_job", "", "NOT RUN", why=why))
            self.say(f"{day}  model lane not run: {why}")


class _StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM only set a flag while the backfill runs: a
    KeyboardInterrupt raised inside Dagster's or gRPC's code could be swallowed there (seen
    once: a backfill ran to its end after SIGINT). The loop checks the flag each tick and
    stops between calls (`check` raises KeyboardInterrupt); handlers restored at the end."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> _StopSignals:
        self.received, self.saved = None, {}
        if threading.current_thread() is threading.main_thread():
            for signo in self.SIGNALS:
                self.saved[signo] = signal.signal(signo, self._note)
        return self

    def _note(self, signo: int, _frame) -> None:
        self.received = signo

    def check(self) -> bool:
        if self.received is not None:
            raise KeyboardInterrupt(signal.Signals(self.received).name)
        return False

    def __exit__(self, *exc) -> None:
        for signo, handler in self.saved.items():
            signal.signal(signo, handler)


def _cancel_queued(instance, run_ids: list[str], say: Callable[[str], None]) -> None:
    """Interrupted (Ctrl-C): cancel this backfill's runs still in the queue, or created and
    not yet queued (no one else would start them in date order). Runs already started are
    left to end (unless the interrupt reached their processes too: a terminal's Ctrl-C goes
    to the whole group)."""
    import dagster as dg

    waiting = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
    queued = instance.get_runs(dg.RunsFilter(run_ids=run_ids, statuses=waiting))
    for run in queued:
        instance.report_run_canceled(run, "clipflow backfill was interrupted")
    say(f"interrupted: {len(queued)} queued run(s) cancelled")


def next_model_runs(
    days: list[str], nxt: int, ended: dict[str, str], lane_free: bool
) -> tuple[int, list[tuple[str, str]]]:
    """What the model lane does next, from `days[nxt]` on: ("skip", day) for each day whose
    data run failed, then ("submit", day) for the first whose data run succeeded; nothing
    while the lane's last run (or retrain) is unfinished, or the next day's data run is.
    `ended`: day -> status of each data run that ended. Returns the new `nxt` too."""
    actions: list[tuple[str, str]] = []
    while lane_free and nxt < len(days) and days[nxt] in ended:
        day = days[nxt]
        nxt += 1
        if ended[day] == "SUCCESS":
            actions.append(("submit", day))
            break
        actions.append(("skip", day))
    return nxt, actions


def _fail_dead(instance, runs) -> None:
    """Mark failed a started run whose process is gone (the daemon's run monitoring does
    this), so that a killed run cannot hold the backfill for ever."""
    import dagster as dg
    from dagster._core.launcher.base import WorkerStatus

    launcher = instance.run_launcher
    if not launcher.supports_check_run_worker_health:
        return
    for run in runs:
        if run.status != dg.DagsterRunStatus.STARTED:
            continue
        health = launcher.check_run_worker_health(run)
        if health.status in (WorkerStatus.FAILED, WorkerStatus.NOT_FOUND):
            fresh = instance.get_run_by_id(run.run_id)  # it may have ended meanwhile
            if fresh is not None and fresh.status == dg.DagsterRunStatus.STARTED:
                instance.report_run_failed(fresh, f"the run's process is gone: {health.msg}")


def _line(instance, day: str, job: str, run) -> RunLine:
    record = instance.get_run_record_by_id(run.run_id)
    start, end = (record.start_time, record.end_time) if record else (None, None)
    return RunLine(day, job, run.run_id, run.status.value, start, end)


def _describe(line: RunLine, t0: float) -> str:
    span = (
        f"{line.start - t0:7.1f}s..{line.end - t0:7.1f}s"
        if line.start is not None and line.end is not None
        else "  not started   "
    )
    ok = {"SUCCESS": "ok"}.get(line.status, line.status)
    return f"{line.day}  {line.job:<13} {ok:<8} {span}  run {line.run_id[:8]}"


def print_summary(summary: BackfillSummary, say: Callable[[str], None]) -> None:
    runs = [r for r in summary.runs if r.run_id]
    ok = sum(r.status == "SUCCESS" for r in runs)
    models = sum(r.job == "model_job" and r.status == "SUCCESS" for r in summary.runs)
    say(
        f"\n{models}/{len(summary.days)} days succeeded; {ok}/{len(runs)} runs ok in "
        f"{summary.seconds:.1f}s ({summary.slots} slot(s), at most {summary.max_parallel()} "
        "runs at once)"
    )
    for r in summary.runs:
        if r.status != "SUCCESS":
            say(f"  {r.day} {r.job}: {r.status} {r.why}".rstrip())
