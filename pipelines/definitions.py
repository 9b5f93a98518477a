"""The one `Definitions` of clipflow: assets, checks, jobs, schedules and resources."""

import dagster as dg

from assets.enrichment import enrichment_assets
from assets.experiments import experiment_assets
from assets.feature_store import feature_store_assets
from assets.features import feature_assets, feature_checks
from assets.ingest import ingest_assets, ingest_checks
from assets.monitoring import monitoring_assets
from assets.online_store import online_store_assets
from assets.resources import clipflow_resources
from assets.scoring import scoring_assets
from assets.training import training_assets
from pipelines.jobs import (
    data_job,
    ingest_job,
    model_job,
    nightly_job,
    nightly_schedule,
    online_push_job,
    training_job,
)
from pipelines.sensors.late_data import late_data_sensor
from pipelines.sensors.online_push import online_push_sensor
from pipelines.sensors.retrain_on_drift import retrain_on_drift_sensor
from pipelines.sensors.webhooks import webhook_sensors

defs = dg.Definitions(
    assets=[
        *ingest_assets,
        *enrichment_assets,
        *feature_assets,
        *feature_store_assets,
        *training_assets,
        *scoring_assets,
        *online_store_assets,
        *experiment_assets,
        *monitoring_assets,
    ],
    asset_checks=[*ingest_checks, *feature_checks],
    jobs=[nightly_job, ingest_job, online_push_job, training_job, data_job, model_job],
    schedules=[nightly_schedule],
    # in-process: see pipelines.jobs (a day is a chain of steps; ~50 ms a step, not ~1.7 s)
    executor=dg.in_process_executor,
    sensors=[online_push_sensor, late_data_sensor, retrain_on_drift_sensor, *webhook_sensors],
    # every resource on one home: CLIPFLOW_HOME, resolved when a run starts
    resources=clipflow_resources(),
)
