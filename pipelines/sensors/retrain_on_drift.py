"""Retraining on drift: `retrain_on_drift_sensor` requests `training_job` when a day's drift
report shows dataset drift or its rmse alert fired.

The sensor reads `drift_report` materializations in storage order after its cursor. A
report that calls for a retrain triggers one `training_job` run for the report's day,
`run_key` `retrain-on-drift:<ds>` (the same day's report, materialized again, never
triggers twice), unless the last trigger was less than the cool-down before it: the
cool-down counts partition days, so a backfill over a month triggers at most once a
cool-down, as the nightly run does. The run is an ordinary gated training: the new model
still has to pass `validation_gate` before it is registered. The first tick only records
the reports already there; `clipflow run` applies the same rule (`drift_trigger`) day by
day in its backfills.
"""

import json
from datetime import date

import dagster as dg

from models.core import settings
from pipelines.jobs import training_job

DRIFT_REPORT = dg.AssetKey("drift_report")
SENSOR_INTERVAL_S = 60


def drift_trigger(metadata: dict, ds: str, last_trigger: str | None, cooldown: int) -> str | None:
    """Why a report calls for a retrain now (None: it does not, or the cool-down holds).
    `metadata`: the report's metadata values (plain Python values)."""
    reasons = [
        why
        for key, why in (("dataset_drift", "dataset drift"), ("rmse_alert", "rmse alert"))
        if metadata.get(key) is True
    ]
    if not reasons:
        return None
    if last_trigger and (date.fromisoformat(ds) - date.fromisoformat(last_trigger)).days < cooldown:
        return None
    return f"drift on {ds}: " + " and ".join(reasons)


def retrain_request(ds: str, why: str) -> dg.RunRequest:
    config = {"force_retrain": True, "retrain_trigger": why}
    return dg.RunRequest(
        run_key=f"retrain-on-drift:{ds}",
        partition_key=ds,
        run_config={"ops": {"clip_quality_model": {"config": config}}},
        tags={"clipflow/trigger": "drift", "clipflow/drift_report": ds},
    )


def _values(metadata: dict) -> dict:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def retrain_on_drift_sensor(context: dg.SensorEvaluationContext):
    """A gated retrain when a day's drift report shows dataset drift or an rmse alert, at
    most once per cool-down (partition days)."""
    if not context.cursor:  # first tick: history is the backfill's business (clipflow run)
        latest = context.instance.fetch_materializations(DRIFT_REPORT, limit=1).records
        after = latest[0].storage_id if latest else None
        context.update_cursor(json.dumps({"after": after, "last": None}))
        return dg.SkipReason("first tick: recorded the existing drift reports")
    state = json.loads(context.cursor)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DRIFT_REPORT, after_storage_id=state["after"]),
        limit=100,
        ascending=True,
    ).records
    requests, cooldown = [], settings.current().retrain_cooldown_days
    for record in records:
        state["after"] = record.storage_id
        event = record.asset_materialization
        if event is None or event.partition is None:
            continue
        why = drift_trigger(_values(event.metadata), event.partition, state["last"], cooldown)
        if why:
            context.log.info(f"requesting a gated retrain for {event.partition}: {why}")
            requests.append(retrain_request(event.partition, why))
            state["last"] = event.partition
    context.update_cursor(json.dumps(state))
    if not requests:
        return dg.SkipReason(f"{len(records)} new drift report(s), none calls for a retrain")
    return requests
