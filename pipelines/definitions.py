"""The one `Definitions` of clipflow: assets, checks, jobs, schedules and resources."""

import dagster as dg

from assets.features import feature_assets, feature_checks
from assets.ingest import ingest_assets, ingest_checks
from pipelines.jobs import daily_job, ingest_job, nightly_schedule
from pipelines.resources import LandingResource, WarehouseResource

defs = dg.Definitions(
    assets=[*ingest_assets, *feature_assets],
    asset_checks=[*ingest_checks, *feature_checks],
    jobs=[daily_job, ingest_job],
    schedules=[nightly_schedule],
    resources={
        "warehouse": WarehouseResource(),
        "landing": LandingResource(),
    },
)
