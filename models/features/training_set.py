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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.core.names import FEATURE_SERVICE

if TYPE_CHECKING:
    from feast import FeatureStore

    from models.core.warehouse import Warehouse

KEYS = ["clip_id", "event_timestamp"]


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
    read: window days and start, rows in the window, rows used, the sample."""
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
        "train_sample": (
            f"whole clips by md5(clip_id) up to {row_budget} rows" if sampled else "none"
        ),
    }
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


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
