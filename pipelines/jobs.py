"""Jobs and the nightly schedule.

- `nightly_job`: the whole graph for one day (ingest -> features -> Feast materialization ->
  training set -> train when the policy says -> score -> publish online -> experiments ->
  drift). The nightly schedule runs it; `clipflow run` runs it for each day of a backfill,
  and the UI's partition backfill launches one run of it per day.
- `training_job`: build the day's training set and train, gate and register now
  (`force_retrain`); also what `retrain_on_drift_sensor` requests.
- `ingest_job`: landing files of one day into the warehouse only.

`nightly_schedule` fires at 02:00 UTC by default (`CLIPFLOW_NIGHTLY_AT=HH:MM`, UTC, read when
the code location loads) for the daily partition that just closed, and is running by default,
so `clipflow ui` (webserver + daemon) ticks it.

- `data_job` and `model_job`: the two lanes of a day (assets.constants: DATA_LANE,
  MODEL_LANE), what `clipflow backfill` runs so that day D+1's ingestion and features run
  beside day D's model lane (pipelines/backfill.py). Together they are `nightly_job`.

Every run executes in-process (the `Definitions` executor): the steps of a day are a chain,
the machine has two cores, and the multiprocess executor costs ~1.7 s per step here against
~50 ms. Each lane is a concurrency pool of one run (`concurrency.pools` in the instance that
`clipflow` writes, run granularity): `nightly_job` holds both, so nightly runs, job
backfills and the UI's backfills run one day at a time in date order, each seeing the
previous day's model, even with several run slots (`CLIPFLOW_RUN_SLOTS`: 1 on the local
warehouse, whose one writer would make a second run wait; 2 on Iceberg).
"""

from __future__ import annotations

import re

import dagster as dg

from assets.constants import DAILY_PARTITIONS, INGEST
from assets.online import push_fresh_features
from models.core import settings
from pipelines.step_memory import PEAK_LOG, peak_rss_mb, release_memory, reset_peak_rss

NIGHTLY_AT_ENV = "CLIPFLOW_NIGHTLY_AT"
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def nightly_time(value: str | None = None) -> tuple[int, int]:
    """(hour, minute) UTC of the nightly run: `value`, else the settings' (02:00 unless
    `CLIPFLOW_NIGHTLY_AT` says otherwise)."""
    raw = (value if value is not None else settings.current().nightly_at).strip() or "02:00"
    m = _HHMM.match(raw)
    if not m:
        raise ValueError(f"{NIGHTLY_AT_ENV}={raw!r}: expected HH:MM in UTC, like 02:00")
    return int(m.group(1)), int(m.group(2))


def _log_and_reset(context: dg.HookContext) -> None:
    """Log the step's peak RSS (pipelines.step_memory), hand what it freed back to the OS,
    then start the next step's peak afresh."""
    peak = peak_rss_mb()
    release_memory()  # what the step freed goes back to the OS before the next starts
    if peak is not None and reset_peak_rss():
        context.log.info(PEAK_LOG.format(mb=peak))


@dg.success_hook(name="step_peak_rss_ok")
def _after_success(context: dg.HookContext) -> None:
    _log_and_reset(context)


@dg.failure_hook(name="step_peak_rss_failed")
def _after_failure(context: dg.HookContext) -> None:
    _log_and_reset(context)


STEP_PEAK_HOOKS = {_after_success, _after_failure}


nightly_job = dg.define_asset_job(
    "nightly_job",
    hooks=STEP_PEAK_HOOKS,
    selection=dg.AssetSelection.all(),
    partitions_def=DAILY_PARTITIONS,
    description="Everything for one day: ingest, features, Feast materialization, training "
    "when the policy says, scoring, online publish, experiments, drift.",
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    hooks=STEP_PEAK_HOOKS,
    selection=dg.AssetSelection.groups(INGEST),
    partitions_def=DAILY_PARTITIONS,
    description="Landing files of one day into the warehouse, with quarantine.",
)

DATA_LANE_SELECTION = dg.AssetSelection.groups(INGEST) | dg.AssetSelection.assets("clip_features")
data_job = dg.define_asset_job(
    "data_job",
    hooks=STEP_PEAK_HOOKS,
    selection=DATA_LANE_SELECTION,
    partitions_def=DAILY_PARTITIONS,
    description="The data lane of a day: ingestion, video metadata, features (what "
    "clipflow backfill runs beside the day before's model lane).",
)
model_job = dg.define_asset_job(
    "model_job",
    hooks=STEP_PEAK_HOOKS,
    selection=dg.AssetSelection.all() - DATA_LANE_SELECTION,
    partitions_def=DAILY_PARTITIONS,
    description="The model lane of a day: the Feast registry, training set, training when "
    "the policy says, A/B, scores, drift, the online store; after the day's data lane.",
)

# On demand: retrain now (the launchpad sets `force_retrain`; the schedule and the daily
# policy cover the rest). Pick the day whose training set to use as the partition.
training_job = dg.define_asset_job(
    "training_job",
    hooks=STEP_PEAK_HOOKS,
    selection=dg.AssetSelection.assets("training_set", "clip_quality_model"),
    partitions_def=DAILY_PARTITIONS,
    config={"ops": {"clip_quality_model": {"config": {"force_retrain": True}}}},
    description="Build the day's training set and train, gate and register a model now.",
)


@dg.job(executor_def=dg.in_process_executor)
def online_push_job():
    """Push fresh features of new landing engagement files to the online store."""
    push_fresh_features()


def build_nightly_schedule(at: str | None = None) -> dg.ScheduleDefinition:
    """`nightly_job` each day at `at` (UTC) on the partition of the day that just closed."""
    hour, minute = nightly_time(at)
    return dg.build_schedule_from_partitioned_job(
        nightly_job,
        hour_of_day=hour,
        minute_of_hour=minute,
        name="nightly_schedule",
        description=f"nightly_job at {hour:02d}:{minute:02d} UTC for the day that just closed "
        f"(set {NIGHTLY_AT_ENV}=HH:MM to move it).",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


nightly_schedule = build_nightly_schedule()

__all__ = [
    "data_job",
    "ingest_job",
    "model_job",
    "nightly_job",
    "nightly_schedule",
    "online_push_job",
    "training_job",
]
