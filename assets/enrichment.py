"""Enrichment from external APIs: source-video metadata for the day's clips.

`video_metadata` asks the integration hub (models.integrations.metadata_api) about every distinct
`video_id` of the day's `clips` partition and writes what it answers; videos it could not
get (not found, or a batch that kept failing) go to `quarantine` as rows of table
`video_metadata`, in their own file of the day's quarantine partition, beside the ingest
tables' files. Re-running a day replaces both.

When the API is down (its health check fails after retries, or every batch failed) the
asset fails with the reason and writes nothing, so the previous partition stays and the
run shows the failure; nothing downstream depends on it, so the rest of `nightly_job` goes
on. Materialize the day again once the API is back. When the API is not configured (no
`CLIPFLOW_METADATA_URL`) the asset succeeds with `configured: False` and writes nothing.
"""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa

from assets.constants import DAILY_PARTITIONS, DATA_LANE, INGEST, OWNERS
from assets.markdown import md_table
from assets.resources import VideoMetadataResource, WarehouseResource
from models.core.warehouse import Warehouse
from models.ingest.day import QUARANTINE
from models.ingest.quarantine import quarantine_rows
from models.integrations.metadata_api import NOT_FOUND, URL_ENV, VIDEOS_PATH

TABLE = "video_metadata"
SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("title", pa.string()),
        ("channel", pa.string()),
        ("view_count", pa.int64()),
        ("like_count", pa.int64()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
    ]
)
PREVIEW_ROWS = 5


def _day_video_ids(wh: Warehouse, ds: str) -> list[str]:
    if not wh.has("clips", ds):
        raise dg.Failure(f"no clips partition for {ds}: materialize clips first")
    ids = wh.read("clips", ds, columns=["video_id"]).column("video_id")
    return sorted({v for v in ids.to_pylist() if v is not None})


@dg.asset(
    partitions_def=DAILY_PARTITIONS,
    group_name=INGEST,
    owners=OWNERS[INGEST],
    deps=["clips"],
    pool=DATA_LANE,
    kinds={"api", "duckdb"},
    description="Title, channel, view and like counts of the source videos of the day's "
    "clips, from the integration hub's metadata API; videos it cannot give go to "
    "`quarantine`. Does nothing when CLIPFLOW_METADATA_URL is not set.",
)
def video_metadata(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    metadata_api: VideoMetadataResource,
) -> dg.MaterializeResult:
    if not metadata_api.configured:
        context.log.info(f"video metadata API not configured ({URL_ENV} unset): skipped")
        return dg.MaterializeResult(
            metadata={
                "configured": False,
                "dagster/row_count": 0,
                "note": f"skipped: {URL_ENV} is not set (no metadata API configured)",
            }
        )
    ds, api = context.partition_key, metadata_api.url
    wh = warehouse.get()
    ids = _day_video_ids(wh, ds)
    problem = metadata_api.health() if ids else None  # a day without clips needs no API
    if problem:
        raise dg.Failure(
            f"video metadata API {api} is unhealthy: {problem}",
            metadata={"api": dg.MetadataValue.url(api), "videos": len(ids)},
        )
    rows, failures = metadata_api.fetch(ids)
    if ids and not rows and all(r != NOT_FOUND for r in failures.values()):
        first = next(iter(failures.values()))
        raise dg.Failure(
            f"video metadata API {api} failed every batch of {ds}: {first}",
            metadata={"api": dg.MetadataValue.url(api), "videos": len(ids)},
        )

    written = wh.write(TABLE, ds, pa.Table.from_pylist(rows, schema=SCHEMA))
    failed = quarantine_rows(TABLE, api + VIDEOS_PATH, failures, "video_id", datetime.now(UTC))
    wh.write(QUARANTINE, ds, failed, name=TABLE)
    if failures:
        context.log.warning(
            f"{len(failures)} of {len(ids)} videos quarantined: {_counts(failures)}"
        )
    context.log.info(f"{TABLE} {ds}: {written} videos from {api}, {len(failures)} failed")
    preview = [
        [r["video_id"], r["title"], r["channel"], r["view_count"], r["like_count"]]
        for r in rows[:PREVIEW_ROWS]
    ]
    meta = {
        "configured": True,
        "dagster/row_count": written,
        "failed": len(failures),
        "api": dg.MetadataValue.url(api),
        "path": dg.MetadataValue.path(wh.location(TABLE, ds)),
        "preview": dg.MetadataValue.md(
            md_table(["video_id", "title", "channel", "view_count", "like_count"], preview)
        ),
    }
    if failures:
        meta["failure_reasons"] = dg.MetadataValue.md(
            md_table(["reason", "videos"], [[r, n] for r, n in _counts(failures).items()])
        )
    return dg.MaterializeResult(metadata=meta)


def _counts(failures: dict[str, str]) -> dict[str, int]:
    return dict(Counter(failures.values()).most_common())


enrichment_assets = [video_metadata]
