"""Names shared by assets, jobs and selections: groups and the daily partitions."""

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
