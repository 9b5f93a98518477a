"""Several views of one entity in one write (`write_views_fast`): a clip's features and its
score land in its one Feast hash, each view under its own never-older rule, read back
through the Feast SDK; and streamed writes (`write_stream`) on Redis and SQLite."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from support import clip_feature_rows

from feature_repo import online_batch, online_write

T = datetime(2025, 4, 1, 12, 0, 0, 250_000, tzinfo=UTC)
SCORE_FIELDS = ["score", "model_version", "score_low", "score_high", "interval_level"]
VIEWS = [("clip_features", {}), ("clip_scores", {"event_timestamp": "score_ts"})]


def night(prefix: str, n: int, *, seed: int, when: datetime, scored: list[bool]) -> pa.Table:
    """`n` clips' features at `when`, and a score (at `when`) where `scored` says so."""
    base = online_write.latest_per_entity(clip_feature_rows(n, prefix, seed=seed))
    rows = base.set_column(
        base.schema.get_field_index("event_timestamp"), "event_timestamp",
        pa.array([when] * n, pa.timestamp("us", tz="UTC")),
    )  # fmt: skip
    score = [float(seed * 10 + i) if s else None for i, s in enumerate(scored)]
    extra = {
        "score": score,
        "model_version": [str(seed) if s else None for s in scored],
        "score_low": [v - 1 if v is not None else None for v in score],
        "score_high": [v + 1 if v is not None else None for v in score],
        "interval_level": [0.8 if s else None for s in scored],
        "score_ts": pa.array([when if s else None for s in scored], pa.timestamp("us", tz="UTC")),
    }
    for name, values in extra.items():
        rows = rows.append_column(name, pa.array(values) if isinstance(values, list) else values)
    return rows


def served(store, ids: list[str]) -> tuple[list[dict], list[dict]]:
    """(the features, the scores) Feast serves for each clip."""
    feats = store.get_online_features(
        features=store.get_feature_service("clip_quality_v1"),
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()
    scores = store.get_online_features(
        features=[f"clip_scores:{f}" for f in SCORE_FIELDS],
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()
    rows = lambda d: [{k: v[i] for k, v in d.items() if k != "clip_id"} for i in range(len(ids))]  # noqa: E731
    return rows(feats), rows(scores)


def expected(rows: pa.Table) -> tuple[list[dict], list[dict]]:
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    table = rows.to_pylist()
    return ([{k: r[k] for k in CLIP_FEATURE_NAMES} for r in table],
            [{k: r[k] for k in SCORE_FIELDS} for r in table])  # fmt: skip


def test_features_and_scores_in_one_write_read_back_through_feast(redis_store, prefix):
    scored = [True, True, False, True, True, False, True]
    rows = night(prefix, 7, seed=3, when=T, scored=scored)
    batches = [rows.slice(0, 3), rows.slice(3)]
    t0 = time.perf_counter()
    res = online_write.write_views_fast(redis_store, batches, VIEWS)
    elapsed = time.perf_counter() - t0
    f, s = res["clip_features"], res["clip_scores"]
    assert 0 < f.seconds == s.seconds <= elapsed  # the one write's own time, both views
    assert (f.rows, f.written, f.skipped, f.corrected) == (7, 7, 0, 0)
    assert (s.rows, s.written, s.skipped, s.corrected) == (5, 5, 0, 0)
    want_f, want_s = expected(rows)
    got_f, got_s = served(redis_store, rows.column("clip_id").to_pylist())
    assert got_f == want_f
    nothing = dict.fromkeys(SCORE_FIELDS)
    assert got_s == [w if ok else nothing for w, ok in zip(want_s, scored, strict=True)]


def test_each_view_keeps_its_own_never_older_rule(redis_store, prefix):
    """Stored: features at T, scores at T + 1 h. A write at T + 30 min replaces the
    features and leaves the newer scores; the counts say so per view."""
    ids_rows = night(prefix, 4, seed=5, when=T, scored=[True] * 4)
    online_write.write_views_fast(redis_store, [ids_rows.drop_columns(["score_ts"]).append_column(
        "score_ts", pa.array([None] * 4, pa.timestamp("us", tz="UTC")))], VIEWS)  # fmt: skip
    later = night(prefix, 4, seed=6, when=T + timedelta(hours=1), scored=[True] * 4)
    online_write.write_views_fast(redis_store, [later], [VIEWS[1]])
    mid = night(prefix, 4, seed=7, when=T + timedelta(minutes=30), scored=[True] * 4)
    res = online_write.write_views_fast(redis_store, [mid], VIEWS)
    f, s = res["clip_features"], res["clip_scores"]
    assert (f.written, f.skipped, s.written, s.skipped) == (4, 0, 0, 4)
    got_f, got_s = served(redis_store, mid.column("clip_id").to_pylist())
    assert got_f == expected(mid)[0]
    assert got_s == expected(later)[1]


def test_a_view_of_the_stored_time_goes_through_the_upsert_the_other_plain(
    redis_store, prefix, monkeypatch
):
    """Scores re-written at their stored time with one changed value, features newer: the
    row goes to the content-aware script; the unchanged score is skipped, not counted."""
    first = night(prefix, 3, seed=8, when=T, scored=[True] * 3)
    online_write.write_views_fast(redis_store, [first], VIEWS)
    again = night(prefix, 3, seed=8, when=T, scored=[True] * 3)
    again = again.set_column(
        again.schema.get_field_index("event_timestamp"), "event_timestamp",
        pa.array([T + timedelta(hours=2)] * 3, pa.timestamp("us", tz="UTC")),
    )  # fmt: skip
    score = again.column("score").to_pylist()
    score[1] = 77.5
    again = again.set_column(again.schema.get_field_index("score"), "score", pa.array(score))
    scripted = []
    real = online_batch.Encoder.count

    def spy(self, offered, status, by_script, calls, replies):
        scripted.append(len(by_script))  # per batch, per cluster node
        return real(self, offered, status, by_script, calls, replies)

    monkeypatch.setattr(online_batch.Encoder, "count", spy)
    res = online_write.write_views_fast(redis_store, [again], VIEWS)
    f, s = res["clip_features"], res["clip_scores"]
    assert sum(scripted) == 3
    assert (f.written, f.corrected, s.written, s.corrected, s.skipped) == (3, 0, 1, 1, 2)
    got_f, got_s = served(redis_store, again.column("clip_id").to_pylist())
    assert got_f == expected(again)[0]
    assert [g["score"] for g in got_s] == score


@pytest.mark.parametrize("store_kind", ["redis_store", "sqlite_store"])
def test_a_streamed_write_equals_a_whole_one(store_kind, online_redis, request, prefix):
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    store = request.getfixturevalue(store_kind)
    rows = online_write.latest_per_entity(clip_feature_rows(9, prefix, seed=11))
    t0 = time.perf_counter()
    res = online_write.write_stream(store, [rows.slice(0, 4).to_batches()[0], rows.slice(4)])
    assert 0 < res.seconds <= time.perf_counter() - t0  # the whole stream's own time
    assert (res.rows, res.written, res.skipped, res.corrected) == (9, 9, 0, 0)
    assert res.method == ("fast" if store_kind == "redis_store" else "stock")
    got, _ = served(store, rows.column("clip_id").to_pylist())
    assert got == [{k: r[k] for k in CLIP_FEATURE_NAMES} for r in rows.to_pylist()]
    again = online_write.write_stream(store, [rows])
    assert (again.rows, again.written, again.skipped) == (9, 0, 9)


def test_the_one_command_write_needs_a_redis_store(sqlite_store, prefix):
    rows = night(prefix, 2, seed=13, when=T, scored=[True, True])
    with pytest.raises(ValueError, match=r"^write_fast needs a Redis online store \(redis_type"):
        online_write.write_views_fast(sqlite_store, [rows], VIEWS)


def test_an_entity_twice_in_a_batch_is_refused_and_across_batches_the_newer_wins(
    redis_store, prefix
):
    rows = night(prefix, 3, seed=12, when=T, scored=[True] * 3)
    twice = pa.concat_tables([rows, rows.slice(1, 1)])
    with pytest.raises(ValueError, match=rf"holds clip_id {prefix}\S* more than once"):
        online_write.write_views_fast(redis_store, [twice], VIEWS)
    older = night(prefix, 3, seed=13, when=T - timedelta(hours=3), scored=[True] * 3)
    newer = night(prefix, 3, seed=14, when=T + timedelta(hours=3), scored=[True] * 3)
    res = online_write.write_views_fast(redis_store, [newer, older], VIEWS)
    assert (res["clip_features"].written, res["clip_features"].skipped) == (3, 3)
    got_f, got_s = served(redis_store, newer.column("clip_id").to_pylist())
    assert (got_f, got_s) == expected(newer)
