"""The clips lookup of ingestion (#19): recent partitions first, older ones only for the ids
not found there. The answer must be the one a join with every partition gives, at the
lookback's boundary, for old clips, unknown ids and clips of later partitions (a re-run)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from support import GOOD_CLIP, GOOD_ENGAGEMENT

from models.core.contract import CLIPS, ENGAGEMENT, NotAfter
from models.core.warehouse import Warehouse, connect
from models.ingest.day import ingest_day, valid_rows_sql
from models.ingest.keys import KEY_LOOKBACK_DAYS
from models.ingest.landing import list_files

REF = date(2026, 3, 1)
NOW = datetime(2026, 3, 6, 3, tzinfo=UTC)  # after every day below
EXISTS, NOT_BEFORE = (
    "clip_id must exist in clips",
    "event_timestamp must be >= the clip's created_at",
)


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


# clip -> the day it was created: long before the lookback, one day outside it, its first
# day, the day itself, and a later day (the day is re-run after it)
CLIP_DAYS = {
    "a_old": REF - timedelta(days=40),
    "b_outside": REF - timedelta(days=KEY_LOOKBACK_DAYS + 1),
    "c_first": REF - timedelta(days=KEY_LOOKBACK_DAYS),
    "d_today": REF,
    "e_later": REF + timedelta(days=3),
}


def _setup(landing, tmp_path):
    clips = [{**GOOD_CLIP, "clip_id": c, "created_at": _at(d, 10)} for c, d in CLIP_DAYS.items()]
    landing.write("clips", clips)
    events = []  # each clip: one row after its creation (on REF), and one before it
    for c, d in CLIP_DAYS.items():
        events.append({**GOOD_ENGAGEMENT, "clip_id": c, "event_timestamp": _at(REF, 12)})
        events.append({**GOOD_ENGAGEMENT, "clip_id": c, "event_timestamp": _at(d, 9)})
    events.append({**GOOD_ENGAGEMENT, "clip_id": "ghost", "event_timestamp": _at(REF, 12)})
    landing.write("engagement", [e for e in events if e["event_timestamp"].date() == REF])
    wh, con = Warehouse(tmp_path / "h"), connect()
    for d in sorted(set(CLIP_DAYS.values())):
        assert ingest_day(con, wh, CLIPS, landing.root, d, NOW).rows_valid == 1
    assert len(wh.partitions("clips")) == len(CLIP_DAYS)
    created = {c["clip_id"]: c["created_at"] for c in clips}
    expected = {}  # the rule each of REF's rows breaks, computed from the clip rows
    for e in events:
        if e["event_timestamp"].date() != REF:
            continue
        key = (e["clip_id"], e["event_timestamp"])
        if e["clip_id"] not in created:
            expected[key] = EXISTS
        elif e["event_timestamp"] < created[e["clip_id"]]:
            expected[key] = NOT_BEFORE
        else:
            expected[key] = None
    assert {v for v in expected.values()} == {None, EXISTS, NOT_BEFORE}
    return wh, con, expected


def test_ingestion_finds_every_clip_whatever_its_partition(landing, tmp_path):
    wh, con, expected = _setup(landing, tmp_path)
    res = ingest_day(con, wh, ENGAGEMENT, landing.root, REF, NOW)
    valid = con.execute(
        f"SELECT clip_id, event_timestamp FROM {wh.partition_scan('engagement', REF)}"
    ).fetchall()
    bad = con.execute(
        f"SELECT \"row\", reason FROM {wh.scan('quarantine')} WHERE table_name = 'engagement'"
    ).fetchall()
    got = {(c, t.astimezone(UTC)): None for c, t in valid}
    for row, reason in bad:
        r = json.loads(row)
        got[(r["clip_id"], datetime.fromisoformat(r["event_timestamp"]).astimezone(UTC))] = reason
    assert got == expected
    assert (res.rows_valid, res.rows_quarantined) == (
        sum(v is None for v in expected.values()),
        sum(v is not None for v in expected.values()),
    )


def test_the_online_push_finds_the_same_clips(landing, tmp_path):
    wh, con, expected = _setup(landing, tmp_path)
    files = list_files(landing.root, ENGAGEMENT)
    for now in (NOW, _at(REF, 23)):  # the lookback counts back from "now"'s day
        sql = valid_rows_sql(con, wh, ENGAGEMENT, files, NotAfter(now))
        pushed = {(c, t.astimezone(UTC)) for c, t in con.execute(
            f"SELECT clip_id, event_timestamp FROM ({sql})").fetchall()}  # fmt: skip
        assert pushed == {k for k, v in expected.items() if v is None}


def test_engagement_before_any_clip_is_quarantined_row_by_row(landing, tmp_path):
    """No clips table yet: every row breaks the foreign key, and only that rule."""
    rows = [{**GOOD_ENGAGEMENT, "clip_id": c, "event_timestamp": _at(REF, 12)} for c in "ab"]
    landing.write("engagement", rows)
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, ENGAGEMENT, landing.root, REF, NOW)
    assert (res.rows_valid, res.rows_quarantined, res.reasons) == (0, 2, {EXISTS: 2})
    sql = valid_rows_sql(con, wh, ENGAGEMENT, list_files(landing.root, ENGAGEMENT), NotAfter(NOW))
    assert con.execute(f"SELECT count(*) FROM ({sql})").fetchall() == [(0,)]
