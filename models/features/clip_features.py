"""Point-in-time clip features, one partition a day, in DuckDB.

The grain is (clip_id, event_timestamp): every row describes a clip as known at
`event_timestamp`, and partition `ds` holds exactly the rows whose event_timestamp falls
on ds (UTC). Rows of ds: one *creation* row per clip created on ds (event_timestamp =
created_at) and one *day-end* row per clip created on ds-6 .. ds (event_timestamp =
ds 23:59:59.999999), so a clip is described at birth and after each of its first 7 days.

| feature | type | meaning |
|---|---|---|
| duration_s .. topic | clip attributes | as in the contract's clips table |
| duration_min | DOUBLE | duration_s / 60 |
| resolution_rank | BIGINT | 480p=1, 720p=2, 1080p=3, 1440p=4, 4K=5 |
| bitrate_per_pixel | DOUBLE | bitrate_kbps * 1000 / (width * height * fps), 16:9 pixel counts |
| is_vertical | BIGINT | 1 for 9:16 and 4:5, else 0 |
| clip_age_hours | DOUBLE | hours from created_at to event_timestamp |
| views_{k}d | BIGINT | views in windows ending <= event_timestamp and <= created_at + k days |
| completion_rate_{k}d | DOUBLE | completions / views over those windows (0 without views) |
| engagement_rate_{k}d | DOUBLE | (likes + shares + comments) / views (0 without views) |
| watch_ratio_{k}d | DOUBLE | watch_time_s / (views * duration_s) (0 without views) |
| creator_clip_count | BIGINT | the creator's clips created strictly before event_timestamp |
| creator_label_count | BIGINT | the creator's clips with a label known strictly before it |
| creator_label_mean | DOUBLE | mean of those clips' newest known labels (NULL when none) |
| creator_mean_early_views | DOUBLE | mean first-24h views of the creator's clips whose first 24 h |
| | | ended strictly before event_timestamp (NULL when none) |
| sample_key | UBIGINT | not a feature: the training sample's key, the first 64 bits of md5(clip_id); |
| | | files are sorted by it (`SORT_KEYS`) so a sample reads few row groups (#19) |

(k in 1, 3, 7.) Creator history comes from cumulative per-creator event streams (a clip
created; a label or label revision as a delta on the sum of newest labels; a clip's first
24 h closing) matched with a strict ASOF JOIN, so nothing known only later leaks in.

Reads: the creator state of ds - 1 plus the day's creator events
(`models.features.creator_state`, which also writes the state of ds for the next day), and
the clips and engagement partitions of ds-6 .. ds for the rows' attributes and windows: a
day's cost follows the day, not the history. `full=True` recomputes the creator streams
from every partition up to ds instead (the reference the state is tested against: both give
the same rows). Only partitions up to ds are read, so re-running a day later gives the same
rows.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from models.core import names
from models.core.warehouse import Warehouse
from models.features import creator_state

TABLE = names.FEATURES_VIEW  # the warehouse table and the Feast view share the name
WINDOW_DAYS = names.WINDOW_DAYS
HISTORY_DAYS = 7  # day-end rows cover a clip's first 7 days
# files are sorted by the training sample's key first (#19): the training set's sample is
# whole clips in the order of md5(clip_id), so the rows of a sample of any size lie in the
# first row groups of every partition, and DuckDB skips the others by their min/max
SORT_KEYS = ("sample_key", "clip_id", "event_timestamp")


def sample_key_sql(column: str) -> str:
    """SQL of the training sample's key of clip ids in `column`: the first 64 bits of their
    MD5 (so ordering by it is ordering by md5 hex text, up to ties broken by clip_id)."""
    return f"('0x' || left(md5({column}), 16))::UBIGINT"


ATTRIBUTE_FEATURES = list(names.ATTRIBUTE_FEATURES)
DERIVED_FEATURES = list(names.DERIVED_FEATURES)
ENGAGEMENT_FEATURES = list(names.ENGAGEMENT_FEATURES)
CREATOR_FEATURES = list(names.CREATOR_FEATURES)
FEATURE_COLUMNS = names.FEATURE_COLUMNS
CATEGORICAL_FEATURES = names.CATEGORICAL_FEATURES
KEY_COLUMNS = ["clip_id", "creator_id", "created_at", "event_timestamp"]
# NULL only where there is no history to average yet.
NULLABLE_FEATURES = ["creator_label_mean", "creator_mean_early_views"]

# name: (rank, width, height)
RESOLUTIONS = {
    "480p": (1, 854, 480),
    "720p": (2, 1280, 720),
    "1080p": (3, 1920, 1080),
    "1440p": (4, 2560, 1440),
    "4K": (5, 3840, 2160),
}
VERTICAL_ASPECTS = ("9:16", "4:5")

_TEMP = ("_cf_clips", "_cf_rows", "_cf_hist", "_cs_events")


def _tstz(d: date, time: str = "00:00:00") -> str:
    return f"TIMESTAMPTZ '{d.isoformat()} {time}+00'"


def day_end(ds: date) -> str:
    """SQL literal of the last microsecond of day ds (UTC): the day-end rows' timestamp."""
    return _tstz(ds, "23:59:59.999999")


_read = creator_state.read_days


def _case(column: str, values: dict[str, object]) -> str:
    whens = " ".join(f"WHEN '{k}' THEN {v}" for k, v in values.items())
    return f"CASE {column} {whens} END"


def _stage_rows(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, ds: date) -> None:
    """`_cf_rows`: the day's rows with attributes."""
    first = ds - timedelta(days=HISTORY_DAYS - 1)
    cols = ["clip_id", "creator_id", "created_at", *ATTRIBUTE_FEATURES]
    end = day_end(ds)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cf_rows AS
        WITH recent AS (
            SELECT * FROM {_read(warehouse, "clips", cols, first, ds)}
            WHERE created_at >= {_tstz(first)} AND created_at <= {end}
        )
        SELECT *, created_at AS event_timestamp FROM recent WHERE created_at >= {_tstz(ds)}
        UNION ALL
        SELECT *, {end} AS event_timestamp FROM recent WHERE created_at < {end}
    """)


_RUNNING = """
        SELECT creator_id, ts,
               sum(coalesce(sum(d_clips), 0)) OVER w AS n_clips,
               sum(coalesce(sum(d_label_sum), 0)) OVER w AS label_sum,
               sum(coalesce(sum(d_labels), 0)) OVER w AS n_labels,
               sum(coalesce(sum(d_early_sum), 0)) OVER w AS early_sum,
               sum(coalesce(sum(d_early), 0)) OVER w AS n_early
        FROM ({events})
        GROUP BY creator_id, ts
        WINDOW w AS (PARTITION BY creator_id ORDER BY ts ROWS UNBOUNDED PRECEDING)"""


def _stage_history(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, ds: date) -> None:
    """`_cf_hist`: per creator and moment, running totals of clips created, newest-label
    sums and counts, and first-24h views and counts of clips whose first day closed: the
    state of ds - 1 (made fresh first) plus the day's events; writes the state of ds."""
    creator_state.ensure(con, warehouse, ds - timedelta(days=1))
    creator_state.stage_day_events(con, warehouse, ds)
    creator_state.write_state(con, warehouse, ds)
    events = creator_state.deltas_sql(warehouse, ds)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cf_hist AS {_RUNNING.format(events=events)}")


def _stage_history_full(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, ds: date) -> None:
    """`_cf_hist` as `_stage_history` makes it, recomputed from every partition up to ds."""
    end = day_end(ds)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cf_clips AS
        SELECT * FROM {_read(warehouse, "clips", ["clip_id", "creator_id", "created_at"], None, ds)}
    """)
    labels = _read(warehouse, "labels", ["clip_id", "labeled_at", "quality_score"], None, ds)
    views = _read(warehouse, "engagement", ["clip_id", "event_timestamp", "views"], None, ds)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cf_hist AS
        WITH label_events AS (
            SELECT c.creator_id, l.labeled_at AS ts,
                   l.quality_score::DECIMAL(18, 6) AS score,
                   lag(l.quality_score::DECIMAL(18, 6)) OVER (PARTITION BY l.clip_id
                                    ORDER BY l.labeled_at, l.quality_score) AS prev
            FROM {labels} l JOIN _cf_clips c USING (clip_id)
            WHERE l.labeled_at < {end}
        ),
        early AS (
            SELECT c.creator_id, c.created_at + INTERVAL 24 HOUR AS ts,
                   coalesce(sum(e.views), 0) AS early_views
            FROM _cf_clips c
            LEFT JOIN {views} e
              ON e.clip_id = c.clip_id AND e.event_timestamp <= c.created_at + INTERVAL 24 HOUR
            WHERE c.created_at + INTERVAL 24 HOUR < {end}
            GROUP BY c.clip_id, c.creator_id, c.created_at
        ),
        events AS (
            SELECT creator_id, created_at AS ts, 1 AS d_clips FROM _cf_clips
            WHERE created_at < {end}
            UNION ALL BY NAME
            SELECT creator_id, ts, score - coalesce(prev, 0) AS d_label_sum,
                   CASE WHEN prev IS NULL THEN 1 ELSE 0 END AS d_labels
            FROM label_events
            UNION ALL BY NAME
            SELECT creator_id, ts, early_views AS d_early_sum, 1 AS d_early FROM early
        )
        {_RUNNING.format(events="SELECT * FROM events")}
    """)


def _engagement_sql(warehouse: Warehouse, ds: date) -> str:
    """Per row, the engagement sums of windows ending by the row's moment, per k days."""
    first = ds - timedelta(days=HISTORY_DAYS - 1)
    cols = [
        "clip_id",
        "event_timestamp",
        "views",
        "likes",
        "shares",
        "comments",
        "completions",
        "watch_time_s",
    ]
    eng = _read(warehouse, "engagement", cols, first, ds)
    sums = []
    for k in WINDOW_DAYS:
        within = f"FILTER (e.event_timestamp <= r.created_at + INTERVAL {24 * k} HOUR)"
        sums += [  # integer-valued doubles: exact sums, the same in any order
            f"sum(e.views::DOUBLE) {within} AS v{k}",
            f"sum(e.completions::DOUBLE) {within} AS c{k}",
            f"sum((e.likes + e.shares + e.comments)::DOUBLE) {within} AS i{k}",
            f"sum(round(e.watch_time_s * 1000)) {within} / 1000 AS w{k}",
        ]
    return f"""
        SELECT r.clip_id, r.event_timestamp, {", ".join(sums)}
        FROM _cf_rows r JOIN {eng} e
          ON e.clip_id = r.clip_id AND e.event_timestamp <= r.event_timestamp
         AND e.event_timestamp <= r.created_at + INTERVAL {24 * max(WINDOW_DAYS)} HOUR
        GROUP BY r.clip_id, r.event_timestamp
    """


def _feature_sql(warehouse: Warehouse, ds: date) -> str:
    rank = _case("r.resolution", {k: v[0] for k, v in RESOLUTIONS.items()})
    pixels = _case("r.resolution", {k: v[1] * v[2] for k, v in RESOLUTIONS.items()})
    vertical = ", ".join(f"'{a}'" for a in VERTICAL_ASPECTS)
    engagement = []
    for k in WINDOW_DAYS:
        v = f"coalesce(w.v{k}, 0)"
        engagement += [
            f"{v}::BIGINT AS views_{k}d",
            f"CASE WHEN {v} > 0 THEN w.c{k} / w.v{k} ELSE 0 END::DOUBLE AS completion_rate_{k}d",
            f"CASE WHEN {v} > 0 THEN w.i{k} / w.v{k} ELSE 0 END::DOUBLE AS engagement_rate_{k}d",
            f"CASE WHEN {v} > 0 THEN w.w{k} / (w.v{k} * r.duration_s) ELSE 0 END::DOUBLE "
            f"AS watch_ratio_{k}d",
        ]
    attrs = ", ".join(f"r.{c}" for c in ATTRIBUTE_FEATURES)
    return f"""
        SELECT r.clip_id, r.creator_id, r.created_at, r.event_timestamp, {attrs},
               r.duration_s / 60.0 AS duration_min,
               ({rank})::BIGINT AS resolution_rank,
               r.bitrate_kbps * 1000.0 / (({pixels}) * r.fps) AS bitrate_per_pixel,
               (r.aspect_ratio IN ({vertical}))::BIGINT AS is_vertical,
               (epoch_us(r.event_timestamp) - epoch_us(r.created_at)) / 3.6e9 AS clip_age_hours,
               {", ".join(engagement)},
               coalesce(h.n_clips, 0)::BIGINT AS creator_clip_count,
               coalesce(h.n_labels, 0)::BIGINT AS creator_label_count,
               CASE WHEN h.n_labels > 0 THEN h.label_sum::DOUBLE / h.n_labels END
                   AS creator_label_mean,
               CASE WHEN h.n_early > 0 THEN h.early_sum::DOUBLE / h.n_early END
                   AS creator_mean_early_views,
               {sample_key_sql("r.clip_id")} AS sample_key
        FROM _cf_rows r
        LEFT JOIN ({_engagement_sql(warehouse, ds)}) w USING (clip_id, event_timestamp)
        LEFT JOIN (  -- the ASOF join on the keys only: a narrow sort
            SELECT k.clip_id, k.event_timestamp, h.* EXCLUDE (creator_id, ts)
            FROM (SELECT clip_id, creator_id, event_timestamp FROM _cf_rows) k
            ASOF LEFT JOIN _cf_hist h ON k.creator_id = h.creator_id AND k.event_timestamp > h.ts
        ) h USING (clip_id, event_timestamp)
    """


def build_clip_features(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, ds: date, *, full: bool = False
) -> int:
    """Write partition ds of `clip_features` (replacing it); returns its row count. `full`
    recomputes creator history from all partitions instead of the creator state."""
    try:
        _stage_rows(con, warehouse, ds)
        (_stage_history_full if full else _stage_history)(con, warehouse, ds)
        return warehouse.write_partition(
            con, TABLE, ds, _feature_sql(warehouse, ds), keys=SORT_KEYS
        )
    finally:
        for t in _TEMP:
            con.execute(f"DROP TABLE IF EXISTS {t}")
