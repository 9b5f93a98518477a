"""Every contract rule: a good row passes, each bad value is quarantined with its reason."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import pytest
from support import GOOD_CLIP, GOOD_ENGAGEMENT, GOOD_LABEL, ts

from models.core.contract import FLOAT32_MAX, TABLES
from models.core.warehouse import Warehouse, connect
from models.ingest.day import ingest_day

DAY = date(2026, 1, 1)
NOW = datetime(2026, 1, 2, tzinfo=UTC)
NEG_INF = float("-inf")
POS_INF = float("inf")


def _ingest(landing, home, table: str):
    wh, con = Warehouse(home), connect()
    if table != "clips":
        ingest_day(con, wh, TABLES["clips"], landing.root, DAY, NOW)
    res = ingest_day(con, wh, TABLES[table], landing.root, DAY, NOW)
    q = (
        con.execute(
            f'SELECT reason, "row", source_file FROM {wh.scan("quarantine")} WHERE table_name = ?',
            [table],
        ).fetchall()
        if wh.exists("quarantine")
        else []
    )
    return res, q


CLIP_CASES = [
    ("clip_id", "", "clip_id must be non-empty"),
    ("clip_id", None, "clip_id is required"),
    ("video_id", "  ", "video_id must be non-empty"),
    ("creator_id", "", "creator_id must be non-empty"),
    ("created_at", None, "created_at is required"),
    ("duration_s", 0.0, "duration_s must be 0 < x <= 600"),
    ("duration_s", 600.5, "duration_s must be 0 < x <= 600"),
    ("duration_s", float("nan"), "duration_s must be 0 < x <= 600"),
    ("duration_s", -30.0, "duration_s must be 0 < x <= 600"),
    ("duration_s", NEG_INF, "duration_s must be 0 < x <= 600"),
    ("resolution", "8K", "resolution must be one of"),
    ("bitrate_kbps", 0.0, "bitrate_kbps must be 0 < x"),
    ("bitrate_kbps", -4000.0, "bitrate_kbps must be 0 < x"),
    ("bitrate_kbps", NEG_INF, "bitrate_kbps must be 0 < x"),
    ("fps", 0.0, "fps must be 0 < x <= 120"),
    ("fps", 121.0, "fps must be 0 < x <= 120"),
    ("fps", -30.0, "fps must be 0 < x <= 120"),
    ("fps", NEG_INF, "fps must be 0 < x <= 120"),
    ("aspect_ratio", "21:9", "aspect_ratio must be one of"),
    ("has_captions", None, "has_captions is required"),
    ("speech_ratio", 1.01, "speech_ratio must be 0 <= x <= 1"),
    ("speech_ratio", -0.1, "speech_ratio must be 0 <= x <= 1"),
    ("speech_ratio", NEG_INF, "speech_ratio must be 0 <= x <= 1"),
    ("scene_cuts_per_min", -1.0, "scene_cuts_per_min must be 0 <= x"),
    ("scene_cuts_per_min", NEG_INF, "scene_cuts_per_min must be 0 <= x"),
    ("hook_strength", 1.5, "hook_strength must be 0 <= x <= 1"),
    ("hook_strength", -0.1, "hook_strength must be 0 <= x <= 1"),
    ("hook_strength", NEG_INF, "hook_strength must be 0 <= x <= 1"),
    ("hook_strength", POS_INF, "hook_strength must be 0 <= x <= 1"),
    ("duration_s", POS_INF, "duration_s must be 0 < x <= 600"),
    ("bitrate_kbps", POS_INF, "bitrate_kbps must be 0 < x and finite"),
    ("scene_cuts_per_min", POS_INF, "scene_cuts_per_min must be 0 <= x and finite"),
    ("scene_cuts_per_min", 3.5e38, "scene_cuts_per_min must be 0 <= x and finite"),  # > float32
    ("language", "ENG", "language must match"),
    ("language", "En", "language must match"),
    ("topic", "", "topic must be non-empty"),
]


def test_good_clip_passes(landing, tmp_path):
    landing.write("clips", [GOOD_CLIP])
    res, q = _ingest(landing, tmp_path / "h", "clips")
    assert (res.rows_valid, res.rows_quarantined, q) == (1, 0, [])


# CSV has no NaN literal that every reader agrees on: NaN is a Parquet-only case
CLIP_PARAMS = [
    pytest.param(fmt, *c, id=f"{fmt}-{c[0]}={c[1]!r}")
    for fmt in ("parquet", "csv")
    for c in CLIP_CASES
    if not (fmt == "csv" and c[1] != c[1])
]


@pytest.mark.parametrize("fmt,field,value,reason", CLIP_PARAMS)
def test_bad_clip_value_quarantined(landing, tmp_path, fmt, field, value, reason):
    bad = (
        {**GOOD_CLIP, "clip_id": "bad", field: value}
        if field != "clip_id"
        else {**GOOD_CLIP, field: value}
    )
    if fmt == "csv" and value == "":
        reason = f"{field} is required"  # an empty CSV field reads as NULL
    landing.write("clips", [GOOD_CLIP, bad], fmt=fmt)
    res, q = _ingest(landing, tmp_path / "h", "clips")
    assert res.rows_valid == 1 and res.rows_quarantined == 1
    ((got_reason, row, source),) = q
    assert reason in got_reason
    assert source == f"clips/part-0.{fmt}"
    assert json.loads(row)["video_id"] == bad["video_id"]  # the row is kept, as JSON


ENGAGEMENT_CASES = [
    ("views", -1, "views must be 0 <= x"),
    ("likes", -1, "likes must be 0 <= x"),
    ("shares", -2, "shares must be 0 <= x"),
    ("comments", -3, "comments must be 0 <= x"),
    ("completions", 101, "completions must be <= views"),
    ("completions", -1, "completions must be 0 <= x"),
    ("watch_time_s", -0.5, "watch_time_s must be 0 <= x"),
    ("watch_time_s", NEG_INF, "watch_time_s must be 0 <= x"),
    ("watch_time_s", POS_INF, "watch_time_s must be 0 <= x and finite"),
    ("clip_id", "unknown", "clip_id must exist in clips"),
    (
        "event_timestamp",
        ts("2026-01-01T09:00:00Z"),
        "event_timestamp must be >= the clip's created_at",
    ),
    ("event_timestamp", None, "event_timestamp is required"),
]


def test_good_engagement_passes(landing, tmp_path):
    landing.write("clips", [GOOD_CLIP])
    landing.write("engagement", [GOOD_ENGAGEMENT])
    res, q = _ingest(landing, tmp_path / "h", "engagement")
    assert (res.rows_valid, res.rows_quarantined, q) == (1, 0, [])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize(
    "field,value,reason", ENGAGEMENT_CASES, ids=[f"{c[0]}={c[1]!r}" for c in ENGAGEMENT_CASES]
)
def test_bad_engagement_quarantined(landing, tmp_path, fmt, field, value, reason):
    landing.write("clips", [GOOD_CLIP])
    landing.write("engagement", [GOOD_ENGAGEMENT, {**GOOD_ENGAGEMENT, field: value}], fmt=fmt)
    res, q = _ingest(landing, tmp_path / "h", "engagement")
    assert res.rows_valid == 1 and res.rows_quarantined == 1
    assert reason in q[0][0]


LABEL_CASES = [
    ("quality_score", 100.5, "quality_score must be 0 <= x <= 100"),
    ("quality_score", -1.0, "quality_score must be 0 <= x <= 100"),
    ("quality_score", NEG_INF, "quality_score must be 0 <= x <= 100"),
    ("clip_id", "nope", "clip_id must exist in clips"),
    ("labeled_at", ts("2026-01-01T09:59:59Z"), "labeled_at must be >= the clip's created_at"),
]


@pytest.mark.parametrize(
    "field,value,reason", LABEL_CASES, ids=[f"{c[0]}={c[1]!r}" for c in LABEL_CASES]
)
def test_bad_label_quarantined(landing, tmp_path, field, value, reason):
    landing.write("clips", [GOOD_CLIP])
    landing.write("labels", [GOOD_LABEL, {**GOOD_LABEL, field: value}])
    res, q = _ingest(landing, tmp_path / "h", "labels")
    assert res.rows_valid == 1 and res.rows_quarantined == 1
    assert reason in q[0][0]


def test_every_lower_bound_has_a_negative_case():
    """Each numeric field with a minimum has a negative case above (and -inf if a float):
    a flipped or dropped lower bound cannot hide behind the 0 and NaN cases."""
    bounded = {
        (t.warehouse, f.name, f.type)
        for t in TABLES.values()
        for f in t.fields
        for r in f.rules
        if r.kind == "between" and r.params.get("min") is not None
    }
    cases = {"clips": CLIP_CASES, "engagement": ENGAGEMENT_CASES, "labels": LABEL_CASES}
    negative = {
        (t, f)
        for t, rows in cases.items()
        for f, v, _ in rows
        if isinstance(v, int | float) and math.isfinite(v) and v < 0
    }
    minus_inf = {(t, f) for t, rows in cases.items() for f, v, _ in rows if v == NEG_INF}
    assert len(bounded) == 13
    assert negative == {(t, f) for t, f, _ in bounded}
    assert minus_inf == {(t, f) for t, f, kind in bounded if kind == "float"}


def test_csv_unparseable_values_are_row_errors(landing, tmp_path):
    path = landing.write("clips", [GOOD_CLIP, {**GOOD_CLIP, "clip_id": "c2"}], fmt="csv")
    text = path.read_text().splitlines()
    text[2] = text[2].replace(",30.0,", ",thirty,").replace(",true,", ",maybe,")
    path.write_text("\n".join(text) + "\n")
    res, q = _ingest(landing, tmp_path / "h", "clips")
    assert res.rows_valid == 1
    reason, row, _ = q[0]
    assert "duration_s is not a valid float: thirty" in reason
    assert "has_captions is not a valid bool: maybe" in reason
    assert json.loads(row)["duration_s"] == "thirty"  # the raw text, not a lossy cast


def test_multiple_broken_rules_are_all_listed(landing, tmp_path):
    landing.write("clips", [{**GOOD_CLIP, "fps": 0.0, "language": "xyz", "topic": ""}])
    _, q = _ingest(landing, tmp_path / "h", "clips")
    assert {r.strip() for r in q[0][0].split(";")} == {
        "fps must be 0 < x <= 120",
        "language must match ^[a-z]{2}$",
        "topic must be non-empty",
    }


def test_experiment_tables(landing, tmp_path):
    a = {
        "experiment_id": "e1",
        "user_id": "u1",
        "variant": "control",
        "assigned_at": ts("2026-01-01T08:00:00Z"),
    }
    landing.write(
        "assignments",
        [
            a,
            {**a, "variant": "treatment", "assigned_at": ts("2026-01-01T09:00:00Z")},
            {**a, "user_id": ""},
        ],
    )
    m = {
        "user_id": "u1",
        "event_timestamp": ts("2026-01-01T12:00:00Z"),
        "metric": "sessions",
        "value": 2.0,
    }
    landing.write("user_metrics", [m, {**m, "metric": ""}, {**m, "value": float("nan")}])
    wh, con = Warehouse(tmp_path / "h"), connect()
    ra = ingest_day(con, wh, TABLES["assignments"], landing.root, DAY, NOW)
    rm = ingest_day(con, wh, TABLES["user_metrics"], landing.root, DAY, NOW)
    assert (ra.rows_valid, ra.rows_quarantined) == (1, 2)
    assert "duplicate experiment_id, user_id: an earlier row wins" in ra.reasons
    assert (rm.rows_valid, rm.rows_quarantined) == (1, 2)


@pytest.mark.parametrize(
    ("value", "kept"),
    [(FLOAT32_MAX, True), (math.nextafter(FLOAT32_MAX, math.inf), False), (1e300, False)],
)
def test_a_float_without_a_maximum_is_capped_at_float32s_range(landing, tmp_path, value, kept):
    """+inf, and finite values a float32 cast would turn into inf, are refused; the largest
    float32 is kept (#16, case 5: one inf used to crash every later training)."""
    landing.write("clips", [{**GOOD_CLIP, "bitrate_kbps": value}])
    res, q = _ingest(landing, tmp_path / "h", "clips")
    assert (res.rows_valid, res.rows_quarantined) == ((1, 0) if kept else (0, 1))
    assert [r for r, _, _ in q] == ([] if kept else ["bitrate_kbps must be 0 < x and finite"])


# -- timestamps beyond ingestion time + skew (#16, case 6) -------------------------------------
INGESTED_AT = datetime(2026, 1, 1, 21, 0, tzinfo=UTC)
SKEW = timedelta(hours=2)  # the bound: 2026-01-01T23:00:00Z, on DAY
BOUND = INGESTED_AT + SKEW
FUTURE_ROWS = {
    "clips": {**GOOD_CLIP},
    "engagement": {**GOOD_ENGAGEMENT},
    "labels": {**GOOD_LABEL},
    "assignments": {"experiment_id": "e", "user_id": "u", "variant": "a", "assigned_at": None},
    "user_metrics": {"user_id": "u", "event_timestamp": None, "metric": "m", "value": 1.0},
}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("table", list(FUTURE_ROWS))
def test_a_timestamp_past_ingestion_time_plus_skew_is_quarantined(landing, tmp_path, table, fmt):
    """Every table: a row dated on the bound is kept, one a microsecond later is quarantined
    naming the rule (a row dated next year used to pin the clip's online row)."""
    column = TABLES[table].partition_by
    late = BOUND + timedelta(microseconds=1)
    if table == "clips":
        rows = [
            {**GOOD_CLIP, "clip_id": "c1", column: BOUND},
            {**GOOD_CLIP, "clip_id": "c2", column: late},
        ]
    else:
        landing.write("clips", [GOOD_CLIP])
        rows = [{**FUTURE_ROWS[table], column: BOUND}, {**FUTURE_ROWS[table], column: late}]
        if table == "assignments":
            rows[1]["user_id"] = "u2"
    landing.write(table, rows, fmt=fmt)
    wh, con = Warehouse(tmp_path / "h"), connect()
    if table != "clips":
        ingest_day(con, wh, TABLES["clips"], landing.root, DAY, INGESTED_AT, SKEW)
    res = ingest_day(con, wh, TABLES[table], landing.root, DAY, INGESTED_AT, SKEW)
    assert (res.rows_valid, res.rows_quarantined) == (1, 1)
    reason = (
        f"{column} must be <= ingestion time + 7200 s (2026-01-01T23:00:00Z): dated in the future"
    )
    assert res.reasons == {reason: 1}
    (kept,) = con.execute(f"SELECT {column} FROM {wh.scan(table)}").fetchall()
    assert kept[0] == BOUND
    (q,) = con.execute(
        f'SELECT reason, "row" FROM {wh.scan("quarantine")} WHERE table_name = ?', [table]
    ).fetchall()
    assert q[0] == reason
    assert "2026-01-01" in json.loads(q[1])[column]  # the row itself is kept in quarantine
