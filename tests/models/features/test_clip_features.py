"""clip_features on tiny hand-made warehouses: values, windows, point-in-time history."""

from __future__ import annotations

import hashlib
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_support import END, clip, label, put, window
from support import ts

from models.core.warehouse import Warehouse, connect
from models.features.clip_features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, build_clip_features

# The names other modules code against: a rename here is a breaking change.
CONTRACT_FEATURES = [
    *("duration_s", "resolution", "bitrate_kbps", "fps", "aspect_ratio", "has_captions"),
    *("speech_ratio", "scene_cuts_per_min", "hook_strength", "language", "topic"),
    *("duration_min", "resolution_rank", "bitrate_per_pixel", "is_vertical", "clip_age_hours"),
    *(
        f"{m}_{k}d"
        for k in (1, 3, 7)
        for m in ("views", "completion_rate", "engagement_rate", "watch_ratio")
    ),
    *("creator_clip_count", "creator_label_count", "creator_label_mean"),
    "creator_mean_early_views",
]


@pytest.fixture
def wh(tmp_path):
    return Warehouse(tmp_path / "home")


@pytest.fixture
def con():
    return connect()


def features(con, wh, ds: date) -> dict[tuple[str, str], dict]:
    """Build day ds; its rows keyed by (clip_id, event_timestamp as ISO text)."""
    build_clip_features(con, wh, ds)
    part = wh.partition_dir("clip_features", ds)
    cur = con.execute(f"SELECT * FROM read_parquet('{part}/*.parquet')")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return {(r["clip_id"], r["event_timestamp"].isoformat()): r for r in rows}


def key(cid: str, at: str) -> tuple[str, str]:
    return cid, ts(at).isoformat()


def test_schema_and_derived_values_of_a_known_clip(wh, con):
    put(
        wh,
        "clips",
        [
            clip("c1", "2026-01-01T10:00:00Z"),
            clip(
                "c2",
                "2026-01-01T11:00:00Z",
                resolution="4K",
                aspect_ratio="16:9",
                fps=60.0,
                bitrate_kbps=16000.0,
            ),
        ],
    )
    rows = features(con, wh, date(2026, 1, 1))
    assert len(rows) == 4  # a creation and a day-end row per clip
    first = next(iter(rows.values()))
    keys = ["clip_id", "creator_id", "created_at", "event_timestamp"]
    assert list(first) == [*keys, *FEATURE_COLUMNS, "sample_key", "ds"]
    for cid in ("c1", "c2"):  # the training sample's key: md5's first 64 bits (#19)
        want = int(hashlib.md5(cid.encode()).hexdigest()[:16], 16)
        assert {r["sample_key"] for r in rows.values() if r["clip_id"] == cid} == {want}
    assert FEATURE_COLUMNS == CONTRACT_FEATURES
    assert set(CATEGORICAL_FEATURES) == {"resolution", "aspect_ratio", "language", "topic"}

    born, day_end = rows[key("c1", "2026-01-01T10:00:00Z")], rows[key("c1", f"2026-01-01T{END}Z")]
    for r in (born, day_end):
        assert r["duration_s"] == 30.0 and r["resolution"] == "1080p" and r["has_captions"] is True
        assert r["duration_min"] == pytest.approx(0.5)
        assert r["resolution_rank"] == 3
        assert r["bitrate_per_pixel"] == pytest.approx(4000 * 1000 / (1920 * 1080 * 30))
        assert r["is_vertical"] == 1
    assert born["clip_age_hours"] == 0.0
    assert day_end["clip_age_hours"] == pytest.approx(14.0 - 1e-6 / 3600)
    other = rows[key("c2", "2026-01-01T11:00:00Z")]
    assert other["resolution_rank"] == 5 and other["is_vertical"] == 0
    assert other["bitrate_per_pixel"] == pytest.approx(16e6 / (3840 * 2160 * 60))
    # no engagement, no labels, no history: zeros and NULL means, never NULL counts
    assert born["views_7d"] == 0 and born["completion_rate_1d"] == 0.0
    assert born["watch_ratio_3d"] == 0.0 and born["engagement_rate_7d"] == 0.0
    assert born["creator_clip_count"] == 0 and born["creator_label_count"] == 0
    assert born["creator_label_mean"] is None and born["creator_mean_early_views"] is None


def test_engagement_windows_sum_the_right_windows_as_of_the_row(wh, con):
    put(wh, "clips", [clip("c1", "2026-01-01T10:00:00Z"), clip("quiet", "2026-01-01T12:00:00Z")])
    put(
        wh,
        "engagement",
        [
            window("c1", "2026-01-01T10:00:00Z", 1, completions=1),  # at created_at itself
            window(
                "c1",
                "2026-01-01T11:00:00Z",
                100,
                completions=40,
                likes=10,
                shares=2,
                comments=3,
                watch_time_s=1500.0,
            ),
            window(
                "c1", "2026-01-02T10:00:00Z", 50, completions=10, likes=5, watch_time_s=600.0
            ),  # +24h: in 1d
            window("c1", "2026-01-02T11:00:00Z", 30, completions=30, watch_time_s=900.0),  # +25h
            window(
                "c1", "2026-01-04T10:00:00Z", 20, completions=0, comments=4, watch_time_s=60.0
            ),  # +72h
            window("c1", "2026-01-04T11:00:00Z", 10, completions=5, watch_time_s=150.0),  # +73h
            window("c1", "2026-01-05T05:00:00Z", 1000, completions=0),  # after day 4 ends
        ],
    )
    day1 = features(con, wh, date(2026, 1, 1))
    born = day1[key("c1", "2026-01-01T10:00:00Z")]
    assert born["views_1d"] == born["views_7d"] == 1  # a window ending at creation counts
    end1 = day1[key("c1", f"2026-01-01T{END}Z")]
    assert (end1["views_1d"], end1["views_3d"], end1["views_7d"]) == (101, 101, 101)
    quiet = day1[key("quiet", f"2026-01-01T{END}Z")]
    windowed = [c for c in FEATURE_COLUMNS if c[-2:] in ("1d", "3d", "7d")]
    assert len(windowed) == 12 and all(quiet[c] == 0 for c in windowed)

    r = features(con, wh, date(2026, 1, 4))[key("c1", f"2026-01-04T{END}Z")]
    assert (r["views_1d"], r["views_3d"], r["views_7d"]) == (151, 201, 211)
    assert r["completion_rate_1d"] == pytest.approx(51 / 151)
    assert r["completion_rate_3d"] == pytest.approx(81 / 201)
    assert r["completion_rate_7d"] == pytest.approx(86 / 211)
    assert r["engagement_rate_1d"] == pytest.approx(20 / 151)
    assert r["engagement_rate_3d"] == pytest.approx(24 / 201)
    assert r["watch_ratio_1d"] == pytest.approx(2100 / (151 * 30))
    assert r["watch_ratio_7d"] == pytest.approx(3210 / (211 * 30))
    later = features(con, wh, date(2026, 1, 5))[key("c1", f"2026-01-05T{END}Z")]
    assert later["views_3d"] == 201 and later["views_7d"] == 1211


def test_rows_of_a_day_cover_each_clips_first_seven_days(wh, con):
    put(
        wh,
        "clips",
        [
            clip("old", "2026-01-03T23:00:00Z"),  # ds-7: out
            clip("six", "2026-01-04T00:00:00Z"),  # ds-6: day-end row only
            clip("new", "2026-01-10T08:00:00Z"),  # ds: creation and day-end rows
            clip("last", f"2026-01-10T{END}Z"),  # at the day-end instant: one row
            clip("next", "2026-01-11T00:00:00Z"),  # tomorrow: out
        ],
    )
    rows = features(con, wh, date(2026, 1, 10))
    assert sorted(rows) == sorted(
        [
            key("six", f"2026-01-10T{END}Z"),
            key("new", "2026-01-10T08:00:00Z"),
            key("new", f"2026-01-10T{END}Z"),
            key("last", f"2026-01-10T{END}Z"),
        ]
    )


def test_creator_history_is_strictly_before_each_row_and_never_leaks(wh, con):
    clips = [
        clip("a", "2026-01-01T00:00:00Z"),
        clip("c", "2026-01-02T00:00:00Z"),
        clip("b", "2026-01-03T12:00:00Z"),
        clip("d", "2026-01-03T12:00:00Z"),  # same instant as b: neither counts the other
        clip("x", "2026-01-01T05:00:00Z", creator="k2"),
    ]
    put(wh, "clips", clips)
    put(
        wh,
        "engagement",
        [
            window("a", "2026-01-01T06:00:00Z", 100),
            window("a", "2026-01-02T00:00:00Z", 50),  # exactly +24h: early
            window("a", "2026-01-02T06:00:00Z", 1000),  # not early
            window("x", "2026-01-01T06:00:00Z", 7777),  # another creator
        ],
    )
    known_by_day3 = [
        label("a", "2026-01-03T08:00:00Z", 60.0),
        label("c", "2026-01-03T12:00:00Z", 40.0),  # at b's creation instant: not before it
        label("x", "2026-01-02T00:00:00Z", 99.0),  # another creator
    ]
    put(wh, "labels", known_by_day3)
    day3 = date(2026, 1, 3)
    before = features(con, wh, day3)

    b = before[key("b", "2026-01-03T12:00:00Z")]
    assert b["creator_clip_count"] == 2  # a and c; not d, not b itself, not k2's x
    assert (b["creator_label_count"], b["creator_label_mean"]) == (1, 60.0)
    assert b["creator_mean_early_views"] == pytest.approx(75.0)  # a: 150, c: 0
    end3 = before[key("b", f"2026-01-03T{END}Z")]
    assert end3["creator_clip_count"] == 4
    assert (end3["creator_label_count"], end3["creator_label_mean"]) == (2, 50.0)

    a_born = features(con, wh, date(2026, 1, 1))[key("a", "2026-01-01T00:00:00Z")]
    assert a_born["creator_clip_count"] == 0 and a_born["creator_mean_early_views"] is None
    end2 = features(con, wh, date(2026, 1, 2))[key("a", f"2026-01-02T{END}Z")]
    assert end2["creator_mean_early_views"] == 150.0  # c's first day closes on day 3
    assert end2["creator_label_count"] == 0 and end2["creator_label_mean"] is None

    # later: a's label is revised and a new label arrives; day 3 must not change
    put(
        wh,
        "labels",
        known_by_day3
        + [
            label("a", "2026-01-04T06:00:00Z", 80.0),
            label("b", "2026-01-04T07:00:00Z", 30.0),
        ],
    )
    assert features(con, wh, day3) == before
    end4 = features(con, wh, date(2026, 1, 4))[key("d", f"2026-01-04T{END}Z")]
    assert end4["creator_label_count"] == 3
    assert end4["creator_label_mean"] == pytest.approx((80 + 40 + 30) / 3)


def test_rerun_replaces_the_partition_with_identical_rows(wh, con):
    put(wh, "clips", [clip(f"c{i}", f"2026-01-0{1 + i % 3}T0{i}:00:00Z") for i in range(9)])
    put(
        wh,
        "engagement",
        [window(f"c{i}", f"2026-01-03T0{i}:30:00Z", i * 10, watch_time_s=i / 3) for i in range(9)],
    )
    put(wh, "labels", [label("c1", "2026-01-02T05:00:00Z", 33.3)])
    ds = date(2026, 1, 3)
    first = features(con, wh, ds)
    assert build_clip_features(con, wh, ds) == len(first) == 9 + 3
    assert features(con, wh, ds) == first
    assert len(list(wh.partition_dir("clip_features", ds).glob("*.parquet"))) == 1


def test_timestamps_are_written_as_utc_microseconds(wh, con):
    put(wh, "clips", [clip("c1", "2026-01-01T10:00:00.123456Z")])
    build_clip_features(con, wh, date(2026, 1, 1))
    (path,) = wh.partition_dir("clip_features", date(2026, 1, 1)).glob("*.parquet")
    schema = pq.read_schema(path)
    for col in ("created_at", "event_timestamp"):
        assert schema.field(col).type == pa.timestamp("us", tz="UTC")
    assert ts("2026-01-01T10:00:00.123456Z") in pq.read_table(path)["event_timestamp"].to_pylist()
