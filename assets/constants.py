"""Names shared by assets, jobs and selections: groups and the daily partitions."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

INGEST = "ingest"
FEATURES = "features"
TRAINING = "training"
SCORING = "scoring"
EXPERIMENTS = "experiments"
MONITORING = "monitoring"

# Days are UTC. The first partition is far enough back for any landing data we expect;
# the last one is yesterday (a day is processed once it is complete).
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")


def day_end(ds: str) -> datetime:
    """The last microsecond (UTC) of partition `ds`: the as-of moment of a day's outputs."""
    start = datetime.combine(date.fromisoformat(ds), datetime.min.time(), tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(microseconds=1)
