"""Feast: the registry applied from code, the daily online materialization, and the
point-in-time training set."""

import time
from typing import Literal

import dagster as dg
from pydantic import Field

from assets.constants import (
    DAILY_PARTITIONS,
    FEATURES,
    MODEL_LANE,
    OWNERS,
    TRAINING,
    day_end,
)
from assets.features import PREVIEW_COLUMNS
from assets.markdown import PREVIEW_ROWS, head_md, md_table
from assets.resources import FeastResource, MlflowResource, WarehouseResource
from models.core.names import FEATURE_SERVICE
from models.features.clip_features import FEATURE_COLUMNS
from models.features.training_set import (
    ENTITY_COLUMNS,
    KEYS,
    build_window,
    compare,
    stage_window,
    training_set_duckdb,
    training_set_feast,
    window_sql,
)

MODEL_OP = "clip_quality_model"  # whose config (ModelConfig) holds the window and policy


@dg.asset(
    group_name=FEATURES,
    owners=OWNERS[FEATURES],
    partitions_def=DAILY_PARTITIONS,
    pool=MODEL_LANE,  # Feast rewrites its registry file in place: not beside its readers
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
    pool=MODEL_LANE,
    kinds={"duckdb", "feast"},
    description="The labelled clips of the training window (sampled to the row budget): "
    "their scoring moments up to the end of the day, features as of each moment (point in "
    "time), target = newest label known at the cutoff. Built when the model trains today.",
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    warehouse: WarehouseResource,
    feast: FeastResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    wh = warehouse.get()
    con = wh.con
    ds, cutoff = context.partition_key, day_end(context.partition_key)
    window_days, budget, why = _plan(context, mlflow, cutoff)
    if why is None:
        context.log.info("the model does not train today: no training set built")
        return dg.MaterializeResult(
            metadata={"built": False, "reason": "the model does not train today (its policy)"}
        )
    t0 = time.perf_counter()
    store = None
    if config.method == "feast" or config.verify_sample_clips:
        store = feast.store()
        if copied := wh.feast_offline(["clip_features"]):  # an Iceberg warehouse's mirror
            context.log.info(f"Feast's offline mirror of clip_features: {copied} new files")
    if config.method == "feast":
        meta = stage_window(con, wh, cutoff, window_days, budget)
        if meta is not None:
            entities = con.sql(window_sql(con, wh, cutoff, window_days, None)).to_arrow_table()
            table = training_set_feast(store, entities, FEATURE_SERVICE)
            meta["train_rows_built"] = str(
                wh.write("training_set", ds, table, keys=KEYS, metadata=meta)
            )
    else:
        meta = build_window(con, wh, ds, cutoff, window_days, budget, FEATURE_COLUMNS)
    build_s = time.perf_counter() - t0
    out = {"built": True, "why": why, "cutoff": cutoff.isoformat(), "method": config.method}
    if meta is None:
        context.log.info("no labelled clips yet: empty training set")
        out.update({"dagster/row_count": 0, "preview": dg.MetadataValue.md("no labels yet")})
        return dg.MaterializeResult(metadata={**out, "build_seconds": round(build_s, 3)})
    if meta["train_rows_built"] != "0":
        out.update(_verify(con, wh, store, ds, config))
    table = wh.read("training_set", ds, limit=PREVIEW_ROWS)
    stats = con.execute(
        f"SELECT count(DISTINCT clip_id), avg(quality_score) FROM {wh.partition_scan('training_set', ds)}"
    ).fetchall()[0]
    out.update(
        {
            **meta,
            "build_seconds": round(build_s, 3),
            "dagster/row_count": int(meta["train_rows_built"]),
            "clips": int(stats[0]),
            "label_mean": round(float(stats[1]), 3) if stats[1] is not None else None,
            "preview": dg.MetadataValue.md(
                head_md(
                    table, ["clip_id", "event_timestamp", "quality_score", *PREVIEW_COLUMNS[2:]]
                )
            ),
            "path": dg.MetadataValue.path(wh.location("training_set", ds)),
        }
    )
    return dg.MaterializeResult(metadata={k: v for k, v in out.items() if v is not None})


def _model_config(context: dg.AssetExecutionContext) -> dict:
    """`clip_quality_model`'s config in this run as that op receives it: the run config
    resolved against the job (a job's own default config, such as `training_job`'s
    `force_retrain`, and the fields' defaults included); {} when the job has no such op."""
    resolved = context.op_execution_context.get_step_execution_context().resolved_run_config
    op = resolved.ops.get(MODEL_OP)
    return dict(op.config or {}) if op is not None else {}


def _plan(context: dg.AssetExecutionContext, mlflow: MlflowResource, cutoff) -> tuple:
    """(window days, row budget, why the set is built or None): the window and budget are
    `clip_quality_model`'s config in this run (`ModelConfig`, one place for them), and the
    set is built when that model trains today under its policy, or when this run does not
    materialize the model (the set was asked for alone). When the registry cannot say
    whether the model trains, the set is built (the model then reports the registry)."""
    from models.training.lifecycle import Policy, champion, retrain_reason

    raw = _model_config(context)
    policy = Policy(
        **{k: raw[k] for k in ("retrain_every_days", "force_retrain", "retrain_trigger",
                               "train_window_days", "train_row_budget") if k in raw}
    )  # fmt: skip
    window = (policy.train_window_days, policy.train_row_budget)
    if dg.AssetKey(MODEL_OP) not in context.job_def.asset_layer.selected_asset_keys:
        return (*window, "asked for without the model")
    try:
        _, tags = champion(mlflow.client())
    except Exception as e:  # noqa: BLE001 - unknown: build, the model reports the registry
        context.log.warning(f"registry unreadable ({type(e).__name__}): training set built")
        return (*window, f"the registry could not say ({type(e).__name__})")
    return (*window, retrain_reason(tags, cutoff, policy))


def _verify(con, wh, store, ds: str, config: TrainingSetConfig) -> dict:
    """Re-build a sample of the partition's clips (the first by clip_id) the other way and
    require row-for-row agreement."""
    if not config.verify_sample_clips or store is None:
        return {}
    part = wh.partition_scan("training_set", ds)
    mine = con.sql(
        f"SELECT * FROM {part} WHERE clip_id IN (SELECT DISTINCT clip_id FROM {part} "
        "ORDER BY clip_id LIMIT $n)",
        params={"n": config.verify_sample_clips},
    ).to_arrow_table()
    sample = mine.select(ENTITY_COLUMNS)
    other = (
        training_set_duckdb(con, wh, sample, FEATURE_COLUMNS)
        if config.method == "feast"
        else training_set_feast(store, sample, FEATURE_SERVICE)
    )
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


feature_store_assets = [feast_registry, training_set]
