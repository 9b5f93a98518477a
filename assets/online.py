"""The online push op: recompute the early-engagement features of the clips in new landing
engagement files (models/features/fresh.py) and write them through the feature views fed by
the `clip_features_push` push source, never over a newer row. `online_push_sensor`
(pipelines/sensors/online_push.py) decides when; `online_push_job` runs it."""

import dagster as dg

from assets.resources import FeastResource, LandingResource, WarehouseResource
from models.core.contract import ENGAGEMENT
from models.ingest.landing import list_files

PUSH_SOURCE = "clip_features_push"


class OnlinePushConfig(dg.Config):
    """Any string is harmless here: a path is read only when it equals a file that the
    landing listing finds (and does not refuse); anything else is ignored and counted."""

    files: list[str]  # absolute paths of landing engagement files


@dg.op
def push_fresh_features(
    context: dg.OpExecutionContext,
    config: OnlinePushConfig,
    warehouse: WarehouseResource,
    landing: LandingResource,
    feast: FeastResource,
) -> None:
    import redis

    from feature_repo.online_write import write_online
    from models.features.fresh import fresh_features

    by_path = {f.path: f for f in list_files(landing.path, ENGAGEMENT)}
    files = [by_path[p] for p in config.files if p in by_path and not by_path[p].refused]
    if len(files) < len(config.files):
        context.log.warning(f"{len(config.files) - len(files)} path(s) not in the landing dir")
    wh = warehouse.get()
    rows = fresh_features(wh.con, wh, files)
    store = feast.store()
    views = [
        fv.name
        for fv in store.list_feature_views()
        if fv.stream_source is not None and fv.stream_source.name == PUSH_SOURCE
    ]
    written = skipped = corrected = 0
    try:
        for view in views:
            if rows.num_rows:
                res = write_online(store, rows, view)
                written, skipped = written + res.written, skipped + res.skipped
                corrected += res.corrected
    except (redis.RedisError, OSError) as e:  # redis-py's errors are not builtin ones
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=10) from e
    context.log.info(
        f"pushed {written} clips to {views} ({corrected} of them new values at the stored "
        f"time; {skipped} older or unchanged) from {len(files)} file(s)"
    )
