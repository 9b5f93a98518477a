"""The training set as the asset builds it (#19): only the clips of the training window,
sampled by whole clips to the row budget, written by DuckDB with the window and sample in
the file's metadata; the same rows as the full point-in-time join for the clips it keeps."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest
from feature_support import clip, label, put, window

from models.core.warehouse import Warehouse, connect
from models.features.clip_features import FEATURE_COLUMNS, build_clip_features
from models.features.training_set import (
    build_window,
    compare,
    entity_rows,
    read_window,
    training_set_duckdb,
)

LAST = date(2026, 5, 12)
CUTOFF = datetime(2026, 5, 12, 23, 59, 59, 999999, tzinfo=UTC)
WINDOW = 6
START = CUTOFF - timedelta(days=WINDOW)
US = timedelta(microseconds=1)
DAYS = [LAST - timedelta(days=i) for i in range(10, -1, -1)]


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """28 clips created over 11 days (two at the window's start and 1 us before it), most
    labelled (one label revised, one known only after the cutoff), with engagement, and
    their clip_features built by the pipeline's code for every day."""
    wh = Warehouse(tmp_path_factory.mktemp("tb") / "home")
    created = {f"c{i:02d}": CUTOFF - timedelta(hours=9 * i + 2) for i in range(26)}
    created |= {"edge_in": START, "edge_out": START - US}
    clips, eng, labels = [], [], []
    for n, (cid, at) in enumerate(sorted(created.items())):
        clips.append(clip(cid, _iso(at), creator=f"k{n % 3}"))
        eng.append(window(cid, _iso(at + timedelta(hours=1)), views=10 + n))
        if n % 7 == 3:
            continue  # never labelled
        labels.append(label(cid, _iso(at + timedelta(hours=5)), float(n)))
        if n % 5 == 0:
            labels.append(label(cid, _iso(at + timedelta(hours=20)), float(n) + 0.5))
    labels.append(label("c05", _iso(CUTOFF + US), 99.0))  # after the cutoff: not the target
    put(wh, "clips", clips)
    put(wh, "engagement", [e for e in eng if e["event_timestamp"] <= CUTOFF])
    put(wh, "labels", labels)
    con = connect()
    for d in DAYS:
        build_clip_features(con, wh, d)
    return wh, created


def _moments(created: datetime) -> int:
    """A clip's scoring moments by its age: its creation, then its day-ends (<= 7)."""
    return 1 + min(7, max(0, (LAST - created.date()).days + 1))


def _labelled(wh) -> set[str]:
    rows = (
        connect()
        .execute(
            f"SELECT DISTINCT clip_id FROM {wh.scan('labels')} WHERE labeled_at <= ?", [CUTOFF]
        )
        .fetchall()
    )
    return {r[0] for r in rows}


def _reference(wh, clips: set[str]):
    """The full point-in-time join (every partition) of the given clips."""
    con = connect()
    entities = entity_rows(con, wh, CUTOFF)
    entities = entities.filter([c in clips for c in entities.column("clip_id").to_pylist()])
    return training_set_duckdb(con, wh, entities, FEATURE_COLUMNS)


def _built(wh):
    return (
        connect()
        .sql(f"SELECT * EXCLUDE (ds) FROM {wh.partition_scan('training_set', LAST, with_ds=True)}")
        .to_arrow_table()
    )


def test_the_window_s_clips_with_the_rows_of_the_full_join(home):
    wh, created = home
    meta = build_window(connect(), wh, str(LAST), CUTOFF, WINDOW, 10**9, FEATURE_COLUMNS)
    in_window = {c for c in _labelled(wh) if created[c] >= START}
    assert "edge_in" in in_window and "edge_out" not in in_window
    built = _built(wh)
    assert set(built.column("clip_id").to_pylist()) == in_window
    assert compare(built, _reference(wh, in_window)) == []
    expected = sum(_moments(created[c]) for c in in_window)
    assert meta == {
        "train_window_days": str(WINDOW),
        "train_window_start": START.isoformat(),
        "train_rows_in_window": str(expected),
        "train_sample": "none",
        "train_rows_built": str(built.num_rows),
    }
    assert wh.kv_metadata("training_set", LAST) == {
        k: v for k, v in meta.items() if k != "train_rows_built"
    }
    ids, scores = (built.column(k).to_pylist() for k in ("clip_id", "quality_score"))
    targets = dict(zip(ids, scores, strict=True))
    assert targets["c05"] == 5.5  # the revision known at the cutoff, not the later label


@pytest.mark.parametrize("under", [0, 1])
def test_over_the_budget_whole_clips_in_md5_order_while_their_moments_fit(home, under):
    wh, created = home
    in_window = sorted(
        (c for c in _labelled(wh) if created[c] >= START),
        key=lambda c: (hashlib.md5(c.encode()).hexdigest(), c),
    )
    k = len(in_window) // 2  # a budget of exactly the first k clips' moments, or 1 under
    budget = sum(_moments(created[c]) for c in in_window[:k]) - under
    want = set(in_window[: k - under])
    meta = build_window(connect(), wh, str(LAST), CUTOFF, WINDOW, budget, FEATURE_COLUMNS)
    built = _built(wh)
    assert set(built.column("clip_id").to_pylist()) == want
    assert compare(built, _reference(wh, want)) == []
    assert meta["train_sample"] == f"whole clips by md5(clip_id) up to {budget} rows"
    # what the model reads of it, and its tags: the build's count of the window and sample
    rows, tags = read_window(connect(), wh, str(LAST), CUTOFF, WINDOW, budget)
    assert rows.num_rows == built.num_rows
    assert tags["train_sample"] == meta["train_sample"]
    total = sum(_moments(created[c]) for c in in_window)
    assert tags["train_rows_in_window"] == meta["train_rows_in_window"] == str(total)
    assert tags["train_rows_used"] == str(built.num_rows)


def _key(cid: str) -> int:
    return int(hashlib.md5(cid.encode()).hexdigest()[:16], 16)


def test_the_sample_reads_only_row_groups_up_to_its_largest_key(home):
    from models.features.training_set import _key_bound, stage_window

    wh, created = home
    con = connect()
    stage_window(con, wh, CUTOFF, WINDOW, 20)
    kept = [r[0] for r in con.execute("SELECT clip_id FROM _ts_kept").fetchall()]
    assert 0 < len(kept) < len(created)
    lo, hi = (CUTOFF - timedelta(days=WINDOW)).date(), LAST
    assert _key_bound(con, wh, lo, hi) == f" AND sample_key <= {max(map(_key, kept))}"


def test_files_written_before_the_sample_key_are_read_whole(home, tmp_path):
    """A partition without `sample_key` (written before #19): no bound, the same rows."""
    import shutil

    wh0, created = home
    wh = Warehouse(tmp_path / "home")
    shutil.copytree(wh0.root, wh.root)
    con = connect()
    old = LAST - timedelta(days=2)
    con.execute(
        f"CREATE TABLE _old AS SELECT * EXCLUDE (sample_key, ds) "
        f"FROM {wh.partition_scan('clip_features', old, with_ds=True)}"
    )
    wh.write_partition(con, "clip_features", old, "SELECT * FROM _old", keys=("clip_id",))
    in_window = sorted(
        (c for c in _labelled(wh) if created[c] >= START),
        key=lambda c: (hashlib.md5(c.encode()).hexdigest(), c),
    )
    budget = sum(_moments(created[c]) for c in in_window[:5])
    build_window(con, wh, str(LAST), CUTOFF, WINDOW, budget, FEATURE_COLUMNS)
    built = _built(wh)
    assert set(built.column("clip_id").to_pylist()) == set(in_window[:5])
    assert compare(built, _reference(wh, set(in_window[:5]))) == []
