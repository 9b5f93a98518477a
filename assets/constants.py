"""Names shared by assets, jobs and selections: groups and the daily partitions."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

INGEST = "ingest"
FEATURES = "features"
TRAINING = "training"
SCORING = "scoring"
EXPERIMENTS = "experiments"
MONITORING = "monitoring"

# What each group is, in the order data flows (the README's architecture, the UI's graph).
GROUPS = {
    INGEST: "Landing files of a day into the warehouse, validated, bad rows quarantined; "
    "video metadata from the external API.",
    FEATURES: "Clip features as of each day's end, registered in Feast and materialized "
    "to the Redis online store.",
    TRAINING: "Point-in-time training sets; XGBoost trained, gated and registered in MLflow "
    "(champion/challenger).",
    SCORING: "Batch scores of the day's clips by champion and challenger; scores published online.",
    EXPERIMENTS: "A/B experiment results: SRM, CUPED, BH-corrected decisions; promotion on ship.",
    MONITORING: "Drift of features and predictions against the champion's reference, "
    "performance as labels arrive, alerts.",
}

# Who answers for each group (Dagster owners), shown on every asset in the UI.
OWNERS = {
    INGEST: ["team:data-platform"],
    FEATURES: ["team:data-platform"],
    TRAINING: ["team:ml"],
    SCORING: ["team:ml"],
    EXPERIMENTS: ["team:experimentation"],
    MONITORING: ["team:ml"],
}

# Days are UTC. The first partition is far enough back for any landing data we expect;
# the last one is yesterday (a day is processed once it is complete).
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")


def day_end(ds: str) -> datetime:
    """The last microsecond (UTC) of partition `ds`: the as-of moment of a day's outputs."""
    start = datetime.combine(date.fromisoformat(ds), datetime.min.time(), tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(microseconds=1)


# Which days may run at once (#21). A day's work is two lanes, each a Dagster concurrency
# pool of one run (the instance `clipflow` writes sets `concurrency.pools.granularity: run`
# and `default_limit: 1`): DATA_LANE (ingestion, video metadata, features: `data_job`) and
# MODEL_LANE (the Feast registry, training set, model, A/B, scores, drift, the online store:
# `model_job`; `feast apply` rewrites the registry file in place, so it runs in the lane
# that reads it). Within a lane, days must keep date order: ingestion deduplicates
# against the other days, features advance the creator state of the day before, and every
# model-lane step reads or moves the registry's aliases. `clipflow backfill` runs day D+1's
# data lane beside day D's model lane (pipelines/backfill.py); `nightly_job` holds both
# pools, so scheduled days, job backfills and the UI's backfills run one day at a time.
DATA_LANE = "clipflow_data"
MODEL_LANE = "clipflow_models"
