"""Jobs and schedules. `daily_job` is the whole graph for one day: what the nightly
schedule runs and what `clipflow run` runs for each day of a backfill."""

import dagster as dg

from assets.constants import DAILY_PARTITIONS, INGEST

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.all(),
    partitions_def=DAILY_PARTITIONS,
    description="Everything for one day: ingest, features, training policy, scoring, "
    "experiments, monitoring.",
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups(INGEST),
    partitions_def=DAILY_PARTITIONS,
    description="Landing files of one day into the warehouse, with quarantine.",
)

# Each night at 02:00 UTC, yesterday's partition (the last complete day).
nightly_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, hour_of_day=2, minute_of_hour=0, name="nightly_schedule"
)
