"""Hand-made warehouse rows for the feature tests (clips, engagement, labels)."""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
from support import ARROW_TYPES, GOOD_CLIP, GOOD_ENGAGEMENT, ts

from models.core.contract import TABLES
from models.core.warehouse import connect

END = "23:59:59.999999"


def put(wh, table: str, rows: list[dict]) -> None:
    """Write `rows` as the warehouse partitions of `table` (one per day of its timestamp)."""
    spec = TABLES[table]
    schema = pa.schema([pa.field(f.name, ARROW_TYPES[f.type]) for f in spec.fields])
    days = defaultdict(list)
    for r in rows:
        days[r[spec.partition_by].date()].append(r)
    for day, rs in days.items():
        with connect() as writer:
            writer.register("_rows", pa.Table.from_pylist(rs, schema=schema))
            wh.write_partition(writer, table, day, "SELECT * FROM _rows")


def clip(cid: str, at: str, creator: str = "k1", **kw) -> dict:
    return {**GOOD_CLIP, "clip_id": cid, "creator_id": creator, "created_at": ts(at), **kw}


def window(cid: str, at: str, views: int, **kw) -> dict:
    counts = {"likes": 0, "shares": 0, "comments": 0, "completions": 0, "watch_time_s": 0.0}
    return {
        **GOOD_ENGAGEMENT,
        **counts,
        "clip_id": cid,
        "event_timestamp": ts(at),
        "views": views,
        **kw,
    }


def label(cid: str, at: str, score: float) -> dict:
    return {"clip_id": cid, "labeled_at": ts(at), "quality_score": score}
