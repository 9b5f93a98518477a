"""The creator state (`models.features.creator_state`) gives exactly the features of the full
recomputation over every partition: day by day on generated data with label revisions,
after late labels and clips land in earlier days, on a re-run, and with the old history
gone (a day reads the day plus the state)."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime, timedelta

import pytest
from feature_support import clip, label, put, window

from models.core.warehouse import Warehouse, connect
from models.features import creator_state
from models.features.clip_features import build_clip_features

DAY0 = date(2026, 3, 1)
DAYS = 12


def _at(d: date, seconds: float) -> str:
    t = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(seconds=seconds)
    return t.isoformat()


def _world(seed: int = 7, days: int = DAYS):
    """Clips of 6 creators over `days` days (some at midnight exactly), engagement in and
    past each clip's first 24 h, a label 1-5 days after creation and revisions of some."""
    rng = random.Random(seed)
    clips, eng, labels = [], [], []
    for day in range(days):
        d = DAY0 + timedelta(day)
        for i in range(rng.randrange(6, 14)):
            cid = f"c{day:02d}{i:02d}"
            sec = 0.0 if i == 0 else rng.uniform(0, 86_399)
            created = datetime.fromisoformat(_at(d, sec))
            clips.append(clip(cid, created.isoformat(), f"k{rng.randrange(6)}"))
            for h in (1, 23.5, 24, 30, 80):  # 24 h exactly: still the first day
                if rng.random() < 0.8:
                    at = created + timedelta(hours=h)
                    eng.append(window(cid, at.isoformat(), rng.randrange(0, 500)))
            at = created + timedelta(days=rng.uniform(1, 5))
            labels.append(label(cid, at.isoformat(), round(rng.uniform(0, 100), 3)))
            if rng.random() < 0.35:
                later = at + timedelta(hours=rng.uniform(6, 90))
                labels.append(label(cid, later.isoformat(), round(rng.uniform(0, 100), 3)))
    last = datetime.combine(DAY0 + timedelta(days - 1), datetime.max.time(), UTC)
    return (
        clips,
        [e for e in eng if e["event_timestamp"] <= last],
        [lb for lb in labels if lb["labeled_at"] <= last],
    )


def _rows(con, wh: Warehouse, ds: date, full: bool = False) -> list[tuple]:
    build_clip_features(con, wh, ds, full=full)
    part = wh.partition_dir("clip_features", ds)
    return con.execute(f"SELECT * FROM read_parquet('{part}/*.parquet') ORDER BY ALL").fetchall()


@pytest.fixture
def home(tmp_path):
    wh = Warehouse(tmp_path / "home")
    clips, eng, labels = _world()
    put(wh, "clips", clips)
    put(wh, "engagement", eng)
    put(wh, "labels", labels)
    return wh


def _check_day(con, wh, ds) -> list[tuple]:
    got, want = _rows(con, wh, ds), _rows(con, wh, ds, full=True)
    assert len(want) > 0 and got == want, ds
    return got


@pytest.mark.parametrize("lookback", [14, 1])  # 1: most owners from the older partitions
def test_every_day_equals_the_full_recomputation(home, monkeypatch, lookback):
    monkeypatch.setattr(creator_state, "OWNER_LOOKBACK_DAYS", lookback)
    con = connect()
    for day in range(DAYS):
        last = _check_day(con, home, DAY0 + timedelta(day))
    cols = [d[0] for d in con.execute(
        f"SELECT * FROM read_parquet('{home.partition_dir('clip_features', DAY0 + timedelta(DAYS - 1))}/*.parquet')"
    ).description]  # fmt: skip
    means = [r[cols.index("creator_label_mean")] for r in last]
    early = [r[cols.index("creator_mean_early_views")] for r in last]
    assert sum(m is not None for m in means) > 10 and sum(e is not None for e in early) > 10
    (revised,) = con.execute(  # the history has revisions to telescope
        "SELECT count(*) FROM (SELECT clip_id FROM read_parquet("
        f"'{home.table_dir('labels')}/*/*.parquet') GROUP BY 1 HAVING count(*) > 1)"
    ).fetchall()[0]
    assert revised > 10
    assert len(home.partitions(creator_state.STATE)) == DAYS


def test_late_labels_and_clips_rebuild_the_state_from_their_day(home, monkeypatch):
    con = connect()
    for day in range(DAYS):
        build_clip_features(con, home, DAY0 + timedelta(day))
    # a late revision and a late first label of day-2 clips, and a late clip, all on day 4
    d4 = DAY0 + timedelta(4)
    late_labels = [label("c0201", _at(d4, 3600), 1.5), label("c0203", _at(d4, 7200), 99.0)]
    old = con.execute(
        f"SELECT clip_id, labeled_at, quality_score FROM read_parquet("
        f"'{home.partition_dir('labels', d4)}/*.parquet')"
    ).fetchall()
    put(home, "labels", [label(c, t.isoformat(), s) for c, t, s in old] + late_labels)
    built = []
    ensure = creator_state.ensure
    monkeypatch.setattr(creator_state, "ensure", lambda *a: built.extend(ensure(*a)) or built)
    last = DAY0 + timedelta(DAYS - 1)
    _check_day(con, home, last)
    assert built == [DAY0 + timedelta(d) for d in range(4, DAYS - 1)]
    # nothing changed since: the state is fresh, nothing rebuilt
    built.clear()
    _check_day(con, home, last)
    assert built == []


def test_a_rerun_of_an_earlier_day_gives_the_same_rows(home):
    con = connect()
    first = {}
    for day in range(DAYS):
        first[day] = _rows(con, home, DAY0 + timedelta(day))
    assert _rows(con, home, DAY0 + timedelta(5)) == first[5]
    assert _rows(con, home, DAY0 + timedelta(DAYS - 1)) == first[DAYS - 1]


def test_a_day_reads_the_day_and_the_state_not_the_old_history(home, monkeypatch):
    con = connect()
    for day in range(DAYS):
        build_clip_features(con, home, DAY0 + timedelta(day))
    last = DAY0 + timedelta(DAYS - 1)
    before = _rows(con, home, last)
    # older than any read of the last day: labels 1-5 days after creation (revisions up to
    # ~9), owners looked up 3 days back first; days 0 and 1 go
    monkeypatch.setattr(creator_state, "OWNER_LOOKBACK_DAYS", 3)
    gone = 0
    for table in ("clips", "engagement", "labels"):
        for p in home.partitions(table):
            if date.fromisoformat(p) < last - timedelta(9):
                shutil.rmtree(home.partition_dir(table, p))
                gone += 1
    assert gone == 5  # no label on day 0
    assert _rows(con, home, last) == before
