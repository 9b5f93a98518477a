"""Fresh online features from engagement files that landed since the last nightly run.

For every clip with new (valid) engagement rows, the latest `clip_features` row of the
warehouse supplies the attributes and the creator history (as of the last day-end), and
the early-engagement features are recomputed over the warehouse's engagement plus the new
rows, as of the newest new window of that clip. Clips not yet in the warehouse wait for the
nightly run (their attributes are not known to the feature store yet). The result has the
`clip_features` columns, ready for the `clip_features_push` push source.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from models.core.contract import ENGAGEMENT
from models.core.warehouse import Warehouse
from models.features.clip_features import FEATURE_COLUMNS, WINDOW_DAYS
from models.ingest.day import valid_rows_sql
from models.ingest.landing import LandingFile

_ENG_COLS = "clip_id, event_timestamp, views, likes, shares, comments, completions, watch_time_s"


def fresh_features(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, files: list[LandingFile]
) -> pa.Table:
    """Rows of `clip_features` as of each clip's newest window in `files`."""
    if not files or not warehouse.exists("clip_features"):
        return pa.table({})
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _fresh_new AS
        SELECT {_ENG_COLS} FROM ({valid_rows_sql(con, warehouse, ENGAGEMENT, files)})
    """)
    old = (
        f"SELECT {_ENG_COLS} FROM {warehouse.scan('engagement', _ENG_COLS)} "
        "WHERE clip_id IN (SELECT clip_id FROM _fresh_new)"
        if warehouse.exists("engagement")
        else "SELECT * FROM _fresh_new WHERE FALSE"
    )
    sums = []
    for k in WINDOW_DAYS:
        within = f"FILTER (e.event_timestamp <= b.created_at + INTERVAL {24 * k} HOUR)"
        v = f"coalesce(sum(e.views::DOUBLE) {within}, 0)"
        sums += [
            f"{v}::BIGINT AS views_{k}d",
            f"CASE WHEN {v} > 0 THEN sum(e.completions::DOUBLE) {within} / {v} ELSE 0 END "
            f"AS completion_rate_{k}d",
            f"CASE WHEN {v} > 0 THEN sum((e.likes + e.shares + e.comments)::DOUBLE) {within} "
            f"/ {v} ELSE 0 END AS engagement_rate_{k}d",
            f"CASE WHEN {v} > 0 THEN sum(e.watch_time_s) {within} / ({v} * any_value(b.duration_s))"
            f" ELSE 0 END AS watch_ratio_{k}d",
        ]
    engagement_cols = [c for c in FEATURE_COLUMNS if any(c.endswith(f"_{k}d") for k in WINDOW_DAYS)]
    rest = [c for c in FEATURE_COLUMNS if c not in engagement_cols and c != "clip_age_hours"]
    table = con.sql(f"""
        WITH base AS (
            SELECT * FROM {warehouse.scan("clip_features")}
            WHERE clip_id IN (SELECT clip_id FROM _fresh_new)
            QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY event_timestamp DESC) = 1
        ),
        latest AS (SELECT clip_id, max(event_timestamp) AS as_of FROM _fresh_new GROUP BY ALL),
        windows AS (SELECT DISTINCT * FROM (SELECT * FROM _fresh_new UNION ALL {old}))
        SELECT b.clip_id, any_value(b.creator_id) AS creator_id,
               any_value(b.created_at) AS created_at, a.as_of AS event_timestamp,
               {", ".join(f"any_value(b.{c}) AS {c}" for c in rest)},
               (epoch_us(a.as_of) - epoch_us(any_value(b.created_at))) / 3.6e9 AS clip_age_hours,
               {", ".join(sums)}
        FROM base b JOIN latest a USING (clip_id)
        JOIN windows e ON e.clip_id = b.clip_id AND e.event_timestamp <= a.as_of
         AND e.event_timestamp <= b.created_at + INTERVAL {24 * max(WINDOW_DAYS)} HOUR
        WHERE a.as_of > b.event_timestamp
        GROUP BY b.clip_id, a.as_of
    """).to_arrow_table()
    con.execute("DROP TABLE IF EXISTS _fresh_new")
    return table.select(
        ["clip_id", "creator_id", "created_at", "event_timestamp", *FEATURE_COLUMNS]
    )
