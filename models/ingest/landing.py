"""Landing files: discovery, a probe of each new file, and the manifest that remembers them.

Files are immutable once written (docs/contract.md §1), so each file is probed once: its schema
is checked against the contract and the range of days its rows fall on is recorded in an
append-only manifest under `warehouse/_manifest/<table>/`. A day's ingestion then reads
only the files that hold rows of that day. A file that cannot be read, or whose columns or
types break the contract, is recorded as `unreadable` with the reason; it is quarantined as
a file in the partition of its `home_ds` (the day being ingested when it was first seen).

Each ingestion of a day also records which files held rows of that day
(`_manifest/<table>/_days/<day>.json`: path, size, mtime of each). A file that now holds rows
of a recorded day but is not in its record landed late (or was replaced): `late_files`
finds those, probing only files the manifest does not know, so the late-data sensor can
re-run the day.

A file's name is data: it is quoted and glob-escaped where it reaches SQL, so a name such as
`x'; DROP TABLE y; --.csv` or `*.parquet` is read as that one file. Two kinds of file are
refused (recorded as unreadable, naming the file, while the other files go on): a name with
a control character (a newline would forge lines in logs), and a file whose real path lies
outside the landing directory (a link to `/etc/passwd` would copy it into the quarantine).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from models.core.contract import Field, Table
from models.core.warehouse import PartitionWriteError, Warehouse, glob_literal, sql_str

MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("source_file", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("min_ds", pa.date32()),
        ("max_ds", pa.date32()),
        ("home_ds", pa.date32()),
        ("probed_at", pa.timestamp("us", tz="UTC")),
    ]
)

INT_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}
_FLOAT_TYPES = {"FLOAT", "DOUBLE"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class LandingFile:
    path: str  # absolute
    source_file: str  # relative to the landing dir, as reported in quarantine
    size: int
    mtime_ns: int
    refused: str = ""  # why the file is not read (see the module docstring); empty: read it

    @property
    def kind(self) -> str:
        return "csv" if self.source_file.lower().endswith(".csv") else "parquet"


def list_files(landing_dir: str | os.PathLike, table: Table) -> list[LandingFile]:
    """Every `*.parquet` / `*.csv` file of a table, in any sub-folder, in name order; a file
    that must not be read carries the reason in `refused`."""
    root = Path(landing_dir)
    base = root / table.name
    if not base.is_dir():
        return []
    real_root = root.resolve()
    out = []
    for p in sorted(base.rglob("*")):
        if p.is_file() and p.suffix.lower() in (".parquet", ".csv") and not p.name.startswith("."):
            st, real, name = p.stat(), p.resolve(), p.relative_to(root).as_posix()
            refused = ""
            if _CONTROL.search(name):
                refused = f"file name {name!r} has a control character: not read"
            elif not real.is_relative_to(real_root):
                refused = "the file links outside the landing directory: not read"
            out.append(LandingFile(str(real), name, st.st_size, st.st_mtime_ns, refused))
    return out


def raw_scan(f: LandingFile) -> str:
    """The SQL table function that reads a landing file as it is (CSV as text); its path is
    quoted and glob-escaped, so it names that one file whatever characters it holds."""
    if f.refused:
        raise ValueError(f"landing file {f.source_file!r}: {f.refused}")
    path = sql_str(glob_literal(f.path))
    if f.kind == "csv":
        return (
            f"read_csv({path}, header = true, all_varchar = true, "
            "null_padding = true, auto_detect = true)"
        )
    return f"read_parquet({path})"


def type_ok(field: Field, duck_type: str) -> bool:
    """Whether a Parquet column of `duck_type` can hold the contract type of `field`."""
    t = duck_type.upper()
    if field.type == "string":
        return t == "VARCHAR"
    if field.type == "timestamp":
        return t.startswith("TIMESTAMP")
    if field.type == "float":
        return t in INT_TYPES or t in _FLOAT_TYPES or t.startswith("DECIMAL")
    if field.type == "int":
        return t in INT_TYPES or t in _FLOAT_TYPES or t.startswith("DECIMAL")
    if field.type == "bool":
        return t == "BOOLEAN"
    raise ValueError(field.type)


def schema_problem(con: duckdb.DuckDBPyConnection, table: Table, f: LandingFile) -> str | None:
    """None when the file's columns and types fit the contract, else why not."""
    cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {raw_scan(f)}").fetchall()}
    missing = [c for c in table.columns if c not in cols]
    if missing:
        return f"missing columns: {', '.join(missing)} (found: {', '.join(cols) or 'none'})"
    if f.kind == "csv":
        return None  # text: each value is cast and checked per row
    wrong = [
        f"{fl.name} is {cols[fl.name]}, expected {fl.type}"
        for fl in table.fields
        if not type_ok(fl, cols[fl.name])
    ]
    return ("wrong types: " + "; ".join(wrong)) if wrong else None


def probe(con: duckdb.DuckDBPyConnection, table: Table, f: LandingFile, first_seen: date) -> dict:
    """Check a new file once: its schema, and the days its rows fall on."""
    rec = {
        "path": f.path,
        "source_file": f.source_file,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "status": "ok",
        "error": None,
        "min_ds": None,
        "max_ds": None,
        "home_ds": first_seen,
        "probed_at": datetime.now().astimezone(),
    }
    if f.refused:
        return {**rec, "status": "unreadable", "error": f.refused}
    try:
        problem = schema_problem(con, table, f)
        if problem is None:
            ts = _ts_expr(f, table.field(table.partition_by), table.partition_by)
            lo, hi = con.execute(
                f"SELECT min({ts})::DATE, max({ts})::DATE FROM {raw_scan(f)}"
            ).fetchall()[0]
            rec["min_ds"], rec["max_ds"] = lo, hi
            rec["home_ds"] = lo or first_seen
    except duckdb.Error as e:
        problem = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    if problem is not None:
        rec["status"], rec["error"] = "unreadable", problem
    return rec


def _ts_expr(f: LandingFile, field: Field, col: str) -> str:
    c = '"' + col + '"'
    return f"TRY_CAST({c} AS TIMESTAMPTZ)" if f.kind == "csv" else f"{c}::TIMESTAMPTZ"


class Manifest:
    """Append-only record of probed landing files of one table."""

    def __init__(self, warehouse: Warehouse, table: Table):
        self.dir = warehouse.root / "_manifest" / table.warehouse
        self.table = table

    def load(self) -> dict[tuple[str, int, int], dict]:
        if not self.dir.is_dir() or not any(self.dir.glob("*.parquet")):
            return {}
        rows = pq.read_table(str(self.dir), schema=MANIFEST_SCHEMA).to_pylist()
        rows.sort(key=lambda r: r["probed_at"])
        return {(r["path"], r["size"], r["mtime_ns"]): r for r in rows}

    def refresh(self, con, landing_dir, first_seen: date) -> tuple[list[dict], list[dict]]:
        """Probe files not seen before, as the ingestion of day `first_seen` starts, and
        record which files hold rows of that day; returns (all current records, the new
        ones)."""
        known = self.load()
        current, new = [], []
        for f in list_files(landing_dir, self.table):
            rec = known.get((f.path, f.size, f.mtime_ns))
            if rec is None:
                rec = probe(con, self.table, f, first_seen)
                new.append(rec)
            current.append(rec)
        self.append(new, first_seen)
        return current, new

    def record_day(self, ds: date, records: list[dict]) -> None:
        """Remember the files (path, size, mtime) an ingestion of day `ds` read: called once
        its partition is written, so a day whose write failed is not recorded as read."""
        days = self.dir / "_days"
        keys = sorted([r["path"], r["size"], r["mtime_ns"]] for r in records if covers(r, ds))
        text = json.dumps({"ds": ds.isoformat(), "files": keys})
        self._write(ds, days, f"{ds.isoformat()}.json", lambda tmp: tmp.write_text(text))

    def _write(self, ds: date, folder: Path, name: str, write) -> None:
        """Write `name` in `folder` through a scratch file and a rename; a file system that
        refuses (a full disk) fails naming the table and day, and leaves no scratch file."""
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write(tmp)
            os.replace(tmp, folder / name)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise PartitionWriteError(self.table.warehouse, ds.isoformat(), folder, e) from e

    def recorded_days(self) -> dict[date, set[tuple[str, int, int]]]:
        """Each ingested day's recorded files (days ingested before records began: none)."""
        out = {}
        for p in sorted((self.dir / "_days").glob("*.json")):
            rec = json.loads(p.read_text())
            out[date.fromisoformat(rec["ds"])] = {tuple(k) for k in rec["files"]}
        return out

    def append(self, records: list[dict], ds: date) -> None:
        """Add records (for the ingestion of day `ds`); a later record of the same file
        supersedes an earlier one."""
        if not records:
            return
        now = datetime.now().astimezone()
        records = [{**r, "probed_at": max(now, r["probed_at"])} for r in records]
        table = pa.Table.from_pylist(records, schema=MANIFEST_SCHEMA)
        self._write(ds, self.dir, f"{uuid.uuid4().hex}.parquet",
                    lambda tmp: pq.write_table(table, tmp))  # fmt: skip


def landing_days(landing_dir: str | os.PathLike, tables) -> tuple[date, date] | None:
    """The first and last day (UTC) that any readable landing file has rows for."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    lo = hi = None
    for table in tables:
        for f in list_files(landing_dir, table):
            if f.refused:
                continue  # quarantined, by name, when its day is ingested
            ts = _ts_expr(f, table.field(table.partition_by), table.partition_by)
            try:
                a, b = con.execute(
                    f"SELECT min({ts})::DATE, max({ts})::DATE FROM {raw_scan(f)}"
                ).fetchall()[0]
            except duckdb.Error:
                continue  # unreadable: quarantined when its day is ingested
            if a is not None:
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
    return None if lo is None else (lo, hi)


def covers(rec: dict, ds: date) -> bool:
    """Whether a manifest record is of a readable file with rows on day `ds`."""
    lo, hi = rec["min_ds"], rec["max_ds"]
    return rec["status"] == "ok" and lo is not None and lo <= ds <= hi


@dataclass
class LateDay:
    """An ingested day that landing files its ingestion did not read hold rows of."""

    ds: date
    files: list[LandingFile] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # source_file -> rows on `ds`

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def late_files(warehouse: Warehouse, landing_dir, tables) -> list[LateDay]:
    """The ingested days (in date order) with rows in readable files that their last
    ingestion did not read. Files the manifest knows cost nothing; others are probed (in
    memory: the manifest is the ingestion's to write)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    late: dict[date, LateDay] = {}
    for table in tables:
        manifest = Manifest(warehouse, table)
        recorded = manifest.recorded_days()
        if not recorded:
            continue
        known, days = manifest.load(), sorted(recorded)
        unread = defaultdict(list)
        for f in list_files(landing_dir, table):
            key = (f.path, f.size, f.mtime_ns)
            rec = known.get(key) or probe(con, table, f, date.min)
            if rec["status"] != "ok" or rec["min_ds"] is None:
                continue
            lo, hi = bisect_left(days, rec["min_ds"]), bisect_right(days, rec["max_ds"])
            for ds in days[lo:hi]:
                if key not in recorded[ds]:
                    unread[ds].append(f)
        ts = table.partition_by
        for ds, files in unread.items():
            day = late.setdefault(ds, LateDay(ds))
            for f in files:
                expr = _ts_expr(f, table.field(ts), ts)
                (n,) = con.execute(
                    f"SELECT count(*) FROM {raw_scan(f)} WHERE ({expr})::DATE = ?", [ds]
                ).fetchone()
                day.files.append(f)
                day.rows[f.source_file] = day.rows.get(f.source_file, 0) + n
    return [late[ds] for ds in sorted(late)]
