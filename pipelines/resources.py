"""Dagster resources: every external system the assets touch, configured at launch."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb

from models.warehouse import Warehouse, connect
from pipelines import settings


class WarehouseResource(dg.ConfigurableResource):
    """The Parquet warehouse under `$CLIPFLOW_HOME/warehouse`, queried with DuckDB.

    `home` empty means `CLIPFLOW_HOME` (resolved when a run starts, not at import).
    """

    home: str = ""
    threads: int = 2
    memory_limit: str = "4GB"

    @property
    def home_path(self) -> Path:
        return Path(self.home).resolve() if self.home else settings.current().home

    def get(self) -> Warehouse:
        return Warehouse(self.home_path)

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect(threads=self.threads, memory_limit=self.memory_limit)


class LandingResource(dg.ConfigurableResource):
    """The landing directory of CONTRACT §1 (`CLIPFLOW_LANDING_DIR` when empty)."""

    landing_dir: str = ""

    @property
    def path(self) -> Path:
        return (
            Path(self.landing_dir).resolve() if self.landing_dir else settings.current().landing_dir
        )
