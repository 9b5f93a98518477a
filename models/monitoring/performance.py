"""Model performance as labels arrive: each past day's champion scores against the labels
known at a later day's end.

A label comes days after its clip (docs/contract.md §1), so the rmse of day d's scores keeps
changing as its clips get labelled. `history(con, warehouse, as_of_ds)` recomputes, as of
the end of `as_of_ds`, the rmse/mae of the champion scores of every scored day in the
`window_days` before it (newest label known at that moment per clip); the drift report
stores it as the `model_performance` partition of `as_of_ds`, so the table holds how each
day's quality looked from every later day: decay over time, and labels filling in.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa

from models.core.names import CHAMPION
from models.core.warehouse import Warehouse, sql_str


def history(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    as_of_ds: date,
    as_of: datetime,
    window_days: int = 28,
) -> pa.Table:
    """One row per scored day in (as_of_ds - window_days, as_of_ds] with labelled clips:
    scored_ds, model_version, rmse, mae, n_labels (labels known at `as_of`)."""
    empty = pa.table(
        {
            "scored_ds": pa.array([], pa.date32()),
            "model_version": pa.array([], pa.string()),
            "rmse": pa.array([], pa.float64()),
            "mae": pa.array([], pa.float64()),
            "n_labels": pa.array([], pa.int64()),
        }
    )
    if not (warehouse.exists("clip_scores") and warehouse.exists("labels")):
        return empty
    lo = as_of_ds - timedelta(days=window_days - 1)
    return con.sql(
        f"""
        WITH label AS (
            SELECT clip_id, quality_score
            FROM {warehouse.scan("labels", "clip_id, labeled_at, quality_score")}
            WHERE labeled_at <= TIMESTAMPTZ {sql_str(as_of.isoformat())}
            QUALIFY row_number() OVER (
                PARTITION BY clip_id ORDER BY labeled_at DESC, quality_score DESC) = 1
        ),
        scored AS (
            SELECT ds AS scored_ds, clip_id, score, model_version
            FROM {warehouse.scan("clip_scores", "ds, clip_id, score, model_version, model_alias")}
            WHERE model_alias = {sql_str(CHAMPION)}
              AND ds BETWEEN DATE '{lo}' AND DATE '{as_of_ds}'
        )
        SELECT scored_ds, any_value(model_version) AS model_version,
               sqrt(avg((score - quality_score) ^ 2)) AS rmse,
               avg(abs(score - quality_score)) AS mae,
               count(*)::BIGINT AS n_labels
        FROM scored JOIN label USING (clip_id)
        GROUP BY scored_ds
        ORDER BY scored_ds
        """
    ).to_arrow_table()


def pooled(rows: list[dict], since: date | None = None) -> dict | None:
    """rmse/mae over the labelled scores of `rows` (history rows, scored_ds >= since),
    weighted by their label counts; None without labels."""
    use = [r for r in rows if since is None or r["scored_ds"] >= since]
    n = sum(r["n_labels"] for r in use)
    if not n:
        return None
    return {
        "rmse": math.sqrt(sum(r["n_labels"] * r["rmse"] ** 2 for r in use) / n),
        "mae": sum(r["n_labels"] * r["mae"] for r in use) / n,
        "n_labels": int(n),
    }
