"""The day's online publish: `online_features` and `online_scores`, one multi-asset step.

Both views live in the same Feast hash per clip, so when a run materializes both (the
nightly), each clip's newest features and its champion score go out in one `HSET`
(`feature_repo.online_write.write_views_fast`): one command and one check of the stored
times per clip, not two (bench `online_night`: 1.10x of `redis-cli --pipe` for 7M clips,
against 1.32x for two writes). The rows stream from DuckDB (the newest features per clip
joined with the champion's scores) in 50k-row batches: memory follows the batch.

Either asset can be materialized alone (the step is subsettable). The cost of the shared
step: when `clip_scores` fails (the model registry unreachable, say), the step does not
run, and the day's features wait for the re-run with the scores (the push sensor keeps
publishing early engagement meanwhile). On a SQLite online store the views are written one
after the other, through Feast's own write.
"""

import dagster as dg

from assets.constants import DAILY_PARTITIONS, FEATURES, MODEL_LANE, OWNERS, SCORING
from assets.features import PREVIEW_COLUMNS
from assets.markdown import PREVIEW_ROWS, head_md
from assets.resources import EventsResource, FeastResource, WarehouseResource
from models.core.names import CHAMPION, FEATURES_VIEW, SCORES_VIEW
from models.core.stream import latest_sql, stream
from models.core.warehouse import ident
from models.features.clip_features import FEATURE_COLUMNS

FEATURES_KEY, SCORES_KEY = dg.AssetKey("online_features"), dg.AssetKey("online_scores")
SCORE_COLUMNS = ("score", "model_version", "score_low", "score_high", "interval_level")
SCORE_TS = "score_timestamp"  # the scores' event time in the joined rows


@dg.multi_asset(
    name="online_store",
    specs=[
        dg.AssetSpec(
            FEATURES_KEY,
            group_name=FEATURES,
            owners=OWNERS[FEATURES],
            deps=["clip_features", "feast_registry"],
            kinds={"feast", "redis"},
            description="The day's newest clip_features row per clip, written to the online "
            "store (Redis or SQLite). Idempotent; an older row never overwrites a newer one.",
        ),
        dg.AssetSpec(
            SCORES_KEY,
            group_name=SCORING,
            owners=OWNERS[SCORING],
            deps=["clip_scores", "feast_registry"],
            kinds={"feast", "redis"},
            description="The day's champion scores in the `clip_scores` feature view, so "
            "that an app reads a clip's score with one Feast lookup.",
        ),
    ],
    partitions_def=DAILY_PARTITIONS,
    can_subset=True,
    pool=MODEL_LANE,  # one command per clip for features and score: in the model lane
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5),
)
def online_store(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    feast: FeastResource,
    events: EventsResource,
):
    from feature_repo.online_write import fast_redis, write_stream, write_views_fast

    wh, ds, store = warehouse.get(), context.partition_key, feast.store()
    selected = context.selected_asset_keys
    feats = _features_sql(wh, ds) if FEATURES_KEY in selected else None
    scores = _scores_sql(wh, ds) if SCORES_KEY in selected else None
    if scores is None and SCORES_KEY in selected:
        context.log.info(f"no clip_scores partition {ds}: no scores to publish")
    results = {}
    if feats is not None and scores is not None and fast_redis(store):
        sql, params = _joined(feats, scores)
        views = [(FEATURES_VIEW, {}), (SCORES_VIEW, {"event_timestamp": SCORE_TS})]
        results = write_views_fast(store, stream(wh, sql, params), views)
        context.log.info("features and scores written in one command per clip")
    else:
        for view, part in ((FEATURES_VIEW, feats), (SCORES_VIEW, scores)):
            if part is not None:
                results[view] = write_stream(store, stream(wh, part[0], part[1]), view)
    if FEATURES_KEY in selected:
        yield _features_result(context, wh, ds, results.get(FEATURES_VIEW), feast)
    if SCORES_KEY in selected:
        yield _scores_result(context, wh, ds, results.get(SCORES_VIEW), events)


def _features_sql(wh, ds: str) -> tuple[str, list]:
    cols = ["clip_id", "event_timestamp", *FEATURE_COLUMNS]
    return latest_sql(wh, "clip_features", ds, key="clip_id", ts="event_timestamp",
                      columns=cols), []  # fmt: skip


def _scores_sql(wh, ds: str) -> tuple[str, list] | None:
    """The champion's newest score per clip; None without a scores partition. A partition
    scored before prediction intervals existed has no interval columns: null."""
    if not wh.has("clip_scores", ds):
        return None
    have = set(wh.read("clip_scores", ds, limit=0).column_names)
    inner = latest_sql(wh, "clip_scores", ds, key="clip_id", ts="event_timestamp",
                       where="model_alias = ?")  # fmt: skip
    cols = ", ".join(ident(c) if c in have else f"CAST(NULL AS DOUBLE) AS {ident(c)}"
                     for c in ("clip_id", "event_timestamp", *SCORE_COLUMNS))  # fmt: skip
    return f"SELECT {cols} FROM ({inner})", [CHAMPION, CHAMPION]


def _joined(feats: tuple[str, list], scores: tuple[str, list]) -> tuple[str, list]:
    """Each clip's newest features beside its champion score (either may be missing)."""
    score_cols = ", ".join(f"s.{c}" for c in SCORE_COLUMNS)
    feature_cols = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    sql = (
        f"SELECT coalesce(f.clip_id, s.clip_id) AS clip_id, f.event_timestamp, {feature_cols},"
        f" {score_cols}, s.event_timestamp AS {SCORE_TS} FROM ({feats[0]}) f"
        f" FULL OUTER JOIN ({scores[0]}) s ON f.clip_id = s.clip_id"
    )
    return sql, [*feats[1], *scores[1]]


def _features_result(context, wh, ds: str, res, feast: FeastResource) -> dg.MaterializeResult:
    source_rows = wh.con.execute(
        f"SELECT count(*) FROM {wh.partition_scan('clip_features', ds)}"
    ).fetchall()[0][0]
    keys_per_s = res.written / res.seconds if res.seconds else 0.0
    context.log.info(
        f"online features: {res.written} keys written, {res.skipped} not newer, "
        f"{res.seconds:.2f}s ({res.method})"
    )
    return dg.MaterializeResult(
        asset_key=FEATURES_KEY,
        metadata={
            "dagster/row_count": res.written,
            "source_rows": int(source_rows),
            "clips": res.rows,
            "skipped_not_newer": res.skipped,
            "corrected": res.corrected,
            "seconds": round(res.seconds, 3),
            "keys_per_s": round(keys_per_s),
            "writer": res.method,
            "online_store": feast.online_kind(),
            "preview": dg.MetadataValue.md(
                head_md(wh.read("clip_features", ds, limit=PREVIEW_ROWS), PREVIEW_COLUMNS)
            ),
        },
    )


def _scores_result(context, wh, ds: str, res, events: EventsResource) -> dg.MaterializeResult:
    if res is None:
        return dg.MaterializeResult(
            asset_key=SCORES_KEY, metadata={"dagster/row_count": 0, "note": "no scores"}
        )
    head = wh.read("clip_scores", ds, where="model_alias = ?", params=[CHAMPION],
                   limit=PREVIEW_ROWS)  # fmt: skip
    versions = wh.con.execute(
        f"SELECT DISTINCT model_version FROM {wh.partition_scan('clip_scores', ds)} "
        "WHERE model_alias = ? ORDER BY 1",
        [CHAMPION],
    ).fetchall()
    events.publish(
        "scores_published",
        {"ds": ds, "rows": res.written, "model_versions": [v for (v,) in versions]},
    )
    return dg.MaterializeResult(
        asset_key=SCORES_KEY,
        metadata={
            "dagster/row_count": res.written,
            "clips": res.rows,
            "skipped_not_newer": res.skipped,
            "corrected": res.corrected,
            "seconds": round(res.seconds, 3),
            "writer": res.method,
            "preview": dg.MetadataValue.md(
                head_md(head, ["clip_id", "event_timestamp", *SCORE_COLUMNS])
            ),  # fmt: skip
        },
    )


online_store_assets = [online_store]
