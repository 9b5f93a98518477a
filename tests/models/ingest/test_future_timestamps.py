"""Rows dated beyond ingestion time + skew (#16, case 6): where they are quarantined, that
they never reach the online push, and the skew's setting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from support import GOOD_CLIP, GOOD_ENGAGEMENT

from models.core import settings
from models.core.contract import CLIPS, ENGAGEMENT
from models.core.warehouse import Warehouse, connect
from models.ingest.day import ingest_day, valid_rows_sql
from models.ingest.landing import list_files

DAY = date(2026, 1, 1)
NOW = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)  # a run in the early hours of the next day
NEXT_YEAR = datetime(2027, 1, 1, 10, 0, tzinfo=UTC)


def _quarantine(con, wh, table: str) -> list[tuple]:
    if not wh.exists("quarantine"):
        return []
    return con.execute(
        f"SELECT ds::VARCHAR, reason FROM {wh.scan('quarantine')} WHERE table_name = ? "
        "ORDER BY ALL",
        [table],
    ).fetchall()


def test_a_row_dated_next_year_is_quarantined_on_its_file_s_first_day(landing, tmp_path):
    """The row's own day is never run (it is not complete), so it goes to the quarantine of
    the day its file starts on, once; when its day has really come it lands normally."""
    landing.write(
        "clips",
        [{**GOOD_CLIP, "clip_id": "ok"}, {**GOOD_CLIP, "clip_id": "x", "created_at": NEXT_YEAR}],
    )
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, CLIPS, landing.root, DAY, NOW)
    assert (res.rows_valid, res.rows_quarantined) == (1, 1)
    reason = (
        "created_at must be <= ingestion time + 300 s (2026-01-02T03:05:00Z): dated in the future"
    )
    assert _quarantine(con, wh, "clips") == [("2026-01-01", reason)]
    # the claimed day, run anyway (a backfill by hand): neither a row nor a second quarantine
    res = ingest_day(con, wh, CLIPS, landing.root, NEXT_YEAR.date(), NOW)
    assert (res.rows_valid, res.rows_quarantined) == (0, 0)
    assert len(_quarantine(con, wh, "clips")) == 1
    # a year later the row is no longer in the future: its day takes it, the first day not
    later = NEXT_YEAR + timedelta(days=1)
    assert ingest_day(con, wh, CLIPS, landing.root, NEXT_YEAR.date(), later).rows_valid == 1
    assert ingest_day(con, wh, CLIPS, landing.root, DAY, later).rows_quarantined == 0
    assert _quarantine(con, wh, "clips") == []


def test_a_backfill_of_an_old_day_keeps_old_rows_and_refuses_future_ones(landing, tmp_path):
    """'Now' is the wall clock, not the day run: a day a year back keeps its rows."""
    old = datetime(2025, 1, 1, 10, tzinfo=UTC)
    landing.write(
        "clips",
        [{**GOOD_CLIP, "clip_id": "old", "created_at": old},
         {**GOOD_CLIP, "clip_id": "f", "created_at": NOW + timedelta(minutes=5, seconds=1)}],
    )  # fmt: skip
    wh, con = Warehouse(tmp_path / "h"), connect()
    res = ingest_day(con, wh, CLIPS, landing.root, old.date(), NOW)
    assert (res.rows_valid, res.rows_quarantined) == (1, 1)
    assert list(res.reasons) == [
        "created_at must be <= ingestion time + 300 s (2026-01-02T03:05:00Z): dated in the future"
    ]


def test_the_online_push_never_takes_a_future_row(landing, tmp_path, monkeypatch):
    landing.write("clips", [GOOD_CLIP])
    soon = datetime.now(UTC) + timedelta(seconds=30)
    rows = [
        GOOD_ENGAGEMENT,
        {**GOOD_ENGAGEMENT, "event_timestamp": soon},
        {**GOOD_ENGAGEMENT, "event_timestamp": NEXT_YEAR.replace(year=datetime.now(UTC).year + 1)},
    ]
    landing.write("engagement", rows)
    wh, con = Warehouse(tmp_path / "h"), connect()
    ingest_day(con, wh, CLIPS, landing.root, DAY, NOW)
    files = list_files(landing.root, ENGAGEMENT)

    def pushed(**kw) -> list:
        sql = valid_rows_sql(con, wh, ENGAGEMENT, files, **kw)
        return [
            r[0] for r in con.execute(f"SELECT event_timestamp FROM ({sql}) ORDER BY 1").fetchall()
        ]

    monkeypatch.delenv("CLIPFLOW_FUTURE_SKEW_S", raising=False)  # default 300 s: 30 s is in
    assert pushed() == [GOOD_ENGAGEMENT["event_timestamp"], soon]
    monkeypatch.setenv("CLIPFLOW_FUTURE_SKEW_S", "0")  # the setting is read: 30 s is out
    assert pushed() == [GOOD_ENGAGEMENT["event_timestamp"]]


@pytest.mark.parametrize(
    "value,secs",
    [("", 300.0), (" ", 300.0), ("0", 0.0), ("1.5", 1.5), ("86400", 86400.0)],
)
def test_the_skew_setting(monkeypatch, value, secs):
    monkeypatch.setenv("CLIPFLOW_FUTURE_SKEW_S", value)
    s = settings.current()
    assert s.future_skew_s == secs and s.future_skew == timedelta(seconds=secs)


@pytest.mark.parametrize("value", ["-1", "86400.5", "nan", "inf", "5m", "1e400"])
def test_a_bad_skew_setting_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("CLIPFLOW_FUTURE_SKEW_S", value)
    with pytest.raises(ValueError, match="CLIPFLOW_FUTURE_SKEW_S"):
        settings.current()
