"""Features: the daily point-in-time `clip_features` partition and its blocking sanity check.

The asset calls models.features.clip_features.build_clip_features for the partition's day; the check
reads the written partition back and stops downstream assets (training set, scoring)
when it holds NULLs, NaN or infinite values (named per feature), rates out of range,
duplicate rows or misses a clip of the day.
"""

import warnings
from datetime import date, timedelta

import dagster as dg

from assets.constants import DAILY_PARTITIONS, DATA_LANE, FEATURES, OWNERS
from assets.markdown import md_table
from assets.resources import WarehouseResource
from models.features import creator_state
from models.features.checks import non_finite_counts, sanity_counts, summary
from models.features.clip_features import (
    FEATURE_COLUMNS,
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


@dg.asset(
    name=TABLE,
    group_name=FEATURES,
    owners=OWNERS[FEATURES],
    partitions_def=DAILY_PARTITIONS,
    deps=["clips", "engagement", "labels"],
    pool=DATA_LANE,
    kinds={"duckdb", "parquet"},
    description="Point-in-time clip features, one row per (clip_id, event_timestamp): a "
    "creation row per clip created on the day and a day-end row per clip in its first 7 "
    "days. Clip attributes, derived attributes, 1/3/7-day engagement and creator history "
    "known strictly before event_timestamp (from the per-creator running state of the day "
    "before, table `creator_state`, rebuilt from the first day whose inputs changed).",
)
def clip_features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    ds = date.fromisoformat(context.partition_key)
    wh = warehouse.get()
    rebuilt = creator_state.ensure(wh.con, wh, ds - timedelta(days=1))
    if rebuilt:
        context.log.info(
            f"creator_state rebuilt for {len(rebuilt)} day(s), {rebuilt[0]} to {rebuilt[-1]} "
            "(missing, or their inputs changed since)"
        )
    rows = build_clip_features(wh.con, wh, ds)
    s = summary(wh, ds, PREVIEW_COLUMNS)
    context.log.info(f"clip_features {ds}: {rows} rows over {s['clips']} clips")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "creation_rows": s["creation_rows"],
            "day_end_rows": rows - s["creation_rows"],
            "clips": s["clips"],
            "share_with_views": round(s["rows_with_views"] / rows, 4) if rows else 0.0,
            "features": len(FEATURE_COLUMNS),
            "creator_state_rebuilt_days": len(rebuilt),
            "path": dg.MetadataValue.path(wh.location(TABLE, ds)),
            "preview": dg.MetadataValue.md(md_table(PREVIEW_COLUMNS, s["head"])),
        }
    )


with warnings.catch_warnings():  # partitioned asset checks are a Dagster preview feature
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(
        asset=TABLE,
        name="features_sane",
        blocking=True,
        partitions_def=DAILY_PARTITIONS,
        description="No NULL in features that must have a value, no NaN or infinity in any "
        "feature (the rows counted per feature), completion rates in [0, 1] "
        "and other rates >= 0, (clip_id, event_timestamp) unique, and a creation row "
        "for every clip created on the day.",
    )
    def features_sane(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        wh = warehouse.get()
        found = sanity_counts(wh, context.partition_key)
        non_finite = non_finite_counts(wh, context.partition_key)
        problems = {k: v for k, v in found.items() if k != "rows" and v}
        named = ", ".join(f"{c} ({n} rows)" for c, n in non_finite.items())
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"non-finite values in {named}" if named else None,
            metadata={
                **found,
                "non_finite": dg.MetadataValue.md(
                    md_table(["feature", "rows"], [[c, n] for c, n in non_finite.items()])
                    if non_finite
                    else "none"
                ),
                "problems": dg.MetadataValue.md(
                    md_table(["problem", "rows"], [[k, v] for k, v in problems.items()])
                    if problems
                    else "none"
                ),
            },
        )


feature_assets = [clip_features]
feature_checks = [features_sane]
