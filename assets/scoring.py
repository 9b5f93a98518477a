"""Batch scoring with champion and challenger, and the champion's scores online."""

import dagster as dg
import numpy as np
import pyarrow as pa

from assets.constants import DAILY_PARTITIONS, MODEL_LANE, OWNERS, SCORING, day_end
from assets.markdown import head_md
from assets.resources import MlflowResource, WarehouseResource
from models.core.names import ALIASES, FEATURE_COLUMNS


@dg.asset(
    group_name=SCORING,
    owners=OWNERS[SCORING],
    partitions_def=DAILY_PARTITIONS,
    # after the day's A/B decision, which may promote the challenger (as in one run)
    deps=["clip_features", "clip_quality_model", "ab_results"],
    pool=MODEL_LANE,
    kinds={"xgboost", "parquet"},
    description="Every clip created in the last 7 days, scored with features as of the end "
    "of the day, by the champion and (shadow) the challenger, loaded by alias.",
)
def clip_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from models.core.stream import stream
    from models.core.warehouse import ident
    from models.serving.scoring import BATCH_ROWS, score
    from models.training import intervals
    from models.training.registry import MODEL_NAME, load_by_alias, load_document

    ds = context.partition_key
    wh = warehouse.get()
    end = day_end(ds)
    if not wh.has("clip_features", ds):
        raise FileNotFoundError(f"no partition ds={ds} of table clip_features")
    models = {a: m for a in ALIASES if (m := load_by_alias(a, mlflow.uri)) is not None}
    # streamed: a batch of features at a time, scored by every model, and only the clip
    # ids, ages and scores kept (the day's 7M rows of 36 features never all in memory)
    cols = ", ".join(ident(c) for c in ["clip_id", *FEATURE_COLUMNS])
    sql = f"SELECT {cols} FROM {wh.partition_scan('clip_features', ds)} WHERE event_timestamp = ?"
    ids, ages, preds = [], [], {alias: [] for alias in models}
    for batch in stream(wh, sql, [end], BATCH_ROWS) if models else ():
        # copies: a column imported from DuckDB holds its whole batch's memory
        ids.append(pa.concat_arrays([batch.column("clip_id")]))
        ages.append(pa.concat_arrays([batch.column("clip_age_hours")]))
        rows = pa.Table.from_batches([batch])
        for alias, model in models.items():
            preds[alias].append(score(model, rows))
    n = sum(len(a) for a in ids)
    clip_ids = pa.chunked_array(ids, pa.string())
    outs, meta = [], {}
    for alias, model in models.items() if n else ():
        scores = np.concatenate(preds[alias])
        # the interval at DEFAULT_LEVEL by the clip's age; null for a model registered
        # before intervals were calibrated (it has no intervals.json)
        cal = load_document(model.version, intervals.INTERVALS_FILE, mlflow.uri)
        level = intervals.DEFAULT_LEVEL if cal is not None else None
        low = high = pa.nulls(n, pa.float64())
        if cal is not None:
            age = pa.chunked_array(ages, pa.float64())
            lo, hi = intervals.bounds(cal, age, scores, level)
            low, high = pa.array(lo), pa.array(hi)
        at = pa.scalar(end, pa.timestamp("us", tz="UTC"))
        outs.append(
            pa.table(
                {  # the same value on every row: `pa.repeat`, not a Python list of n values
                    "clip_id": clip_ids,
                    "score": pa.array(scores.astype("float64")),
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
        meta[f"{alias}_mean_score"] = round(float(scores.mean()), 3)
    if not outs:
        context.log.info("no champion yet: nothing scored" if not models else "no clip to score")
        meta["dagster/row_count"] = 0
        return dg.MaterializeResult(metadata=meta)
    table = pa.concat_tables(outs)
    written = wh.write("clip_scores", ds, table, keys=("model_alias", "clip_id"))
    meta.update(
        {
            "dagster/row_count": written,
            "clips": n,
            "preview": dg.MetadataValue.md(
                head_md(table, ["clip_id", "score", "model_alias", "model_version", "scored_at"])
            ),
            "path": dg.MetadataValue.path(wh.location("clip_scores", ds)),
        }
    )
    return dg.MaterializeResult(metadata=meta)


scoring_assets = [clip_scores]
