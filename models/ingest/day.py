"""Row-level validation and quarantine of one day of one landing table, in DuckDB.

One pass reads the day's rows of every file that holds them (CSV values cast with
TRY_CAST, so a bad value is a bad row, not a bad file), evaluates every contract rule as
a vectorised SQL expression, and keeps the list of rules each row broke. Valid rows are
written to `warehouse/<table>/ds=<day>/`; the others go to `warehouse/quarantine/` with
their file, the rules they broke and the row as JSON. Unreadable files are quarantined as
files. Re-running a day replaces both, so the result never holds duplicates.

Duplicates of a unique key (`clip_id`): a row already in the warehouse (another day) wins;
among new rows, the earliest by the table's order (`created_at`), then by file name. The
"already in the warehouse" check joins every partition, but the partitions are sorted by
key, so DuckDB skips the row groups outside the day's key range (Parquet min/max statistics).

Foreign keys (`clip_id must exist in clips`): the clips of the last `KEY_LOOKBACK_DAYS` days
first, the older partitions only for the ids not found there (`keys.older_clips`).

Future timestamps (`contract.NotAfter`): a timestamp beyond the time of ingestion plus a
skew (`CLIPFLOW_FUTURE_SKEW_S`, default 300 s = 5 minutes) breaks the rule
`<column> must be <= ingestion time + 300 s (...)`. Such a row is quarantined in the
partition of its file's first day (as a row without a usable day is), because the day it
claims is not run before it comes. "Now" is wall-clock time, so a backfill of a past day
refuses the same rows a nightly run does. A row far from its file's other days but not in
the future is kept: a file may hold any days, and a row belongs to the day it is dated.
The online push (`valid_rows_sql`) applies the same bound, so such a row never goes online.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from models.core import settings
from models.core.contract import DEFAULT_FUTURE_SKEW, Field, NotAfter, Table
from models.core.warehouse import Warehouse, sql_str
from models.ingest.keys import KEY_LOOKBACK_DAYS, clips_join, needs_clips, older_clips
from models.ingest.landing import INT_TYPES, LandingFile, Manifest, raw_scan

QUARANTINE = "quarantine"


@dataclass
class IngestResult:
    table: str
    ds: str
    rows_valid: int = 0
    rows_quarantined: int = 0
    files_read: list[str] = field(default_factory=list)
    files_new: list[str] = field(default_factory=list)
    files_quarantined: dict[str, str] = field(default_factory=dict)  # source_file -> reason
    reasons: dict[str, int] = field(default_factory=dict)  # rule -> rows that broke it


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cast(f: LandingFile, fl: Field, stored: str | None = None) -> tuple[str, str | None]:
    """(typed expression, SQL for the type-error reason or None) of one column of one file.

    `stored` is the column's type in a Parquet file (integers need no wholeness check)."""
    c = _q(fl.name)
    if f.kind == "parquet":
        if fl.type == "timestamp":
            return f"{c}::TIMESTAMPTZ", None
        if fl.type == "int" and stored is not None and stored.upper() in INT_TYPES:
            return f"{c}::BIGINT", None
        if fl.type == "int":
            whole = f"({c} IS NULL OR {c}::DOUBLE = floor({c}::DOUBLE))"
            err = f"CASE WHEN NOT {whole} THEN '{fl.name} must be an integer' END"
            return f"CASE WHEN {whole} THEN {c}::BIGINT END", err
        return f"{c}::{fl.sql_type}", None
    # CSV: all text; an empty or unparseable value is NULL plus a reason
    if fl.type == "string":
        return c, None
    if fl.type == "int":
        d = f"TRY_CAST({c} AS DOUBLE)"
        typed = f"CASE WHEN {d} = floor({d}) THEN {d}::BIGINT END"
    else:
        typed = f"TRY_CAST({c} AS {fl.sql_type})"
    err = (
        f"CASE WHEN {c} IS NOT NULL AND trim({c}) <> '' AND ({typed}) IS NULL "
        f"THEN '{fl.name} is not a valid {fl.type}: ' || left({c}, 40) END"
    )
    return typed, err


def file_select(
    table: Table,
    f: LandingFile,
    home_ds: date | None,
    ds: date | None,
    types: dict | None = None,
    not_after: NotAfter | None = None,
) -> str:
    """Typed rows of one file that belong to day `ds` (every row when None), with their
    type errors and origin. Rows dated beyond `not_after` belong to the file's home day."""
    typed, errors = [], []
    for fl in table.fields:
        expr, err = _cast(f, fl, (types or {}).get(fl.name))
        typed.append(f"{expr} AS {_q(fl.name)}")
        if err:
            errors.append(err)
    raw_json = (
        f"to_json(struct_pack({', '.join(f'{_q(c)} := {_q(c)}' for c in table.columns)}))"
        if f.kind == "csv"
        else "NULL"
    )
    type_err = f"concat_ws('; ', {', '.join(errors)})" if errors else "''"
    pt = _q(table.partition_by)
    in_day = "TRUE" if ds is None else f"{pt}::DATE = DATE '{ds}'"
    future = "FALSE" if not_after is None else f"NOT ({not_after.sql(table.partition_by)})"
    if ds is not None and not_after is not None:
        in_day = f"({in_day} AND NOT coalesce({future}, FALSE))"
    if home_ds == ds:  # rows without a usable day, or dated in the future: the home day
        in_day = f"({in_day} OR {pt} IS NULL OR {future})"
    return f"""
        SELECT * FROM (
            SELECT {", ".join(typed)},
                   nullif({type_err}, '') AS _type_errors,
                   CASE WHEN nullif({type_err}, '') IS NOT NULL THEN {raw_json} END AS _raw,
                   {sql_str(f.source_file)} AS _source_file
            FROM {raw_scan(f)}
        ) WHERE {in_day}"""


def _field_rules(fl: Field, not_after: NotAfter | None) -> list:
    """The field's contract rules, and the future bound for a timestamp."""
    extra = [not_after] if not_after is not None and fl.type == "timestamp" else []
    return [*fl.rules, *extra]


def _valid_expr(table: Table, not_after: NotAfter | None = None) -> str:
    """True when a row breaks no rule (the cheap test; reasons are spelled out otherwise)."""
    parts = ["_type_errors IS NULL"]
    for fl in table.fields:
        c = _q(fl.name)
        if not fl.nullable:
            parts.append(f"{c} IS NOT NULL")
        parts += [f"({c} IS NULL OR ({rule.sql(fl.name)}))" for rule in _field_rules(fl, not_after)]
    parts += [f"coalesce({tr.sql}, TRUE)" for tr in table.table_rules]
    return " AND ".join(parts)


def _rule_reasons(table: Table, not_after: NotAfter | None = None) -> list[str]:
    out = []
    for fl in table.fields:
        c = _q(fl.name)
        if not fl.nullable:
            out.append(
                f"CASE WHEN {c} IS NULL AND coalesce(_type_errors, '') NOT LIKE "
                f"'%{fl.name} is not a valid%' THEN '{fl.name} is required' END"
            )
        for rule in _field_rules(fl, not_after):
            reason = rule.describe(fl.name).replace("'", "''")
            out.append(
                f"CASE WHEN {c} IS NOT NULL AND NOT ({rule.sql(fl.name)}) THEN '{reason}' END"
            )
    for tr in table.table_rules:
        reason = tr.name.replace("'", "''")
        out.append(f"CASE WHEN NOT coalesce({tr.sql}, TRUE) THEN '{reason}' END")
    return out


def ingest_day(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    table: Table,
    landing_dir: str | Path,
    ds: date,
    detected_at: datetime,
    future_skew: timedelta = DEFAULT_FUTURE_SKEW,
) -> IngestResult:
    """Validate and write day `ds` of `table`; returns what was written and rejected.
    Timestamps beyond `detected_at + future_skew` are quarantined (see the module doc)."""
    res = IngestResult(table.warehouse, ds.isoformat())
    not_after = NotAfter(detected_at, future_skew)
    records, new = Manifest(warehouse, table).refresh(con, landing_dir, ds)
    res.files_new = [r["source_file"] for r in new]
    bad_files = [r for r in records if r["status"] != "ok" and r["home_ds"] == ds]
    res.files_quarantined = {r["source_file"]: r["error"] for r in bad_files}
    todays = [
        r
        for r in records
        if r["status"] == "ok"
        and (r["home_ds"] == ds or (r["min_ds"] is not None and r["min_ds"] <= ds <= r["max_ds"]))
    ]
    res.files_read = [r["source_file"] for r in todays]

    cols = ", ".join(_q(c) for c in table.columns)
    try:
        _stage(con, warehouse, table, todays, ds, not_after)
    except duckdb.Error:
        # A file that passed its probe can still fail half-way (a torn CSV line): find it,
        # quarantine it as a file, and ingest the rest.
        culprits = _failing_files(con, table, todays, ds, not_after)
        if not culprits:
            raise
        manifest = Manifest(warehouse, table)
        manifest.append(
            [{**r, "status": "unreadable", "error": why, "home_ds": ds} for r, why in culprits],
            ds,
        )
        for r, why in culprits:
            todays.remove(r)
            bad_files.append({**r, "error": why})
            res.files_quarantined[r["source_file"]] = why
        res.files_read = [r["source_file"] for r in todays]
        _stage(con, warehouse, table, todays, ds, not_after)
    if table.unique:
        _mark_duplicates(con, warehouse, table, ds)

    # rows sorted by the table's key (clips by clip_id, engagement by clip and time, ...)
    keys = table.unique or (table.columns[0], table.partition_by)
    res.rows_valid = warehouse.write_partition(
        con, table.warehouse, ds, f"SELECT {cols} FROM _checked WHERE _reason IS NULL", keys=keys
    )
    Manifest(warehouse, table).record_day(ds, records)  # read: late files are measured from here
    row_json = f"coalesce(_raw, to_json(struct_pack({', '.join(f'{_q(c)} := {_q(c)}' for c in table.columns)})))"
    file_rows = (
        " UNION ALL ".join(
            f"SELECT {sql_str(r['source_file'])}, {sql_str('unreadable file: ' + r['error'])}, NULL"
            for r in bad_files
        )
        or "SELECT NULL, NULL, NULL WHERE FALSE"
    )
    res.rows_quarantined = warehouse.write_file(
        con,
        QUARANTINE,
        ds,
        table.warehouse,
        f"""
        SELECT {sql_str(table.warehouse)} AS table_name, source_file, reason, "row",
               TIMESTAMPTZ {sql_str(detected_at.isoformat())} AS detected_at
        FROM (
            SELECT _source_file AS source_file, _reason AS reason, {row_json} AS "row"
            FROM _checked WHERE _reason IS NOT NULL
            UNION ALL
            SELECT * FROM ({file_rows}) AS f(source_file, reason, "row")
        )
    """,
        keys=("source_file", "reason", "row"),  # detected_at (a wall time) never decides
    ) - len(bad_files)
    res.reasons = _reason_counts(con)
    con.execute("DROP TABLE IF EXISTS _checked")
    return res


def _selects(
    con, table: Table, records: list[dict], ds: date | None, not_after: NotAfter | None
) -> list[str]:
    out = []
    for r in records:
        f = LandingFile(r["path"], r["source_file"], r["size"], r["mtime_ns"])
        types = None
        if f.kind == "parquet":  # footer only: cheap
            types = dict(
                con.execute(
                    f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {raw_scan(f)})"
                ).fetchall()
            )
        out.append(file_select(table, f, r["home_ds"], ds, types, not_after))
    return out


def _stage(
    con, warehouse: Warehouse, table: Table, records: list[dict], ds: date, not_after: NotAfter
) -> None:
    """Build temp table `_checked`: the day's typed rows with `_reason` (NULL when valid)."""
    if records:
        staged = "\nUNION ALL BY NAME\n".join(_selects(con, table, records, ds, not_after))
    else:  # an empty day still writes an empty partition with the right schema
        typed = ", ".join(f"NULL::{fl.sql_type} AS {_q(fl.name)}" for fl in table.fields)
        staged = (
            f"SELECT {typed}, NULL::VARCHAR AS _type_errors, NULL::VARCHAR AS _raw, "
            "NULL::VARCHAR AS _source_file WHERE FALSE"
        )
    reasons = ", ".join(["_type_errors", *_rule_reasons(table, not_after)])
    # the reason strings are built only for rows that break something
    reason = (
        f"CASE WHEN {_valid_expr(table, not_after)} THEN NULL "
        f"ELSE nullif(concat_ws('; ', {reasons}), '') END"
    )
    cut = ds - timedelta(days=KEY_LOOKBACK_DAYS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _checked AS
        SELECT s.*, {"k.clip_created_at, " if needs_clips(table) else ""}{reason} AS _reason
        FROM ({staged}) s {clips_join(warehouse, table, f"ds >= DATE '{cut}'")}
    """)
    if needs_clips(table) and warehouse.exists("clips"):
        older_clips(con, warehouse, cut, reason)


def valid_rows_sql(
    con,
    warehouse: Warehouse,
    table: Table,
    files: list[LandingFile],
    not_after: NotAfter | None = None,
) -> str:
    """SQL for the typed rows of `files` (any day) that break no row rule: what the online
    push reads before the nightly ingestion has run. Duplicates are not resolved here.
    `not_after`: the future bound, by default now + `CLIPFLOW_FUTURE_SKEW_S`."""
    if not_after is None:
        not_after = NotAfter(datetime.now(UTC), settings.current().future_skew)
    records = [
        {
            "path": f.path,
            "source_file": f.source_file,
            "size": f.size,
            "mtime_ns": f.mtime_ns,
            "home_ds": None,
        }
        for f in files
    ]
    if not records:
        typed = ", ".join(f"NULL::{fl.sql_type} AS {_q(fl.name)}" for fl in table.fields)
        return f"SELECT {typed} WHERE FALSE"
    staged = "\nUNION ALL BY NAME\n".join(_selects(con, table, records, None, not_after))
    cols = ", ".join(f"s.{_q(c)}" for c in table.columns)
    return (
        f"SELECT {cols} FROM ({staged}) s {clips_join(warehouse, table)} "
        f"WHERE {_valid_expr(table, not_after)}"
    )


def _failing_files(
    con, table: Table, records: list[dict], ds: date, not_after: NotAfter
) -> list[tuple[dict, str]]:
    out = []
    for r, sql in zip(records, _selects(con, table, records, ds, not_after), strict=True):
        try:
            con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0]
        except duckdb.Error as e:
            out.append((r, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
    return out


def _mark_duplicates(con, warehouse: Warehouse, table: Table, ds: date) -> None:
    """Quarantine repeats of the unique key: the warehouse's row wins, then the earliest."""
    key = ", ".join(_q(c) for c in table.unique)
    keyname = ", ".join(table.unique)
    on = " AND ".join(f"w.{_q(c)} = _checked.{_q(c)}" for c in table.unique)
    if warehouse.exists(table.warehouse):
        other = warehouse.scan(table.warehouse, f"{key}, ds")
        con.execute(f"""
            UPDATE _checked SET _reason = 'duplicate {keyname}: already in the warehouse'
            FROM (SELECT DISTINCT {key} FROM {other} WHERE ds <> DATE '{ds}') w
            WHERE _checked._reason IS NULL AND {on}
        """)
    order = ", ".join(
        [*(_q(c) for c in table.order_by), "_source_file"] + [_q(c) for c in table.columns]
    )
    con.execute(f"""
        UPDATE _checked SET _reason = 'duplicate {keyname}: an earlier row wins'
        WHERE rowid IN (
            SELECT rid FROM (
                SELECT rowid AS rid, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS n
                FROM _checked
                WHERE _reason IS NULL AND ({key}) IN (
                    SELECT ({key}) FROM _checked WHERE _reason IS NULL
                    GROUP BY ALL HAVING count(*) > 1)
            ) WHERE n > 1)
    """)


def _reason_counts(con) -> dict[str, int]:
    rows = con.execute("""
        SELECT r, count(*) FROM (SELECT unnest(string_split(_reason, '; ')) AS r
                                 FROM _checked WHERE _reason IS NOT NULL)
        GROUP BY r ORDER BY 2 DESC
    """).fetchall()
    return {r: int(n) for r, n in rows}
