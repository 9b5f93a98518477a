"""Late data: `late_data_sensor` re-runs an ingested day when landing files add rows to it.

Each ingestion of a day records which landing files held rows of that day (path, size,
mtime: models/ingest/landing.py). Every tick the sensor lists the landing files, probes
only those the manifest does not know, and finds the ingested days whose rows now lie in
files their ingestion did not read (a file that landed late, or one replaced in place).
It requests one `nightly_job` run at a time, the earliest such day first (partition order;
the home has one writer), tagged with why: which files, how many of that day's rows. It
waits while a late-data run has not ended; when that day's re-run has ingested the files,
the day is no longer late and the next one follows. A re-run that failed is not requested
again for the same files (its tags in the UI say why it ran); the sensor names it in its
skip reason and goes on with the next day. Days never ingested are the nightly run's
business, not late.

Late rows of day D also change the rolling windows (1, 3 and 7 days) of the ingested days
after it, and the online store holds each clip's newest day-end row: so the re-run of D is
followed, in the same tick, by re-runs of the ingested days D+1 .. D+7 (tagged as
follow-ups of D; the queue runs them in order, one at a time). Creator counters that span
all history (`creator_clip_count`, `creator_label_*`) of days past D+7 are not recomputed
here: the incremental creator state of issue #19 owns that.
"""

import hashlib

import dagster as dg

from assets.resources import LandingResource
from models.core import settings
from models.core.contract import TABLES
from models.core.iceberg import warehouse_for
from models.core.warehouse import Warehouse
from models.features.clip_features import HISTORY_DAYS
from models.ingest.landing import LateDay, Manifest, late_files
from pipelines.jobs import nightly_job

SENSOR_INTERVAL_S = 60
LATE_TAG = "clipflow/late_data"
KEY_TAG = "clipflow/late_key"
_ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_NOT_ENDED = [s for s in dg.DagsterRunStatus if s not in _ENDED]
_MAX_REASON = 1000  # characters of the reason tag (the file list is cut, never the counts)


def late_key(day: LateDay) -> str:
    """The day and the exact files (path, size, mtime) that make it late."""
    names = sorted(f"{f.path}\t{f.size}\t{f.mtime_ns}" for f in day.files)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"late-data-{day.ds.isoformat()}-{digest}"


def follow_ups(day: LateDay, ingested: list, key: str) -> list[dg.RunRequest]:
    """Re-runs of the ingested days whose windows reach back to `day` (in date order)."""
    after = [d for d in ingested if 0 < (d - day.ds).days <= HISTORY_DAYS]
    reason = f"late rows of {day.ds} change this day's rolling windows"
    return [
        dg.RunRequest(
            run_key=f"{key}-then-{d.isoformat()}",
            partition_key=d.isoformat(),
            tags={
                LATE_TAG: "true",
                "clipflow/late_follow_up_of": day.ds.isoformat(),
                "clipflow/reason": reason,
            },
        )  # fmt: skip
        for d in sorted(after)
    ]


def late_request(day: LateDay) -> dg.RunRequest:
    listed = ", ".join(f"{name} ({n} rows)" for name, n in sorted(day.rows.items()))
    reason = f"late landing files add {day.total} rows to {day.ds}: {listed}"
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 3] + "..."
    key = late_key(day)
    return dg.RunRequest(
        run_key=key,
        partition_key=day.ds.isoformat(),
        tags={
            LATE_TAG: "true",
            KEY_TAG: key,
            "clipflow/late_files": str(len(day.rows)),
            "clipflow/late_rows": str(day.total),
            "clipflow/reason": reason,
        },
    )


@dg.sensor(
    job=nightly_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def late_data_sensor(context: dg.SensorEvaluationContext, landing: LandingResource):
    """Re-run, one at a time in date order, the ingested days late files add rows to."""
    warehouse = warehouse_for(settings.current())
    days = late_files(warehouse, landing.path, TABLES.values())
    if not days:
        return dg.SkipReason("no landing file adds rows to an ingested day")
    instance = context.instance
    running = instance.get_runs(
        filters=dg.RunsFilter(tags={LATE_TAG: "true"}, statuses=_NOT_ENDED), limit=1
    )
    if running:
        return dg.SkipReason(
            f"{len(days)} late day(s); waiting for late-data run {running[0].run_id} "
            f"({running[0].tags.get('dagster/partition')}) to end"
        )
    failed = []
    for day in days:
        prior = instance.get_runs(filters=dg.RunsFilter(tags={KEY_TAG: late_key(day)}), limit=1)
        if prior:  # asked before for these very files: ended without ingesting them
            failed.append(f"{day.ds} (run {prior[0].run_id}, {prior[0].status.value})")
            continue
        ingested = ingested_days(warehouse)
        then = follow_ups(day, ingested, late_key(day))
        context.log.info(
            f"late data: re-running {day.ds}: {day.total} new rows"
            + (f", then {len(then)} later day(s) whose windows include it" if then else "")
        )
        return [late_request(day), *then]
    return dg.SkipReason(
        "late days whose re-run ended without reading the files, re-run them by hand: "
        + ", ".join(failed)
    )


def ingested_days(warehouse: Warehouse) -> list:
    """Every day some table's ingestion recorded (the manifests' `_days` records)."""
    return sorted({d for t in TABLES.values() for d in Manifest(warehouse, t).recorded_days()})
