"""The landing tables as daily files: `<table>/<YYYY-MM-DD>/part-NNN.{parquet,csv}` by the
day of each row's own timestamp, at most 500k rows a file. Every csv_every-th day is CSV
(ISO 8601 timestamps, alternately with `Z` and `+00:00`); Parquet days alternate between ns
and us UTC timestamps. Files with the same name are overwritten, other files are left alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from models.core.contract import Table
from models.synthetic.experiments import DAY_US

MAX_ROWS_PER_FILE = 500_000
ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _column(values, kind: str, unit: str) -> pa.Array:
    if kind == "timestamp":
        scale = 1000 if unit == "ns" else 1
        return pa.array(np.asarray(values) * scale, pa.timestamp(unit, tz="UTC"))
    if isinstance(values, pa.Array):
        return values.cast(ARROW_TYPES[kind])
    return pa.array(values, ARROW_TYPES[kind])


def _csv_text(data: pa.Table, table: Table, offset: str) -> pa.Table:
    """Timestamps as ISO 8601 with `offset`; floats always with a decimal point."""
    cols = []
    for f in table.fields:
        col = data[f.name].combine_chunks()
        if f.type == "timestamp":
            col = pc.binary_join_element_wise(pc.strftime(col, "%Y-%m-%dT%H:%M:%S"), offset, "")
        elif f.type == "float":
            text = pc.cast(col, pa.string())
            plain = pc.invert(pc.match_substring_regex(text, "[.eEn]"))
            col = pc.if_else(plain, pc.binary_join_element_wise(text, ".0", ""), text)
        cols.append(col)
    return pa.table(cols, names=table.columns)


def write_daily(
    out: Path, table: Table, cols: dict, start_us: int, days: int, csv_every: int
) -> list[str]:
    """Write rows by the UTC day of their timestamp; returns the paths written, relative to out."""
    ts = np.asarray(cols[table.partition_by])
    order = np.argsort(ts, kind="stable")
    bounds = np.searchsorted(ts[order], start_us + np.arange(days + 1) * DAY_US)
    is_csv = [csv_every > 0 and d % csv_every == csv_every - 1 for d in range(days)]
    written = []
    for d in range(days):
        rank = sum(1 for x in is_csv[:d] if x == is_csv[d])  # alternates ns/us and Z/+00:00
        unit = "ns" if rank % 2 == 0 and not is_csv[d] else "us"
        day = (dt.date(1970, 1, 1) + dt.timedelta(days=start_us // DAY_US + d)).isoformat()
        for part, lo in enumerate(range(bounds[d], bounds[d + 1], MAX_ROWS_PER_FILE)):
            idx = order[lo : min(lo + MAX_ROWS_PER_FILE, bounds[d + 1])]
            arrays = []
            for f in table.fields:
                v = cols[f.name]
                v = v.take(pa.array(idx)) if isinstance(v, pa.Array) else np.asarray(v)[idx]
                arrays.append(_column(v, f.type, unit))
            data = pa.table(arrays, names=table.columns)
            rel = Path(table.name) / day / f"part-{part:03d}.{'csv' if is_csv[d] else 'parquet'}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            if is_csv[d]:
                text = _csv_text(data, table, "Z" if rank % 2 == 0 else "+00:00")
                pacsv.write_csv(text, out / rel, pacsv.WriteOptions(quoting_style="none"))
            else:
                pq.write_table(data, out / rel)
            written.append(rel.as_posix())
    return written
