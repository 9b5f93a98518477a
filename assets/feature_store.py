"""Feast: the registry applied from code, the daily online materialization, and the
point-in-time training set."""

import time
from typing import Literal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from assets.constants import DAILY_PARTITIONS, FEATURES, OWNERS, TRAINING, day_end
from assets.features import PREVIEW_COLUMNS
from assets.markdown import head_md, md_table
from assets.resources import FeastResource, WarehouseResource
from models.core.names import FEATURE_SERVICE
from models.features.clip_features import FEATURE_COLUMNS
from models.features.training_set import (
    compare,
    entity_rows,
    training_set_duckdb,
    training_set_feast,
)


@dg.asset(
    group_name=FEATURES,
    owners=OWNERS[FEATURES],
    partitions_def=DAILY_PARTITIONS,
    kinds={"feast"},
    description="`feast apply` of feature_repo/: the registry always matches the code that "
    "runs (entities, sources, views, the clip_quality_v1 service). Idempotent.",
)
def feast_registry(context: dg.AssetExecutionContext, feast: FeastResource) -> dg.MaterializeResult:
    from feature_repo.config import apply

    store = feast.store()
    applied = apply(store)
    context.log.info(f"feast apply: {applied}")
    views = [
        [fv.name, ", ".join(fv.entities), len(fv.features), str(fv.ttl), fv.batch_source.path]
        for fv in sorted(store.list_feature_views(), key=lambda v: v.name)
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(views),
            "preview": dg.MetadataValue.md(
                md_table(["feature view", "entities", "features", "ttl", "source"], views)
            ),
            "feature_views": ", ".join(applied["feature_views"]),
            "feature_services": ", ".join(applied["feature_services"]),
            "entities": ", ".join(applied["entities"]),
            "deleted": ", ".join(applied["deleted"]) or "none",
            "online_store": feast.online_kind(),
        }
    )


@dg.asset(
    group_name=FEATURES,
    owners=OWNERS[FEATURES],
    partitions_def=DAILY_PARTITIONS,
    deps=["clip_features", "feast_registry"],
    kinds={"feast", "redis"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5),
    description="The day's newest clip_features row per clip, written to the online store "
    "(Redis or SQLite). Idempotent; an older row never overwrites a newer one.",
)
def online_features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, feast: FeastResource
) -> dg.MaterializeResult:
    from feature_repo.online_write import write_online

    rows = warehouse.get().read("clip_features", context.partition_key)
    res = write_online(feast.store(), rows, "clip_features")
    keys_per_s = res.written / res.seconds if res.seconds else 0.0
    context.log.info(
        f"online: {res.written} keys written, {res.skipped} not newer, "
        f"{res.seconds:.2f}s ({res.method})"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": res.written,
            "source_rows": rows.num_rows,
            "clips": res.rows,
            "skipped_not_newer": res.skipped,
            "seconds": round(res.seconds, 3),
            "keys_per_s": round(keys_per_s),
            "writer": res.method,
            "online_store": feast.online_kind(),
            "preview": dg.MetadataValue.md(head_md(rows, PREVIEW_COLUMNS)),
        }
    )


class TrainingSetConfig(dg.Config):
    """How the point-in-time training set is built (see models/features/training_set.py)."""

    # an enum in the launchpad: "duckdb" (ASOF JOIN) or "feast" (get_historical_features)
    method: Literal["duckdb", "feast"] = "duckdb"
    verify_sample_clips: int = Field(default=200, ge=0)  # re-built through Feast; 0: off


@dg.asset(
    group_name=TRAINING,
    owners=OWNERS[TRAINING],
    partitions_def=DAILY_PARTITIONS,
    deps=["clip_features", "labels", "feast_registry"],
    kinds={"duckdb", "feast"},
    description="Every labelled clip's scoring moments up to the end of the day, features "
    "as of each moment (point in time), target = newest label known at the cutoff.",
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    warehouse: WarehouseResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    wh = warehouse.get()
    con = wh.con
    cutoff = day_end(context.partition_key)
    entities = entity_rows(con, wh, cutoff) if wh.exists("labels") else None
    if entities is None or entities.num_rows == 0:
        context.log.info("no labelled clips yet: empty training set")
        entities = None
    t0 = time.perf_counter()
    store = feast.store() if (config.method == "feast" or config.verify_sample_clips) else None
    if entities is None:
        table = pa.table({})
    elif config.method == "feast":
        table = training_set_feast(store, entities, FEATURE_SERVICE)
    else:
        table = training_set_duckdb(con, wh, entities, FEATURE_COLUMNS)
    build_s = time.perf_counter() - t0
    meta = {
        "cutoff": cutoff.isoformat(),
        "method": config.method,
        "build_seconds": round(build_s, 3),
    }
    if entities is not None:
        meta.update(_verify(con, wh, store, entities, table, config))
        n = wh.write(
            "training_set", context.partition_key, table, keys=("clip_id", "event_timestamp")
        )
        meta.update(
            {
                "dagster/row_count": n,
                "clips": len(set(entities.column("clip_id").to_pylist())),
                "label_mean": round(float(pc.mean(entities.column("quality_score")).as_py()), 3),
                "preview": dg.MetadataValue.md(
                    head_md(
                        table, ["clip_id", "event_timestamp", "quality_score", *PREVIEW_COLUMNS[2:]]
                    )
                ),
                "path": dg.MetadataValue.path(wh.location("training_set", context.partition_key)),
            }
        )
    else:
        meta.update(
            {"dagster/row_count": 0, "preview": dg.MetadataValue.md("no labelled clips yet")}
        )
    return dg.MaterializeResult(metadata=meta)


def _verify(con, wh, store, entities, table, config: TrainingSetConfig) -> dict:
    """Re-build a sample of clips the other way and require row-for-row agreement."""
    if not config.verify_sample_clips or store is None:
        return {}
    clips = sorted(set(entities.column("clip_id").to_pylist()))[: config.verify_sample_clips]
    mask = pc.is_in(entities.column("clip_id"), pa.array(clips))
    sample = entities.filter(mask)
    other = (
        training_set_duckdb(con, wh, sample, FEATURE_COLUMNS)
        if config.method == "feast"
        else training_set_feast(store, sample, FEATURE_SERVICE)
    )
    mine = table.filter(pc.is_in(table.column("clip_id"), pa.array(clips)))
    diffs = compare(mine.select(other.column_names), other)
    if diffs:
        raise dg.Failure(
            description=f"training set: DuckDB and Feast disagree on {len(diffs)} values",
            metadata={"first_differences": dg.MetadataValue.md("\n".join(diffs[:20]))},
        )
    return {
        "verified_rows": sample.num_rows,
        "verified_against": ("duckdb" if config.method == "feast" else "feast"),
    }


feature_store_assets = [feast_registry, online_features, training_set]
