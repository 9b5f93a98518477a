"""The point-in-time correct training set: labelled scoring moments joined with features.

An entity row is one moment at which the model would have scored a clip: its creation and
the end of each of its first 7 engagement days (the `event_timestamp`s of its
`clip_features` rows), up to a cutoff. Its target is the newest label known at the cutoff.
Features are joined as of the entity row's `event_timestamp` (the newest feature row at or
before it), two ways that must agree: Feast's `get_historical_features` over the feature
service `clip_quality_v1`, and a DuckDB `ASOF JOIN` on the warehouse (faster at scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.core.names import FEATURE_SERVICE
from models.core.warehouse import sql_str

if TYPE_CHECKING:
    from feast import FeatureStore

    from models.core.warehouse import Warehouse

KEYS = ["clip_id", "event_timestamp"]
ENTITY_COLUMNS = ["clip_id", "event_timestamp", "created_at", "creator_id", "quality_score"]


def entity_rows(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, cutoff: datetime) -> pa.Table:
    """Scoring moments (<= cutoff) of every clip with a label known at `cutoff`.

    Columns: clip_id, event_timestamp, created_at, creator_id, quality_score (the newest
    label with labeled_at <= cutoff); sorted by clip_id, event_timestamp.
    """
    cutoff = _utc(cutoff)
    return con.sql(
        f"""
        WITH label AS (
            SELECT clip_id, quality_score
            FROM {warehouse.scan("labels")}
            WHERE labeled_at <= $cutoff
            QUALIFY row_number() OVER (
                PARTITION BY clip_id ORDER BY labeled_at DESC, quality_score DESC) = 1
        ),
        moment AS (
            SELECT DISTINCT clip_id, event_timestamp, created_at, creator_id
            FROM {warehouse.scan("clip_features")}
            WHERE event_timestamp <= $cutoff
        )
        SELECT m.clip_id, m.event_timestamp, m.created_at, m.creator_id, l.quality_score
        FROM moment m JOIN label l USING (clip_id)
        ORDER BY m.clip_id, m.event_timestamp
        """,
        params={"cutoff": cutoff},
    ).to_arrow_table()


def build_window(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    ds: str,
    cutoff: datetime,
    window_days: int,
    row_budget: int,
    features: Sequence[str],
) -> dict[str, str] | None:
    """Write partition `ds` of `training_set` within the training window and row budget
    (#19), by DuckDB alone: `stage_window` picks the clips, `window_sql` joins their
    features, and DuckDB writes the file within its memory limit (nothing passes through
    Python). The window and sample are the file's key-value metadata (`read_window` puts
    them in the model's tags) and the return value, with the rows written; None (nothing
    written) while there are no labels or features yet."""
    meta = stage_window(con, warehouse, cutoff, window_days, row_budget)
    if meta is None:
        return None
    query = window_sql(con, warehouse, cutoff, window_days, features)
    n = warehouse.write_partition(con, "training_set", ds, query, keys=KEYS, metadata=meta)
    return {**meta, "train_rows_built": str(n)}


def stage_window(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    cutoff: datetime,
    window_days: int,
    row_budget: int,
) -> dict[str, str] | None:
    """Temp table `_ts_kept` (clip_id, quality_score, n): the clips created in the
    `window_days` days before `cutoff` with a label known at `cutoff` (the newest is the
    target). When their scoring moments are more than `row_budget`, whole clips are kept in
    the order of the MD5 of their clip_id while their moments fit (`read_window`'s rule).
    A clip's moments `n` are counted by its age: its creation and the day-ends it has had
    up to the cutoff (at most 7), an upper bound of its rows, known without reading the
    features. Only the window's partitions of clips and labels are read. Returns the
    window and sample (the model's version tags); None while there are no labels or
    features yet."""
    from models.features.creator_state import read_days

    if not (warehouse.exists("labels") and warehouse.exists("clip_features")):
        return None
    cutoff = _utc(cutoff)
    start = cutoff - timedelta(days=window_days)
    lo, hi = start.date(), cutoff.date()
    labels = read_days(warehouse, "labels", ["clip_id", "labeled_at", "quality_score"], lo, hi)
    clips = read_days(warehouse, "clips", ["clip_id", "created_at"], lo, hi)
    age = f"date_diff('day', (c.created_at AT TIME ZONE 'UTC')::DATE, DATE '{hi}') + 1"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _ts_clips AS
        WITH label AS (
            SELECT clip_id, quality_score FROM {labels} WHERE labeled_at <= {_at(cutoff)}
            QUALIFY row_number() OVER (
                PARTITION BY clip_id ORDER BY labeled_at DESC, quality_score DESC) = 1)
        SELECT c.clip_id, l.quality_score, 1 + least(7, greatest(0, {age})) AS n
        FROM {clips} c JOIN label l USING (clip_id)
        WHERE c.created_at >= {_at(start)} AND c.created_at <= {_at(cutoff)}""")
    ((available,),) = con.execute("SELECT coalesce(sum(n), 0) FROM _ts_clips").fetchall()
    sampled = available > row_budget
    order = "ORDER BY md5(clip_id), clip_id ROWS UNBOUNDED PRECEDING"
    keep = f"QUALIFY sum(n) OVER ({order}) <= {int(row_budget)}" if sampled else ""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _ts_kept AS SELECT * FROM _ts_clips {keep};
        DROP TABLE _ts_clips""")
    return {
        "train_window_days": str(window_days),
        "train_window_start": start.isoformat(),
        "train_rows_in_window": str(available),
        "train_sample": (_sample(row_budget) if sampled else "none"),
    }


def window_sql(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    cutoff: datetime,
    window_days: int,
    features: Sequence[str] | None,
) -> str:
    """The rows of the clips in `_ts_kept` (`stage_window`): their scoring moments (<=
    `cutoff`, from their clip_features rows) with the target and `features` as of each
    moment (`ASOF JOIN`, as `training_set_duckdb`); the entity rows alone when `features`
    is None. Only the window's clip_features partitions are read, and in them only the row
    groups whose `sample_key`s reach the sample's (`_key_bound`)."""
    cutoff = _utc(cutoff)
    lo, hi = (cutoff - timedelta(days=window_days)).date(), cutoff.date()
    feats = (
        f"(SELECT * FROM {warehouse.scan('clip_features')} "
        f"WHERE ds BETWEEN DATE '{lo}' AND DATE '{hi}'{_key_bound(con, warehouse, lo, hi)} "
        "AND clip_id IN (SELECT clip_id FROM _ts_kept))"
    )
    entity = f"""
        SELECT m.*, k.quality_score FROM (
            SELECT DISTINCT clip_id, event_timestamp, created_at, creator_id
            FROM {feats} WHERE event_timestamp <= {_at(cutoff)}) m
        JOIN _ts_kept k USING (clip_id)"""
    if features is None:
        return entity
    cols = ", ".join(f"f.{_ident(c)}" for c in features)
    return f"""
        SELECT e.*, {cols}
        FROM ({entity}) e ASOF LEFT JOIN {feats} f
          ON e.clip_id = f.clip_id AND e.event_timestamp >= f.event_timestamp"""


def _key_bound(con, warehouse: Warehouse, lo, hi) -> str:
    """` AND sample_key <= <the largest key in _ts_kept>`, which lets DuckDB skip the row
    groups past the sample (files are sorted by sample_key), when every clip_features file
    of days lo..hi has the column; '' otherwise (files written before #19: all read)."""
    from models.features.clip_features import sample_key_sql

    files = [
        sql_str(f)
        for d in warehouse.partitions("clip_features")
        if lo <= date.fromisoformat(d) <= hi
        for f in warehouse.files("clip_features", d)
    ]
    if not files:
        return ""
    ((keyed,),) = con.execute(
        f"SELECT count(DISTINCT file_name) FROM parquet_schema([{', '.join(files)}]) "
        "WHERE name = 'sample_key'"
    ).fetchall()
    ((bound,),) = con.execute(f"SELECT max({sample_key_sql('clip_id')}) FROM _ts_kept").fetchall()
    if keyed < len(files) or bound is None:
        return ""
    return f" AND sample_key <= {int(bound)}"


def read_window(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    ds: str,
    cutoff: datetime,
    window_days: int,
    row_budget: int,
) -> tuple[pa.Table, dict[str, str]]:
    """What training reads of partition `ds` of `training_set`: the rows of clips created in
    the `window_days` days before `cutoff` (created_at >= cutoff - window_days), and when
    they are more than `row_budget`, whole clips in the order of the MD5 of their clip_id
    (a uniform sample, the same on every run and DuckDB version) while the rows fit. DuckDB
    reads and filters the partition, so only the kept rows reach Arrow.

    Returns the rows (sorted by clip_id, event_timestamp) and the tags that say what was
    read: window days and start, rows in the window, rows used, the sample. A partition
    that `build_window` already sampled for the same window says so in its metadata: the
    tags then give its count of the window's rows and its sample."""
    start = _utc(cutoff) - timedelta(days=window_days)
    part = warehouse.partition_scan("training_set", ds)
    in_window = f"SELECT * FROM {part} WHERE created_at >= $start"
    ((available,),) = con.execute(
        f"SELECT count(*) FROM ({in_window})", {"start": start}
    ).fetchall()
    sampled = available > row_budget
    if sampled:
        query = f"""
            WITH per_clip AS (SELECT clip_id, count(*) AS n FROM ({in_window}) GROUP BY clip_id),
            kept AS (
                SELECT clip_id FROM per_clip
                QUALIFY sum(n) OVER (ORDER BY md5(clip_id), clip_id
                                     ROWS UNBOUNDED PRECEDING) <= $budget
            )
            SELECT * FROM ({in_window}) WHERE clip_id IN (SELECT clip_id FROM kept)"""
    else:
        query = in_window
    params = {"start": start, **({"budget": row_budget} if sampled else {})}
    rows = con.sql(f"{query} ORDER BY clip_id, event_timestamp", params=params).to_arrow_table()
    tags = {
        "train_window_days": str(window_days),
        "train_window_start": start.isoformat(),
        "train_rows_in_window": str(available),
        "train_rows_used": str(rows.num_rows),
        "train_sample": (_sample(row_budget) if sampled else "none"),
    }
    built = warehouse.kv_metadata("training_set", ds)
    if (
        built.get("train_window_start") == tags["train_window_start"]
        and built.get("train_sample", "none") != "none"
    ):
        tags["train_rows_in_window"] = built["train_rows_in_window"]
        if not sampled:
            tags["train_sample"] = built["train_sample"]
    return rows, tags


def training_set_feast(
    store: FeatureStore, entity_df: pa.Table | pd.DataFrame, feature_service: str = FEATURE_SERVICE
) -> pa.Table:
    """Entity rows plus the features of `feature_service`, through Feast's offline store."""
    if isinstance(entity_df, pa.Table):
        entity_df = entity_df.to_pandas()
    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(feature_service)
    )
    return job.to_arrow()


def service_features(store: FeatureStore, feature_service: str = FEATURE_SERVICE) -> list[str]:
    """The feature names a Feast feature service serves, in its order."""
    service = store.get_feature_service(feature_service)
    return [f.name for view in service.feature_view_projections for f in view.features]


def training_set_duckdb(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    entity_df: pa.Table | pd.DataFrame,
    features: Sequence[str],
) -> pa.Table:
    """Entity rows plus `features` of clip_features as of each row's event_timestamp (the
    newest feature row at or before it), by DuckDB `ASOF JOIN`. A clip with no feature row
    yet gets nulls, as in Feast. `service_features(store)` lists the model's features.
    """
    entity = entity_df if isinstance(entity_df, pa.Table) else pa.Table.from_pandas(entity_df)
    cols = ", ".join(f"f.{_ident(c)}" for c in features)
    select = ", ".join(f"f.{_ident(c)}" for c in ["clip_id", "event_timestamp", *features])
    con.register("_entity_rows", entity)
    try:
        return con.sql(
            f"""
            SELECT e.*, {cols}
            FROM _entity_rows e
            ASOF LEFT JOIN (SELECT {select} FROM {warehouse.scan("clip_features")} f) f
              ON e.clip_id = f.clip_id AND e.event_timestamp >= f.event_timestamp
            ORDER BY e.clip_id, e.event_timestamp
            """
        ).to_arrow_table()
    finally:
        con.unregister("_entity_rows")


def compare(
    a: pa.Table | pd.DataFrame, b: pa.Table | pd.DataFrame, atol: float = 1e-9
) -> list[str]:
    """Differences between two training sets, row for row after sorting by clip_id and
    event_timestamp: floats within `atol`, nulls (and NaN) equal to each other.

    Returns a list of problems; empty when they agree.
    """
    a, b = _sorted(a), _sorted(b)
    problems = []
    if set(a.column_names) != set(b.column_names):
        diff = sorted(set(a.column_names) ^ set(b.column_names))
        problems.append(f"columns differ: {diff}")
    if a.num_rows != b.num_rows:
        return [*problems, f"row counts differ: {a.num_rows} != {b.num_rows}"]
    for name in a.column_names:
        if name in b.column_names:
            bad = _mismatches(a.column(name), b.column(name), atol)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                problems.append(
                    f"{name}: {int(bad.sum())} rows differ, first at {a.column('clip_id')[i]} "
                    f"{a.column('event_timestamp')[i]}: {a.column(name)[i]} != {b.column(name)[i]}"
                )
    return problems


def _mismatches(x: pa.ChunkedArray, y: pa.ChunkedArray, atol: float) -> np.ndarray:
    if pa.types.is_timestamp(x.type) or pa.types.is_timestamp(y.type):
        x, y = _as_utc_micros(x), _as_utc_micros(y)
    if pa.types.is_floating(x.type) or pa.types.is_floating(y.type):
        xv = x.cast(pa.float64()).to_numpy(zero_copy_only=False)
        yv = y.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return ~(np.isclose(xv, yv, rtol=0.0, atol=atol, equal_nan=True))
    x_null = x.is_null().to_numpy(zero_copy_only=False)
    y_null = y.is_null().to_numpy(zero_copy_only=False)
    if x.type != y.type:
        y = y.cast(x.type)
    same = pc.equal(x, y).fill_null(False).to_numpy(zero_copy_only=False)
    return ~((x_null & y_null) | (same & ~x_null & ~y_null))


def _sorted(t: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(t, pd.DataFrame):
        t = pa.Table.from_pandas(t, preserve_index=False)
    t = t.set_column(
        t.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        _as_utc_micros(t.column("event_timestamp")),
    )
    return t.sort_by([(k, "ascending") for k in KEYS])


def _as_utc_micros(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        col = pc.assume_timezone(col, "UTC")
    return col.cast(pa.timestamp("us", tz="UTC"), safe=False)


def _sample(budget: int) -> str:
    """The `train_sample` tag of a window sampled to `budget` rows."""
    return f"whole clips by md5(clip_id) up to {budget} rows"


def _at(ts: datetime) -> str:
    """A UTC timestamp literal (for times this code computes, never for input)."""
    return f"TIMESTAMPTZ '{_utc(ts).isoformat()}'"


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
