"""What the `clip_features` asset shows and what its blocking `features_sane` check counts,
read back from the written partition."""

from __future__ import annotations

from datetime import date

from models.core.warehouse import Warehouse, ident
from models.features.clip_features import (
    ENGAGEMENT_FEATURES,
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    NULLABLE_FEATURES,
    TABLE,
)


def summary(warehouse: Warehouse, ds: str | date, preview_columns: list[str]) -> dict:
    """Creation rows, clips, rows with views, and the first rows of the day's partition."""
    part = warehouse.partition_scan(TABLE, ds)
    con = warehouse.con
    creation, clips, with_views = con.sql(f"""
        SELECT count(*) FILTER (event_timestamp = created_at), count(DISTINCT clip_id),
               count(*) FILTER (views_7d > 0)
        FROM {part}
    """).fetchall()[0]
    cols = ", ".join(ident(c) for c in preview_columns)
    head = con.sql(f"SELECT {cols} FROM {part} ORDER BY clip_id, event_timestamp LIMIT 5")
    return {
        "creation_rows": int(creation),
        "clips": int(clips),
        "rows_with_views": int(with_views),
        "head": head.fetchall(),
    }


def rate_bounds() -> dict[str, float]:
    """Upper bounds the contract guarantees: completions <= views. Likes+shares+comments
    may exceed views and rewatches may exceed the duration, so those rates are only >= 0."""
    return {
        c: 1.0 if c.startswith("completion_rate") else float("inf")
        for c in ENGAGEMENT_FEATURES
        if not c.startswith("views")
    }


def float_features(warehouse: Warehouse, ds: str | date) -> list[str]:
    """The features stored as floating point in the day's partition (those that can hold
    NaN or an infinity)."""
    part = warehouse.partition_scan(TABLE, ds)
    types = {r[0]: r[1] for r in warehouse.con.sql(f"DESCRIBE SELECT * FROM {part}").fetchall()}
    return [c for c in FEATURE_COLUMNS if types.get(c, "").upper() in ("DOUBLE", "FLOAT")]


def non_finite_counts(warehouse: Warehouse, ds: str | date) -> dict[str, int]:
    """Per float feature, the rows holding NaN, +inf or -inf; only features with any. One
    such value fails training in XGBoost, and every later training with it (#16)."""
    part = warehouse.partition_scan(TABLE, ds)
    cols = float_features(warehouse, ds)
    if not cols:
        return {}
    counts = ", ".join(f"count(*) FILTER (NOT isfinite({ident(c)}))" for c in cols)
    found = warehouse.con.sql(f"SELECT {counts} FROM {part}").fetchall()[0]
    return {c: int(n) for c, n in zip(cols, found, strict=True) if n}


def sanity_counts(warehouse: Warehouse, ds: str | date) -> dict[str, int]:
    """Rows, and the rows breaking each rule of `features_sane` (0 everywhere when sane)."""
    part = warehouse.partition_scan(TABLE, ds)
    non_finite = " OR ".join(
        [f"NOT isfinite({ident(c)})" for c in float_features(warehouse, ds)] or ["FALSE"]
    )
    required = [c for c in KEY_COLUMNS + FEATURE_COLUMNS if c not in NULLABLE_FEATURES]
    nulls = " OR ".join(f"{c} IS NULL" for c in required)
    out_of_range = " OR ".join(
        (f"NOT ({c} BETWEEN 0 AND {hi})" if hi != float("inf") else f"NOT ({c} >= 0)")
        for c, hi in rate_bounds().items()
    )
    counts = {
        "rows": f"SELECT count(*) FROM {part}",
        "rows_with_nulls": f"SELECT count(*) FROM {part} WHERE {nulls}",
        "rows_with_rates_out_of_range": f"SELECT count(*) FROM {part} WHERE {out_of_range}",
        "rows_with_non_finite": f"SELECT count(*) FROM {part} WHERE {non_finite}",
        "duplicate_keys": f"SELECT count(*) - count(DISTINCT (clip_id, event_timestamp)) "
        f"FROM {part}",
        "clips_without_creation_row": f"""
            SELECT count(*) FROM {warehouse.scan("clips", "clip_id, ds")} c
            WHERE c.ds = $ds AND NOT EXISTS (
                SELECT 1 FROM {part} f
                WHERE f.clip_id = c.clip_id AND f.event_timestamp = f.created_at)"""
        if warehouse.exists("clips")
        else "SELECT 0",
    }
    params = {"ds": date.fromisoformat(str(ds))}
    return {
        k: int(warehouse.con.sql(sql, params=params if "$ds" in sql else None).fetchall()[0][0])
        for k, sql in counts.items()
    }
