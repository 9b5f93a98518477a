"""Features: the daily point-in-time `clip_features` partition and its blocking sanity check.

The asset calls models.features.clip_features.build_clip_features for the partition's day; the check
reads the written partition back and stops downstream assets (training set, scoring)
when it holds NULLs, rates out of range, duplicate rows or misses a clip of the day.
"""

import warnings
from datetime import date

import dagster as dg

from assets.constants import DAILY_PARTITIONS, FEATURES, OWNERS
from assets.markdown import md_table
from assets.resources import WarehouseResource
from models.core.warehouse import sql_str
from models.features.clip_features import (
    ENGAGEMENT_FEATURES,
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    NULLABLE_FEATURES,
    TABLE,
    build_clip_features,
)

PREVIEW_COLUMNS = [
    "clip_id",
    "event_timestamp",
    "duration_s",
    "views_1d",
    "completion_rate_1d",
    "creator_clip_count",
    "creator_label_mean",
]


def _partition(wh, ds: str) -> str:
    return f"read_parquet({sql_str(wh.partition_dir(TABLE, ds) / '*.parquet')})"


@dg.asset(
    name=TABLE,
    group_name=FEATURES,
    owners=OWNERS[FEATURES],
    partitions_def=DAILY_PARTITIONS,
    deps=["clips", "engagement", "labels"],
    kinds={"duckdb", "parquet"},
    description="Point-in-time clip features, one row per (clip_id, event_timestamp): a "
    "creation row per clip created on the day and a day-end row per clip in its first 7 "
    "days. Clip attributes, derived attributes, 1/3/7-day engagement and creator history "
    "known strictly before event_timestamp.",
)
def clip_features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    ds = date.fromisoformat(context.partition_key)
    wh, con = warehouse.get(), warehouse.connect()
    rows = build_clip_features(con, wh, ds)
    part = _partition(wh, context.partition_key)
    creation, clips, with_views = con.execute(f"""
        SELECT count(*) FILTER (event_timestamp = created_at), count(DISTINCT clip_id),
               count(*) FILTER (views_7d > 0)
        FROM {part}
    """).fetchall()[0]
    head = con.execute(
        f"SELECT {', '.join(PREVIEW_COLUMNS)} FROM {part} ORDER BY clip_id, event_timestamp LIMIT 5"
    ).fetchall()
    context.log.info(f"clip_features {ds}: {rows} rows over {clips} clips")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "creation_rows": int(creation),
            "day_end_rows": rows - int(creation),
            "clips": int(clips),
            "share_with_views": round(with_views / rows, 4) if rows else 0.0,
            "features": len(FEATURE_COLUMNS),
            "path": dg.MetadataValue.path(str(wh.partition_dir(TABLE, ds))),
            "preview": dg.MetadataValue.md(md_table(PREVIEW_COLUMNS, head)),
        }
    )


def _rate_bounds() -> dict[str, float]:
    """Upper bounds the contract guarantees: completions <= views. Likes+shares+comments
    may exceed views and rewatches may exceed the duration, so those rates are only >= 0."""
    return {
        c: 1.0 if c.startswith("completion_rate") else float("inf")
        for c in ENGAGEMENT_FEATURES
        if not c.startswith("views")
    }


with warnings.catch_warnings():  # partitioned asset checks are a Dagster preview feature
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(
        asset=TABLE,
        name="features_sane",
        blocking=True,
        partitions_def=DAILY_PARTITIONS,
        description="No NULL in features that must have a value, completion rates in [0, 1] "
        "and other rates >= 0, (clip_id, event_timestamp) unique, and a creation row "
        "for every clip created on the day.",
    )
    def features_sane(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        wh, con = warehouse.get(), warehouse.connect()
        ds = context.partition_key
        part = _partition(wh, ds)
        required = [c for c in KEY_COLUMNS + FEATURE_COLUMNS if c not in NULLABLE_FEATURES]
        nulls = " OR ".join(f"{c} IS NULL" for c in required)
        out_of_range = " OR ".join(
            (f"NOT ({c} BETWEEN 0 AND {hi})" if hi != float("inf") else f"NOT ({c} >= 0)")
            for c, hi in _rate_bounds().items()
        )
        counts = {
            "rows": f"SELECT count(*) FROM {part}",
            "rows_with_nulls": f"SELECT count(*) FROM {part} WHERE {nulls}",
            "rows_with_rates_out_of_range": f"SELECT count(*) FROM {part} WHERE {out_of_range}",
            "duplicate_keys": f"SELECT count(*) - count(DISTINCT (clip_id, event_timestamp)) "
            f"FROM {part}",
            "clips_without_creation_row": f"""
                SELECT count(*) FROM {wh.scan("clips", "clip_id, ds")} c
                WHERE c.ds = DATE '{ds}' AND NOT EXISTS (
                    SELECT 1 FROM {part} f
                    WHERE f.clip_id = c.clip_id AND f.event_timestamp = f.created_at)"""
            if wh.exists("clips")
            else "SELECT 0",
        }
        found = {k: int(con.execute(sql).fetchall()[0][0]) for k, sql in counts.items()}
        problems = {k: v for k, v in found.items() if k != "rows" and v}
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                **found,
                "problems": dg.MetadataValue.md(
                    md_table(["problem", "rows"], [[k, v] for k, v in problems.items()])
                    if problems
                    else "none"
                ),
            },
        )


feature_assets = [clip_features]
feature_checks = [features_sane]
