"""Feast data sources over the clipflow warehouse (docs/contract.md §2).

Feast objects are module-level by design, so their file paths are fixed when this module
is imported. `warehouse_glob` is the one place the Feast repo reads the environment: it
resolves `CLIPFLOW_HOME` (default `.clipflow`) through `models.core.settings.current()`.
`feature_repo.config.apply()` re-imports the repo when the home changed since import.

Paths are globs over the Hive partitions: Feast's DuckDB offline store reads a glob but
not a bare partitioned directory. The home's part is glob-escaped (a `*`, `?` or `[` in it
is a character), so the store reads this home's files and never a sibling's.
"""

from __future__ import annotations

from pathlib import Path

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

from feature_repo.entities import OWNER_TAGS
from models.core import settings
from models.core.iceberg import mirror_dir
from models.core.warehouse import glob_literal


def warehouse_glob(table: str, home: Path | None = None) -> str:
    """`<home>/warehouse/<table>/**/*.parquet`, absolute (`home` default: `CLIPFLOW_HOME`),
    the home glob-escaped. On an Iceberg warehouse (`CLIPFLOW_WAREHOUSE`), the table's local
    mirror that `IcebergWarehouse.feast_offline` keeps (Feast's DuckDB store cannot read S3)."""
    s = settings.current()
    home = home or s.home
    folder = mirror_dir(home, table) if s.warehouse_uri else home / "warehouse" / table
    return glob_literal(folder, "**/*.parquet")


clip_features_source = FileSource(
    name="clip_features_source",
    path=warehouse_glob("clip_features"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Warehouse table clip_features: one row per clip per scoring moment.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)

clip_features_push = PushSource(
    name="clip_features_push",
    batch_source=clip_features_source,
    description="Pushed by the online push sensor: the latest clip_features row per clip.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)

clip_scores_source = FileSource(
    name="clip_scores_source",
    path=warehouse_glob("clip_scores"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Warehouse table clip_scores: the model's score per clip per day.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)

clip_scores_push = PushSource(
    name="clip_scores_push",
    batch_source=clip_scores_source,
    description="Pushed after scoring: the newest score per clip.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)
