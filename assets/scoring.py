"""Batch scoring with champion and challenger, and the champion's scores online."""

import dagster as dg
import pyarrow as pa

from assets.constants import DAILY_PARTITIONS, OWNERS, SCORING, day_end
from assets.markdown import head_md
from assets.resources import MlflowResource, WarehouseResource
from models.core.names import ALIASES


@dg.asset(
    group_name=SCORING,
    owners=OWNERS[SCORING],
    partitions_def=DAILY_PARTITIONS,
    deps=["clip_features", "clip_quality_model"],
    kinds={"xgboost", "parquet"},
    description="Every clip created in the last 7 days, scored with features as of the end "
    "of the day, by the champion and (shadow) the challenger, loaded by alias.",
)
def clip_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from models.serving.scoring import score
    from models.training import intervals
    from models.training.registry import MODEL_NAME, load_by_alias, load_document

    ds = context.partition_key
    wh = warehouse.get()
    end = day_end(ds)
    rows = wh.read("clip_features", ds, where="event_timestamp = ?", params=[end])
    outs, meta = [], {}
    for alias in ALIASES:
        model = load_by_alias(alias, mlflow.uri)
        if model is None or rows.num_rows == 0:
            continue
        preds = score(model, rows)
        n = rows.num_rows
        # the interval at DEFAULT_LEVEL by the clip's age; null for a model registered
        # before intervals were calibrated (it has no intervals.json)
        cal = load_document(model.version, intervals.INTERVALS_FILE, mlflow.uri)
        level = intervals.DEFAULT_LEVEL if cal is not None else None
        low = high = pa.nulls(n, pa.float64())
        if cal is not None:
            lo, hi = intervals.bounds(cal, rows.column("clip_age_hours"), preds, level)
            low, high = pa.array(lo), pa.array(hi)
        at = pa.scalar(end, pa.timestamp("us", tz="UTC"))
        outs.append(
            pa.table(
                {  # the same value on every row: `pa.repeat`, not a Python list of n values
                    "clip_id": rows.column("clip_id"),
                    "score": pa.array(preds.astype("float64")),
                    "score_low": low,
                    "score_high": high,
                    "interval_level": pa.repeat(pa.scalar(level, pa.float64()), n),
                    "model_name": pa.repeat(pa.scalar(MODEL_NAME, pa.string()), n),
                    "model_version": pa.repeat(pa.scalar(str(model.version), pa.string()), n),
                    "model_alias": pa.repeat(pa.scalar(alias, pa.string()), n),
                    "scored_at": pa.repeat(at, n),
                    "event_timestamp": pa.repeat(at, n),
                }
            )
        )
        meta[f"{alias}_version"] = str(model.version)
        meta[f"{alias}_mean_score"] = round(float(preds.mean()), 3)
    if not outs:
        context.log.info("no champion yet: nothing scored")
        meta["dagster/row_count"] = 0
        return dg.MaterializeResult(metadata=meta)
    table = pa.concat_tables(outs)
    n = wh.write("clip_scores", ds, table, keys=("model_alias", "clip_id"))
    meta.update(
        {
            "dagster/row_count": n,
            "clips": rows.num_rows,
            "preview": dg.MetadataValue.md(
                head_md(table, ["clip_id", "score", "model_alias", "model_version", "scored_at"])
            ),
            "path": dg.MetadataValue.path(wh.location("clip_scores", ds)),
        }
    )
    return dg.MaterializeResult(metadata=meta)


scoring_assets = [clip_scores]
