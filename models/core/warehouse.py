"""The clipflow warehouse: the one seam through which assets read and write tables.

Storage: Parquet datasets under `<home>/warehouse/<table>/` (docs/contract.md §2), or
Iceberg tables on S3 (models/core/iceberg.py, a subclass). Assets only call `read` (one
partition, as Arrow), `write` (Arrow rows, one partition, atomically), `has`, `partitions`
and `location`; the library's SQL reads whole tables through `scan` and writes query results
through `write_partition`/`write_file`. Nothing else builds a table path or a `read_parquet`
string, so a second engine plugs in here.

Daily tables are Hive-partitioned (`ds=YYYY-MM-DD/part-0.parquet`), and every file also holds
`ds` as a column. Reads use the Hive layout (DuckDB skips the files of other days by their
path) unless the home's own path holds a `=`: DuckDB would read `/data/env=prod` as a
partition column `env`, so such a home is read with `hive_partitioning = false` (`ds` then
comes from the files, a little slower for a filter on days). A path pasted into SQL is
quoted (`sql_str`) and glob-escaped (`glob_literal`: a `*`, `?` or `[` in the home is a
character of the name, never a pattern that could reach another folder), so any home works.
A partition is written to a scratch folder first and then renamed into place, so readers
never see half a partition and re-running a day replaces it (never appends). Rows are
written in one order (the writer's key columns, then a hash of the whole row), so the same
rows give the same file, byte for byte, whatever DuckDB's threads did; a write the file
system refuses (a full disk) fails naming the table and partition, leaves the partition in
place as it was and removes its scratch folder. Timestamps are written as microseconds
(TIMESTAMPTZ), which Feast's DuckDB offline store can read.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from glob import escape as glob_escape
from pathlib import Path

import duckdb
import pyarrow as pa

# DuckDB's memory_limit syntax; a launchpad value is checked before it reaches SQL
MEMORY_LIMIT = re.compile(r"\d+(\.\d+)? ?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")  # fullmatch
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")  # a partition key: YYYY-MM-DD, nothing else


def connect(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up the way every clipflow query expects (UTC, bounded)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # no terminal bars in run logs
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {sql_str(check_memory_limit(memory_limit))}")
    return con


def check_memory_limit(value: str) -> str:
    """`value` if it is a DuckDB memory size such as `4GB` or `512 MiB`, else ValueError."""
    if not isinstance(value, str) or not MEMORY_LIMIT.fullmatch(value.strip()):
        raise ValueError(f"memory_limit {value!r}: expected a size such as 4GB or 512MiB")
    return value.strip()


def ident(name: str) -> str:
    """`name` if it is a plain SQL identifier (a table or column name), else ValueError."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a valid table or column name")
    return name


def sql_str(value: str | os.PathLike) -> str:
    """A DuckDB string literal of `value`: a quote doubled is DuckDB's only escape (a
    backslash is an ordinary character; a NUL stays inside the literal)."""
    return "'" + str(value).replace("'", "''") + "'"


def glob_literal(path: str | os.PathLike, pattern: str = "") -> str:
    """A DuckDB file pattern matching `path` itself (its `*`, `?`, `[` escaped as `[*]`,
    `[?]`, `[[]`, which DuckDB's glob reads as the character), then `/pattern` if given."""
    literal = glob_escape(str(path))
    return f"{literal}/{pattern}" if pattern else literal


class PartitionWriteError(OSError):
    """Writing a partition failed in the file system (a full disk, most often); the message
    names the table and partition, and says that the partition in place is unchanged."""

    def __init__(self, table: str, ds: str, root: Path, cause: BaseException):
        text = str(cause).strip().splitlines()
        why = text[0] if text else type(cause).__name__
        code = getattr(cause, "errno", None)
        if code is None and "No space left on device" in why:
            code = errno.ENOSPC  # DuckDB's IOException carries only the text
        head, tail = why, ""
        if code == errno.ENOSPC:  # first, so that a summary cut at 300 characters keeps it
            head = "no space left on device (the disk is full: free space, then run the day again)"
            tail = f" ({why})"
        super().__init__(
            code,
            f"could not write partition ds={ds} of table {table}: {head}; the partition in "
            f"place, if any, is unchanged (warehouse {root}){tail}",
        )
        self.table, self.ds = table, ds

    def __str__(self) -> str:
        return self.strerror


class Warehouse:
    """Reads and writes the warehouse tables of one clipflow home."""

    def feast_offline(self, tables: Sequence[str]) -> int:
        """Make `tables` readable by Feast's file sources (feature_repo/data_sources.py):
        they glob these very files, so nothing to do (0 files copied)."""
        return 0

    def __init__(
        self,
        home: str | os.PathLike,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
    ):
        self.home = Path(home)
        self.root = self.home / "warehouse"
        self.threads = threads
        self.hive = "false" if "=" in str(self.root) else "true"  # see the module docstring
        self.memory_limit = check_memory_limit(memory_limit) if memory_limit else None
        self._con: duckdb.DuckDBPyConnection | None = None

    def connect(self, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with this warehouse's limits (`memory_limit` overrides)."""
        return connect(self.threads, memory_limit or self.memory_limit)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection `read` and `write` use (made on first use)."""
        if self._con is None:
            self._con = self.connect()
        return self._con

    # -- paths -------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / ident(table)

    def partition_dir(self, table: str, ds: str | date) -> Path:
        return self.table_dir(table) / f"ds={_ds(ds)}"

    def glob(self, table: str) -> str:
        """The DuckDB file pattern of every file of `table` (the home glob-escaped)."""
        return glob_literal(self.table_dir(table), "**/*.parquet")

    def exists(self, table: str) -> bool:
        d = self.table_dir(table)
        return d.is_dir() and any(d.rglob("*.parquet"))

    def partitions(self, table: str) -> list[str]:
        d = self.table_dir(table)
        if not d.is_dir():
            return []
        return sorted(p.name[3:] for p in d.iterdir() if p.name.startswith("ds=") and p.is_dir())

    def files(self, table: str, ds: str | date) -> list[str]:
        """The data files of partition `ds` of `table`, as DuckDB's `read_parquet` takes them."""
        part = self.partition_dir(table, ds)
        return sorted(str(p) for p in part.glob("*.parquet")) if part.is_dir() else []

    def version(self, table: str, ds: str | date) -> int | None:
        """When partition `ds` of `table` was last written (ns: its newest file's time);
        None when it has no file. Comparable across tables of one warehouse."""
        return max((os.stat(f).st_mtime_ns for f in self.files(table, ds)), default=None)

    def scan(self, table: str, columns: str = "*") -> str:
        """A SQL table expression over the whole dataset (every partition, `ds` included)."""
        return (
            f"(SELECT {columns} FROM read_parquet({sql_str(self.glob(table))}, "
            f"hive_partitioning = {self.hive}, union_by_name = true))"
        )

    def has(self, table: str, ds: str | date) -> bool:
        """Whether partition `ds` of `table` holds a file."""
        part = self.partition_dir(table, ds)
        return part.is_dir() and any(part.glob("*.parquet"))

    def location(self, table: str, ds: str | date | None = None) -> str:
        """Where a table (or one partition) lives, for a person: shown in the UI."""
        return str(self.partition_dir(table, ds) if ds is not None else self.table_dir(table))

    def partition_scan(self, table: str, ds: str | date, *, with_ds: bool = False) -> str:
        """A SQL table expression over one partition's files (without `ds` unless asked)."""
        files = sql_str(glob_literal(self.partition_dir(table, ds), "*.parquet"))
        cols = "*" if with_ds else "* EXCLUDE (ds)"
        return (
            f"(SELECT {cols} FROM read_parquet({files}, "
            f"hive_partitioning = {self.hive}, union_by_name = true))"
        )

    def kv_metadata(self, table: str, ds: str | date) -> dict[str, str]:
        """The key-value metadata of partition `ds`'s files (see `write_partition`)."""
        files = sql_str(glob_literal(self.partition_dir(table, ds), "*.parquet"))
        rows = self.con.execute(
            f"SELECT decode(key), decode(value) FROM parquet_kv_metadata({files})"
        ).fetchall()
        return {k: v for k, v in rows if not k.startswith(("ARROW:", "duckdb"))}

    def read(
        self,
        table: str,
        ds: str | date,
        *,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        params: Sequence | None = None,
        limit: int | None = None,
        with_ds: bool = False,
    ) -> pa.Table:
        """Rows of partition `ds` of `table` as Arrow (`ds` only if asked); an absent partition
        gives FileNotFoundError. `where` is SQL written by clipflow's code with `?`
        placeholders; every value goes in `params`, bound, never pasted."""
        if not self.has(table, ds):
            raise FileNotFoundError(f"no partition ds={_ds(ds)} of table {table}")
        cols = ", ".join(ident(c) for c in columns) if columns else "*"
        sql = f"SELECT {cols} FROM {self.partition_scan(table, ds, with_ds=with_ds)}"
        if where:
            sql += f" WHERE {where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.con.sql(sql, params=list(params or [])).to_arrow_table()

    def write(
        self,
        table: str,
        ds: str | date,
        rows: pa.Table,
        *,
        name: str | None = None,
        keys: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Replace partition `ds` of `table` with the Arrow `rows` (atomically); row count.
        With `name`, replace only that writer's file of the partition (see `write_file`);
        `keys` sets the rows' order in the file (see `_sorted`), `metadata` its key-value
        metadata (whole partitions only)."""
        view = f"_rows_{uuid.uuid4().hex}"
        self.con.register(view, rows)
        try:
            query = f"SELECT * FROM {view}"
            if name is not None:
                return self.write_file(self.con, table, ds, name, query, keys=keys)
            return self.write_partition(self.con, table, ds, query, keys=keys, metadata=metadata)
        finally:
            self.con.unregister(view)

    # -- writes ------------------------------------------------------------------------
    @contextmanager
    def _writing(self, table: str, ds: str | date) -> Iterator[Path]:
        """A scratch folder for one write of partition `ds` of `table`, removed afterwards.
        A write the disk refuses (full, read-only, gone) fails with a PartitionWriteError
        naming the table and partition; the partition in place is left as it was."""
        scratch = self.root / "_tmp" / uuid.uuid4().hex
        try:
            scratch.mkdir(parents=True)
            yield scratch
        except (OSError, duckdb.IOException) as e:
            raise PartitionWriteError(table, _ds(ds), self.root, e) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def write_partition(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        ds: str | date,
        query: str,
        *,
        filename: str = "part-0.parquet",
        keys: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Replace partition `ds` of `table` with the rows of `query`; returns the row count.

        `query` is a SELECT; the file holds its columns plus `ds` (DATE), sorted by `keys`
        (then by a hash of the row: see `_sorted`), and `metadata` as the Parquet file's
        key-value metadata (`kv_metadata` reads it back). Written to a scratch folder, then
        swapped in with renames (atomic for readers of the folder).
        """
        with self._writing(table, ds) as scratch:
            n = copy_sorted(con, query, ds, scratch / filename, keys=keys, metadata=metadata)
            self._swap_in(scratch, self.partition_dir(table, ds))
        return n

    def write_file(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        ds: str | date,
        name: str,
        query: str,
        *,
        keys: Sequence[str] = (),
    ) -> int:
        """Replace one named file inside partition `ds` (tables shared by several writers,
        such as `quarantine`, keep one file per writer); an empty result removes it."""
        target_dir = self.partition_dir(table, ds)
        target = target_dir / f"{ident(name)}.parquet"
        with self._writing(table, ds) as scratch:
            out = scratch / target.name
            n = copy_sorted(con, query, ds, out, keys=keys)
            target_dir.mkdir(parents=True, exist_ok=True)
            if n:
                os.replace(out, target)
            elif target.exists():
                target.unlink()
        return n

    def _swap_in(self, scratch: Path, target: Path) -> None:
        """Rename `scratch` into place. The old partition goes aside first, with a marker
        naming it, so the next writer can finish a swap a crash interrupted
        (models/core/writer_lock.recover)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        trash = marker = None
        if target.exists():
            trash = self.root / "_tmp" / f"old-{uuid.uuid4().hex}"
            marker = trash.with_name(trash.name + ".target")
            try:
                marker.write_text(str(target))
            except OSError:
                marker.unlink(missing_ok=True)  # nothing moved yet
                raise
            os.replace(target, trash)
        try:
            os.replace(scratch, target)
        except OSError:
            if trash is not None:  # put the old partition back at once
                os.replace(trash, target)
                marker.unlink(missing_ok=True)
            raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
            marker.unlink(missing_ok=True)


def copy_sorted(
    con: duckdb.DuckDBPyConnection,
    query: str,
    ds: str | date,
    out: Path,
    *,
    keys: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write the rows of `query` plus `ds` to the Parquet file `out` in one order (see
    `_sorted`), `metadata` as its key-value metadata; returns the row count."""
    kv = ", ".join(f"{ident(k)}: {sql_str(v)}" for k, v in (metadata or {}).items())
    con.execute(
        f"COPY ({_sorted(query, ds, keys)}) TO {sql_str(out)} "
        f"(FORMAT parquet, ROW_GROUP_SIZE 122880{f', KV_METADATA {{{kv}}}' if kv else ''})"
    )
    return _count(con, out)


def _sorted(query: str, ds: str | date, keys: Sequence[str] = ()) -> str:
    """`query`'s rows plus `ds`, in one order that depends on the rows alone: DuckDB
    (`preserve_insertion_order = false`, several threads) returns them in any order, and a
    file must be the same bytes whenever the same rows are written (a re-run after a crash
    ends in the warehouse an uninterrupted run writes).

    With `keys` (a table's key columns; files sorted by key also let readers skip row
    groups by their min/max) the order is the keys, then DuckDB's 64-bit hash of the whole
    row: at about half the memory and CPU of sorting on every column (wide sort keys), for
    the large tables. Rows with equal keys must then differ only in values that are the
    same on every run (a wall-time column belongs in the keys' rows, never in a tie: its
    hash would change the order). Two different rows with equal keys and equal hashes
    (about n²/2⁶⁵ for n such rows) could come out in either order, a different file of the
    same rows. Without keys, `ORDER BY ALL` (every column, left to right)."""
    order = ", ".join([*(ident(k) for k in keys), "hash(*COLUMNS(*))"]) if keys else "ALL"
    inner = f"SELECT *, DATE {sql_str(_ds(ds))} AS ds FROM ({query})"
    return f"SELECT * FROM ({inner}) ORDER BY {order}"


def _count(con: duckdb.DuckDBPyConnection, file: Path) -> int:
    sql = f"SELECT count(*) FROM read_parquet({sql_str(glob_literal(file))})"
    return int(con.execute(sql).fetchall()[0][0])


def _ds(ds: str | date) -> str:
    """`ds` as YYYY-MM-DD if it is a real day in that form, else ValueError (Python's
    `fromisoformat` alone would also take `20261101` or `2026-W44-7`)."""
    s = ds.isoformat() if isinstance(ds, date) else str(ds)
    if not _DAY.fullmatch(s):
        raise ValueError(f"partition {s!r}: expected a day as YYYY-MM-DD")
    date.fromisoformat(s)  # a real day: 2026-13-01 is refused
    return s
