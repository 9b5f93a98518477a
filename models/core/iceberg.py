"""The warehouse as Apache Iceberg tables on S3-compatible storage (#21): the second backend
behind the table seam (models/core/warehouse.py), chosen by `CLIPFLOW_WAREHOUSE=s3://...`.

- Catalog: `CLIPFLOW_ICEBERG_CATALOG`, pyiceberg's SQL catalog on a database (PostgreSQL in
  production) or an Iceberg REST catalog (models/core/iceberg_catalog.py), namespace
  `clipflow`, one table per contract table, identity-partitioned by `ds`.
- Writes: DuckDB writes the day's file as the local backend does (`copy_sorted`: the same
  bytes), it is uploaded (`data/ds=<day>/<ns stamp>-<uuid>-<name>.parquet`) and ONE
  overwrite snapshot drops the day's previous files (or the named writer's: `write_file`)
  and adds it: the catalog's atomic swap, so a reader, or a writer killed at any moment,
  sees the previous snapshot or the next. Writers of different days commit at once; a
  conflict is retried by pyiceberg, then re-planned here (`COMMIT_TRIES`). A file uploaded
  by a writer that died before its commit is an orphan no snapshot names (Iceberg's
  orphan-file removal clears it).
- Reads: the current snapshot's files (listed from its manifests), read by DuckDB through
  Arrow's S3 file system registered on each connection (models/core/object_store.py;
  DuckDB cannot install httpfs offline): every SQL of the library runs unchanged.
- Credentials from the environment when the warehouse connects (`AWS_ACCESS_KEY_ID`,
  `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, endpoint `AWS_ENDPOINT_URL_S3`, region
  `AWS_REGION`, default us-east-1); never logged or in run config. S3 calls: `TIMEOUT_S`.
- `version` (for the creator state's freshness check) is the writer's clock in ns, in the
  file's name: one clock per warehouse, like the local files' mtimes.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from datetime import date
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from models.core.object_store import FileCache, download, duckdb_filesystem
from models.core.settings import catalog_from_env, endpoint_from_env, iceberg_cache_bytes
from models.core.warehouse import Warehouse, _ds, copy_sorted, ident, sql_str

NAMESPACE = "clipflow"
TIMEOUT_S = 10  # connect and request timeout of every S3 call
COMMIT_TRIES = 8  # after pyiceberg's own retries of a conflicting commit
_EPOCH = date(1970, 1, 1).toordinal()
_STAMP = re.compile(r"/(\d{19})-[0-9a-f]{32}-[A-Za-z0-9_.\-]+\.parquet$")


FEAST_MIRROR = "feast_offline"  # under the home: what Feast's file sources read on Iceberg


def mirror_dir(home: str | os.PathLike, table: str) -> Path:
    """Where Feast's file source of `table` reads the Iceberg table's mirror."""
    return Path(home) / FEAST_MIRROR / ident(table)


def warehouse_for(s, *, threads: int | None = None, memory_limit: str | None = None) -> Warehouse:
    """The warehouse the settings `s` name: Iceberg at `s.warehouse_uri` when set
    (`CLIPFLOW_WAREHOUSE`), else the local Parquet layout under `s.home`."""
    if s.warehouse_uri:
        return IcebergWarehouse(s.home, s.warehouse_uri, threads=threads, memory_limit=memory_limit)
    return Warehouse(s.home, threads=threads, memory_limit=memory_limit)


class IcebergWarehouse(Warehouse):
    """The warehouse tables as Iceberg tables at `location` (`s3://bucket[/prefix]`)."""

    def __init__(
        self,
        home: str | os.PathLike,
        location: str,
        *,
        catalog_uri: str | None = None,
        threads: int | None = None,
        memory_limit: str | None = None,
    ):
        super().__init__(home, threads=threads, memory_limit=memory_limit)
        self.uri = location.rstrip("/")
        self._catalog_uri = catalog_uri  # None: CLIPFLOW_ICEBERG_CATALOG, read when used
        self._listed: dict[tuple, list] = {}  # (metadata file, day): that snapshot's files

    def feast_offline(self, tables) -> int:
        """Feast's DuckDB offline store cannot read S3 here (no httpfs offline) and Feast's
        `IcebergSource` needs its Spark store: its file sources read a local mirror of each
        table's current snapshot, `<home>/FEAST_MIRROR/<table>/ds=<day>/<file>`, brought in
        step here. Data files never change (a rewrite is a new file), so only the files the
        mirror lacks are downloaded, and files no longer in the snapshot are removed.
        Returns the files downloaded."""
        copied = 0
        for table in tables:
            root = mirror_dir(self.home, table)
            tbl = self._table(table)
            want = {
                f"ds={date.fromordinal(_EPOCH + f.partition[0])}/{f.file_path.rsplit('/', 1)[1]}":
                f.file_path for f in (self._data_files(tbl) if tbl is not None else [])
            }  # fmt: skip
            have = {p.relative_to(root).as_posix(): p for p in root.glob("ds=*/*.parquet")}
            for rel in have.keys() - want.keys():
                have[rel].unlink()
            for rel in sorted(want.keys() - have.keys()):
                download(self.fs, want[rel], root / rel)
                copied += 1
        return copied

    # -- engines -----------------------------------------------------------------------
    def _s3_props(self) -> dict[str, str]:
        env = os.environ
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        props = {
            "s3.region": region,
            "s3.connect-timeout": str(TIMEOUT_S),
            "s3.request-timeout": str(TIMEOUT_S),
        }
        if endpoint := endpoint_from_env():
            props["s3.endpoint"] = endpoint
        keys = {"s3.access-key-id": "AWS_ACCESS_KEY_ID", "s3.session-token": "AWS_SESSION_TOKEN",
                "s3.secret-access-key": "AWS_SECRET_ACCESS_KEY"}  # fmt: skip
        return props | {key: env[name] for key, name in keys.items() if env.get(name)}

    @cached_property
    def catalog(self):
        """The SQL or REST catalog (models/core/iceberg_catalog.py); tables are created on
        their first write."""
        from models.core.iceberg_catalog import open_catalog

        props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO", **self._s3_props()}
        return open_catalog(NAMESPACE, self._catalog_uri or catalog_from_env(), self.uri, props)

    @cached_property
    def fs(self):
        """Arrow's S3 file system with this warehouse's credentials and timeouts."""
        p = self._s3_props()
        kwargs = {"region": p["s3.region"], "connect_timeout": TIMEOUT_S,
                  "request_timeout": TIMEOUT_S}  # fmt: skip
        if "s3.endpoint" in p:
            parts = urlsplit(p["s3.endpoint"])
            kwargs |= {"endpoint_override": parts.netloc, "scheme": parts.scheme}
        if "s3.access-key-id" in p:
            kwargs |= {"access_key": p["s3.access-key-id"],
                       "secret_key": p.get("s3.secret-access-key", ""),
                       "session_token": p.get("s3.session-token")}  # fmt: skip
        return pafs.S3FileSystem(**kwargs)

    @cached_property
    def cache(self) -> FileCache:
        """Local copies of the data files read or written (`CLIPFLOW_ICEBERG_CACHE_GB`)."""
        return FileCache(self.root / "_cache", self.fs, iceberg_cache_bytes())

    def connect(self, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
        con = super().connect(memory_limit)
        con.register_filesystem(duckdb_filesystem(self.fs))
        return con

    # -- tables ------------------------------------------------------------------------
    def _table(self, table: str):
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table((NAMESPACE, ident(table)))
        except NoSuchTableError:
            return None

    def _data_files(self, tbl, ds: str | date | None = None) -> list:
        """The live data files of the current snapshot (of day `ds` only, if given), read from
        its manifests: a scan plan would leave out a day's empty file (no rows can match),
        and an empty day is a written day. Manifests whose `ds` range excludes the day are
        skipped unread."""
        from pyiceberg.conversions import from_bytes
        from pyiceberg.manifest import ManifestContent
        from pyiceberg.types import DateType

        day = None if ds is None else _day(ds)
        key = (tbl.metadata_location, day)  # a commit writes a new metadata file
        if key in self._listed:
            return self._listed[key]
        snapshot = tbl.current_snapshot()
        if snapshot is None:
            return []
        out = []
        for manifest in snapshot.manifests(tbl.io):
            if manifest.content != ManifestContent.DATA:
                continue
            bounds = manifest.partitions[0] if manifest.partitions else None
            if day is not None and bounds is not None and bounds.lower_bound is not None:
                lo = from_bytes(DateType(), bounds.lower_bound)
                hi = from_bytes(DateType(), bounds.upper_bound)
                if not lo <= day <= hi:
                    continue
            for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
                if day is None or entry.data_file.partition[0] == day:
                    out.append(entry.data_file)
        if len(self._listed) > 1024:
            self._listed.clear()
        self._listed[key] = out
        return out

    def _all_files(self, table: str) -> list[str]:
        tbl = self._table(table)
        return sorted(f.file_path for f in self._data_files(tbl)) if tbl is not None else []

    def files(self, table: str, ds: str | date) -> list[str]:
        tbl = self._table(table)
        return sorted(f.file_path for f in self._data_files(tbl, ds)) if tbl is not None else []

    def version(self, table: str, ds: str | date) -> int | None:
        stamps = [int(m.group(1)) for f in self.files(table, ds) if (m := _STAMP.search(f))]
        return max(stamps, default=None)

    def exists(self, table: str) -> bool:
        return bool(self._all_files(table))

    def partitions(self, table: str) -> list[str]:
        tbl = self._table(table)
        if tbl is None:
            return []
        days = {f.partition[0] for f in self._data_files(tbl)}  # days since 1970-01-01
        return sorted(date.fromordinal(_EPOCH + d).isoformat() for d in days)

    def has(self, table: str, ds: str | date) -> bool:
        return bool(self.files(table, ds))

    def location(self, table: str, ds: str | date | None = None) -> str:
        where = f"{self.uri}/{NAMESPACE}/{ident(table)} (Iceberg {NAMESPACE}.{table})"
        return where if ds is None else f"{where} ds={_ds(ds)}"

    def glob(self, table: str) -> str:
        raise NotImplementedError(f"Iceberg table {table} has no file pattern: use scan()")

    def _local(self, files: list[str]) -> list[str]:
        return [self.cache.local(f) for f in files] if self.cache.budget else files

    def scan(self, table: str, columns: str = "*") -> str:
        return _read(self._local(self._all_files(table)), columns, table)

    def partition_scan(self, table: str, ds: str | date, *, with_ds: bool = False) -> str:
        cols = "*" if with_ds else "* EXCLUDE (ds)"
        return _read(self._local(self.files(table, ds)), cols, table, ds)

    def kv_metadata(self, table: str, ds: str | date) -> dict[str, str]:
        files = _file_list(self._local(self.files(table, ds)), table, ds)
        rows = (
            self.connect()
            .execute(f"SELECT decode(key), decode(value) FROM parquet_kv_metadata({files})")
            .fetchall()
        )
        return {k: v for k, v in rows if not k.startswith(("ARROW:", "duckdb"))}

    # -- writes ------------------------------------------------------------------------
    def write_partition(self, con, table, ds, query, *, filename="part-0.parquet", keys=(),
                        metadata=None) -> int:  # fmt: skip
        with self._writing(table, ds) as scratch:
            out = scratch / filename
            n = copy_sorted(con, _typed(con, query), ds, out, keys=keys, metadata=metadata)
            self._commit(table, ds, out, drop=lambda path: True)
        return n

    def write_file(self, con, table, ds, name, query, *, keys=()) -> int:
        suffix = f"-{ident(name)}.parquet"
        with self._writing(table, ds) as scratch:
            out = scratch / f"{name}.parquet"
            n = copy_sorted(con, _typed(con, query), ds, out, keys=keys)
            self._commit(table, ds, out if n else None, drop=lambda p: p.endswith(suffix))
        return n

    def _commit(self, table: str, ds: str | date, local: Path | None, drop) -> None:
        """Upload `local` (if any) and commit one snapshot: partition `ds`'s files that
        `drop(path)` picks go, the upload comes in."""
        from pyiceberg.exceptions import CommitFailedException, ValidationException
        from pyiceberg.io.pyarrow import parquet_file_to_data_file
        from pyiceberg.typedef import Record

        schema = pq.read_schema(local) if local is not None else None
        tbl = self._table(table) or (self._create(table, schema) if schema is not None else None)
        if tbl is None:
            return  # nothing to remove from a table that does not exist, nothing to add
        path = None
        if local is not None:
            name = f"{time.time_ns():019d}-{uuid.uuid4().hex}-{local.name}"
            path = f"{tbl.location()}/data/ds={_ds(ds)}/{name}"
            pafs.copy_files(str(local), path.removeprefix("s3://"), destination_filesystem=self.fs)
            if self.cache.budget:
                self.cache.put(path, local)
        for attempt in range(COMMIT_TRIES):
            old = [f for f in self._data_files(tbl, ds) if drop(f.file_path)]
            if path is None and not old:
                return  # nothing to remove, nothing to add: no empty snapshot
            try:
                with tbl.transaction() as tx:
                    if schema is not None:
                        with tx.update_schema() as update:
                            update.union_by_name(_optional(schema))
                        if counts_only := _unbounded_columns(schema, tbl.properties):
                            tx.set_properties(counts_only)
                    with tx.update_snapshot().overwrite() as overwrite:
                        for f in old:
                            overwrite.delete_data_file(f)
                        if path is not None:
                            new = parquet_file_to_data_file(tbl.io, tx.table_metadata, path)
                            # pyiceberg takes the partition from the file's min/max of `ds`,
                            # which an empty day's file has not: the day is set here
                            new[3] = Record(_day(ds))  # DataFile field 3: its partition
                            overwrite.append_data_file(new)
                return
            except (CommitFailedException, ValidationException):
                # another writer committed first (pyiceberg's own retries of a concurrent
                # overwrite refuse it): re-plan the day's files from the new snapshot
                if attempt == COMMIT_TRIES - 1:
                    raise
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
                tbl = self._table(table)

    def _create(self, table: str, schema):
        """Create `table` from a file's Arrow schema, partitioned by `ds` (another writer may
        create it first: then that table is used)."""
        from pyiceberg.exceptions import TableAlreadyExistsError
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.transforms import IdentityTransform

        isch = self.catalog._convert_schema_if_needed(_optional(schema))
        spec = PartitionSpec(
            PartitionField(isch.find_field("ds").field_id, 1000, IdentityTransform(), "ds")
        )
        try:
            return self.catalog.create_table((NAMESPACE, ident(table)), isch, partition_spec=spec)
        except TableAlreadyExistsError:
            return self._table(table)


def _day(ds: str | date) -> int:
    """`ds` as Iceberg stores a date partition: days since 1970-01-01."""
    return date.fromisoformat(_ds(ds)).toordinal() - _EPOCH


def _typed(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """`query` with its columns of DuckDB's NULL type (a column of nulls from Arrow rows)
    cast to VARCHAR: Iceberg v2 has no null type."""
    nulls = [c for c, t, *_ in con.execute(f"DESCRIBE ({query})").fetchall() if t == '"NULL"']
    if not nulls:
        return query
    casts = ", ".join(f"CAST({ident(c)} AS VARCHAR) AS {ident(c)}" for c in nulls)
    return f"SELECT * REPLACE ({casts}) FROM ({query})"


def _optional(schema):
    """`schema` as an Iceberg table takes it: every field nullable (DuckDB marks a
    literal's column NOT NULL; a table's columns must accept any later file's)."""
    import pyarrow as pa

    fields = [
        f.with_type(f.type.storage_type) if isinstance(f.type, pa.BaseExtensionType)
        else f.with_type(pa.string()) if pa.types.is_null(f.type) else f
        for f in schema
    ]  # fmt: skip
    # an extension type (DuckDB's JSON: Arrow's arrow.json) is stored as its storage type; a
    # column of nulls only (Iceberg v2 has no null type) as a string
    return pa.schema([f.with_nullable(True) for f in fields], metadata=None)


def _unbounded_columns(schema, properties: dict) -> dict[str, str]:
    """Table properties keeping counts but no min/max of the columns whose bounds pyiceberg
    cannot encode (JSON, an extension type; UBIGINT, stored as a signed long; a column of
    nulls only), not yet set."""
    import pyarrow as pa

    keys = [f"write.metadata.metrics.column.{f.name}" for f in schema
            if isinstance(f.type, pa.BaseExtensionType) or f.type in (pa.uint64(), pa.null())]  # fmt: skip
    return {k: "counts" for k in keys if properties.get(k) != "counts"}


def _file_list(files: list[str], table: str, ds=None) -> str:
    if not files:
        where = f" partition ds={_ds(ds)} of" if ds is not None else ""
        raise FileNotFoundError(f"no data file in{where} Iceberg table {NAMESPACE}.{table}")
    return "[" + ", ".join(sql_str(f) for f in files) + "]"


def _read(files: list[str], columns: str, table: str, ds=None) -> str:
    files = _file_list(files, table, ds)  # `ds` from the files, never from a path
    return f"(SELECT {columns} FROM read_parquet({files}, union_by_name = true, hive_partitioning = false))"
