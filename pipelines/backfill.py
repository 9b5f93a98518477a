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

    from models.core.settings import current
    from pipelines.runner import _steps
    from pipelines.sensors.retrain_on_drift import drift_trigger, retrain_request

    t0 = time.time()
    with (
        dg.DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, workspace_target()) as ctx,
        QueuedRunCoordinatorDaemon(interval_seconds=TICK_S) as queue,
    ):
        slots = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
        summary = BackfillSummary(days, slots)
        say(f"backfill: {len(days)} day(s), {slots} run slot(s); data lane beside model lane")
        ensure_lane_pools(instance)
        submit = _Submitter(instance, ctx)
        data = {day: submit("data_job", day) for day in days}  # the pool keeps their order
        chain: list[tuple[str, str, str]] = []  # (day, job, run id) of the model lane
        lines: dict[str, RunLine] = {}
        judged: set[str] = set()  # model runs whose drift report was looked at
        nxt, last_retrain, cooldown = 0, None, current().retrain_cooldown_days
        stop = _CancelQueued(instance, data, chain, say)
        while True:
            list(queue.run_iteration(ctx))
            ids = [*data.values(), *(r for _, _, r in chain)]
            runs = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(run_ids=ids))}
            _fail_dead(instance, runs.values())
            for day, job, rid in [*((d, "data_job", r) for d, r in data.items()), *chain]:
                if rid not in lines and runs[rid].is_finished:
                    lines[rid] = _line(instance, day, job, runs[rid])
                    say(_describe(lines[rid], t0))
            if chain and chain[-1][1] == "model_job" and chain[-1][2] in set(lines) - judged:
                day, _, rid = chain[-1]  # the model lane of `day` ended: retrain on drift?
                judged.add(rid)
                report = next((s["meta"] for s in _steps(instance, rid)
                               if s["step"] == "drift_report"), None)  # fmt: skip
                why = drift_trigger(report or {}, day, last_retrain, cooldown)
                if why is not None and lines[rid].status == "SUCCESS":
                    request, last_retrain = retrain_request(day, why), day
                    say(f"{day}  retrain on drift ({why})")
                    rid = submit("training_job", day, request.run_config, request.tags)
                    chain.append((day, "training_job", rid))
                    continue
            ended = {d: lines[r].status for d, r in data.items() if r in lines}
            nxt, actions = next_model_runs(days, nxt, ended, not chain or chain[-1][2] in lines)
            for action, day in actions:
                if action == "submit":
                    chain.append((day, "model_job", submit("model_job", day)))
                    continue
                summary.runs.append(RunLine(day, "model_job", "", "NOT RUN",
                                            why="the day's data lane failed"))  # fmt: skip
                say(f"{day}  model lane not run: the day's data lane failed")
            if nxt == len(days) and all(r in lines for r in [*ids, *(r for _, _, r in chain)]):
                break
            stop.sleep(TICK_S)
    summary.runs[:0] = list(lines.values())
    summary.seconds = time.time() - t0
    return summary


class _CancelQueued:
    """Sleeps between ticks; interrupted (Ctrl-C), it cancels this backfill's runs still in
    the queue (no one else would start them in date order) and lets the interrupt go on.
    Runs already started run to their end."""

    def __init__(self, instance, data: dict, chain: list, say) -> None:
        self.instance, self.data, self.chain, self.say = instance, data, chain, say

    def sleep(self, seconds: float) -> None:
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            import dagster as dg

            ids = [*self.data.values(), *(r for _, _, r in self.chain)]
            queued = self.instance.get_runs(
                dg.RunsFilter(run_ids=ids, statuses=[dg.DagsterRunStatus.QUEUED])
            )
            for run in queued:
                self.instance.report_run_canceled(run, "clipflow backfill was interrupted")
            self.say(f"interrupted: {len(queued)} queued run(s) cancelled; started runs go on")
            raise


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
