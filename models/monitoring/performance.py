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
from models.training.intervals import AGE_BUCKETS

_AGE = pa.struct([("age_bucket", pa.string()), ("rmse", pa.float64()), ("mae", pa.float64()),
                  ("n_labels", pa.int64()), ("coverage", pa.float64()),
                  ("mean_interval_width", pa.float64())])  # fmt: skip
EMPTY = pa.table(
    {
        "scored_ds": pa.array([], pa.date32()),
        "model_version": pa.array([], pa.string()),
        "rmse": pa.array([], pa.float64()),
        "mae": pa.array([], pa.float64()),
        "n_labels": pa.array([], pa.int64()),
        "coverage": pa.array([], pa.float64()),
        "interval_level": pa.array([], pa.float64()),
        "mean_interval_width": pa.array([], pa.float64()),
        "by_age": pa.array([], pa.list_(_AGE)),
    }
)


def history(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    as_of_ds: date,
    as_of: datetime,
    window_days: int = 28,
) -> pa.Table:
    """One row per scored day in (as_of_ds - window_days, as_of_ds] with labelled clips:
    scored_ds, model_version, rmse, mae, n_labels (labels known at `as_of`), and (#17) the
    prediction intervals' `coverage` (share of labels inside [score_low, score_high]),
    `interval_level` and `mean_interval_width` (null where the scores carry no interval),
    and `by_age`: the same figures per age bucket at scoring (models/training/intervals.py
    `AGE_BUCKETS`: creation day, 1 day, 3 days, 7 days; the creation-day figure is the one
    the platform decides on)."""
    if not (warehouse.exists("clip_scores") and warehouse.exists("labels")):
        return EMPTY
    lo = as_of_ds - timedelta(days=window_days - 1)
    scores = warehouse.scan("clip_scores")
    have = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {scores}").fetchall()}
    interval = ", ".join(  # scores written before intervals existed have none: NULL
        c if c in have else f"NULL::DOUBLE AS {c}"
        for c in ("score_low", "score_high", "interval_level")
    )
    by_age = " ".join(
        f"WHEN age_h < {hi!r} THEN {sql_str(name)}" for name, _, hi in AGE_BUCKETS[:-1]
    )
    order = " ".join(f"WHEN {sql_str(name)} THEN {i}" for i, (name, _, _) in enumerate(AGE_BUCKETS))
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
            SELECT ds AS scored_ds, clip_id, score, model_version, event_timestamp, {interval}
            FROM {scores}
            WHERE model_alias = {sql_str(CHAMPION)}
              AND ds BETWEEN DATE '{lo}' AND DATE '{as_of_ds}'
        ),
        clip AS (  -- creation times of the clips scored in the window (scored <= 7 days old)
            SELECT clip_id, any_value(created_at) AS created_at
            FROM {warehouse.scan("clips", "clip_id, created_at, ds")}
            WHERE ds BETWEEN DATE '{lo - timedelta(days=8)}' AND DATE '{as_of_ds}'
            GROUP BY clip_id
        ),
        joined AS (
            SELECT s.*, l.quality_score,
                   (epoch_us(s.event_timestamp) - epoch_us(c.created_at)) / 3.6e9 AS age_h,
                   (l.quality_score BETWEEN s.score_low AND s.score_high)::INTEGER AS inside,
                   s.score_high - s.score_low AS width
            FROM scored s JOIN label l USING (clip_id) LEFT JOIN clip c USING (clip_id)
        ),
        bucketed AS (
            SELECT *, CASE WHEN age_h IS NULL OR age_h < 0 THEN {sql_str(AGE_BUCKETS[0][0])}
                           {by_age} ELSE {sql_str(AGE_BUCKETS[-1][0])} END AS age_bucket
            FROM joined
        ),
        per_age AS (
            SELECT scored_ds, age_bucket,
                   sqrt(avg((score - quality_score) ^ 2)) AS rmse,
                   avg(abs(score - quality_score)) AS mae,
                   count(*)::BIGINT AS n_labels,
                   avg(inside) AS coverage,
                   avg(width) AS mean_interval_width
            FROM bucketed GROUP BY scored_ds, age_bucket
        ),
        per_day AS (
            SELECT scored_ds, any_value(model_version) AS model_version,
                   sqrt(avg((score - quality_score) ^ 2)) AS rmse,
                   avg(abs(score - quality_score)) AS mae,
                   count(*)::BIGINT AS n_labels,
                   avg(inside) AS coverage,
                   max(interval_level) AS interval_level,
                   avg(width) AS mean_interval_width
            FROM bucketed GROUP BY scored_ds
        )
        SELECT d.*, list(struct_pack(age_bucket := a.age_bucket, rmse := a.rmse, mae := a.mae,
                                     n_labels := a.n_labels, coverage := a.coverage,
                                     mean_interval_width := a.mean_interval_width)
                         ORDER BY CASE a.age_bucket {order} END) AS by_age
        FROM per_day d JOIN per_age a USING (scored_ds)
        GROUP BY ALL
        ORDER BY d.scored_ds
        """
    ).to_arrow_table()


def pooled(rows: list[dict], since: date | None = None) -> dict | None:
    """rmse/mae over the labelled scores of `rows` (history rows, scored_ds >= since),
    weighted by their label counts, and the prediction intervals' `coverage` (with
    `interval_level` and `n_interval_labels`; None without intervals); None without
    labels."""
    use = [r for r in rows if since is None or r["scored_ds"] >= since]
    n = sum(r["n_labels"] for r in use)
    if not n:
        return None
    out = {
        "rmse": math.sqrt(sum(r["n_labels"] * r["rmse"] ** 2 for r in use) / n),
        "mae": sum(r["n_labels"] * r["mae"] for r in use) / n,
        "n_labels": int(n),
    }
    # the intervals' coverage over the days scored with intervals at the latest level (a
    # day's scores come from one champion, so its labels all have an interval or none)
    with_iv = [r for r in use if r.get("coverage") is not None]
    level = with_iv[-1]["interval_level"] if with_iv else None
    same = [r for r in with_iv if r["interval_level"] == level]
    n_iv = sum(r["n_labels"] for r in same)
    out |= {
        "coverage": sum(r["n_labels"] * r["coverage"] for r in same) / n_iv if n_iv else None,
        "interval_level": level,
        "n_interval_labels": int(n_iv),
        "by_age": _pooled_by_age(use, level),
    }
    return out


def _pooled_by_age(rows: list[dict], level: float | None) -> list[dict]:
    """Per age bucket at scoring (`AGE_BUCKETS` order, buckets without labels left out):
    rmse, mae, n_labels pooled over `rows`' `by_age` entries, and coverage over the entries
    of rows at interval `level`."""
    out = []
    for name, _, _ in AGE_BUCKETS:
        parts = [(r, a) for r in rows for a in (r.get("by_age") or []) if a["age_bucket"] == name]
        n = sum(a["n_labels"] for _, a in parts)
        if not n:
            continue
        cov = [a for r, a in parts if a.get("coverage") is not None
               and r.get("interval_level") == level]  # fmt: skip
        n_cov = sum(a["n_labels"] for a in cov)
        out.append({
            "age_bucket": name,
            "rmse": math.sqrt(sum(a["n_labels"] * a["rmse"] ** 2 for _, a in parts) / n),
            "mae": sum(a["n_labels"] * a["mae"] for _, a in parts) / n,
            "n_labels": int(n),
            "coverage": sum(a["n_labels"] * a["coverage"] for a in cov) / n_cov if n_cov else None,
        })  # fmt: skip
    return out
