"""The clipflow warehouse: Parquet datasets under `<home>/warehouse/<table>/`.

Daily tables are Hive-partitioned (`ds=YYYY-MM-DD/part-0.parquet`) and read back with
`read_parquet('<dir>/**/*.parquet', hive_partitioning=true)`. A partition is written to a
scratch folder first and then renamed into place, so readers never see half a partition
and re-running a day replaces it (never appends). DuckDB is the query engine; timestamps
are written as microseconds (TIMESTAMPTZ), which Feast's DuckDB offline store can read.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import duckdb


def connect(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up the way every clipflow query expects (UTC, bounded)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def sql_str(value: str | os.PathLike) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class Warehouse:
    """Reads and writes the warehouse tables of one clipflow home."""

    def __init__(self, home: str | os.PathLike):
        self.home = Path(home)
        self.root = self.home / "warehouse"

    # -- paths -------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, table: str, ds: str | date) -> Path:
        return self.table_dir(table) / f"ds={_ds(ds)}"

    def glob(self, table: str) -> str:
        return str(self.table_dir(table) / "**" / "*.parquet")

    def exists(self, table: str) -> bool:
        d = self.table_dir(table)
        return d.is_dir() and any(d.rglob("*.parquet"))

    def partitions(self, table: str) -> list[str]:
        d = self.table_dir(table)
        if not d.is_dir():
            return []
        return sorted(p.name[3:] for p in d.iterdir() if p.name.startswith("ds=") and p.is_dir())

    def scan(self, table: str, columns: str = "*") -> str:
        """A SQL table expression over the whole dataset (hive partitions included)."""
        return (
            f"(SELECT {columns} FROM read_parquet({sql_str(self.glob(table))}, "
            "hive_partitioning = true, union_by_name = true))"
        )

    # -- writes ------------------------------------------------------------------------
    def _scratch(self) -> Path:
        p = self.root / "_tmp" / uuid.uuid4().hex
        p.mkdir(parents=True)
        return p

    def write_partition(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        ds: str | date,
        query: str,
        *,
        filename: str = "part-0.parquet",
    ) -> int:
        """Replace partition `ds` of `table` with the rows of `query`; returns the row count.

        `query` is a SELECT; the file holds its columns plus `ds` (DATE). Written to a
        scratch folder, then swapped in with renames (atomic for readers of the folder).
        """
        scratch = self._scratch()
        out = scratch / filename
        con.execute(
            f"COPY (SELECT *, DATE {sql_str(_ds(ds))} AS ds FROM ({query})) "
            f"TO {sql_str(out)} (FORMAT parquet, ROW_GROUP_SIZE 122880)"
        )
        n = con.execute(f"SELECT count(*) FROM read_parquet({sql_str(out)})").fetchall()[0][0]
        self._swap_in(scratch, self.partition_dir(table, ds))
        return int(n)

    def write_file(
        self, con: duckdb.DuckDBPyConnection, table: str, ds: str | date, name: str, query: str
    ) -> int:
        """Replace one named file inside partition `ds` (tables shared by several writers,
        such as `quarantine`, keep one file per writer); an empty result removes it."""
        target_dir = self.partition_dir(table, ds)
        target = target_dir / f"{name}.parquet"
        scratch = self._scratch()
        out = scratch / target.name
        con.execute(
            f"COPY (SELECT *, DATE {sql_str(_ds(ds))} AS ds FROM ({query})) "
            f"TO {sql_str(out)} (FORMAT parquet)"
        )
        n = con.execute(f"SELECT count(*) FROM read_parquet({sql_str(out)})").fetchall()[0][0]
        target_dir.mkdir(parents=True, exist_ok=True)
        if n:
            os.replace(out, target)
        elif target.exists():
            target.unlink()
        shutil.rmtree(scratch, ignore_errors=True)
        return int(n)

    def _swap_in(self, scratch: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if target.exists():
            trash = self.root / "_tmp" / f"old-{uuid.uuid4().hex}"
            os.replace(target, trash)
        os.replace(scratch, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def _ds(ds: str | date) -> str:
    s = ds.isoformat() if isinstance(ds, date) else str(ds)
    date.fromisoformat(s)  # validates
    return s
