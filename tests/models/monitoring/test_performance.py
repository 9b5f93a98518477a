"""`model_performance` as labels arrive (#17): rmse/mae/coverage/interval width per scored
day and per age bucket at scoring, against a computation in plain Python."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from models.core.warehouse import Warehouse
from models.monitoring import performance

D0 = date(2026, 3, 1)
CREATED = datetime(2026, 3, 1, 6, tzinfo=UTC)


def day_end(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.fixture
def wh(tmp_path):
    """Clips c0..c9 created on D0 06:00, scored at the end of D0 (age 18 h: creation day)
    and of D0+3 (age 90 h: the 3-day bucket), with intervals; labels for c0..c7 only, one
    of them (c7) revised later than `as_of`, and an old score partition without intervals."""
    w = Warehouse(tmp_path / "home", threads=1, memory_limit="512MiB")
    ids = [f"c{i}" for i in range(10)]
    w.write("clips", D0, pa.table({"clip_id": ids, "created_at": [CREATED] * 10}))
    labels = [50.0 + 5 * i for i in range(8)]
    w.write("labels", D0 + timedelta(days=3), pa.table({
        "clip_id": ids[:8] + ["c7"],
        "labeled_at": [datetime(2026, 3, 4, 1, tzinfo=UTC)] * 8 + [datetime(2026, 3, 9, tzinfo=UTC)],
        "quality_score": labels + [0.0],
    }))  # fmt: skip
    for d, spread in ((D0, 10.0), (D0 + timedelta(days=3), 4.0)):
        scores = [55.0 + 3 * i for i in range(10)]
        w.write("clip_scores", d, pa.table({
            "clip_id": ids,
            "score": scores,
            "score_low": [s - spread for s in scores],
            "score_high": [s + spread for s in scores],
            "interval_level": [0.8] * 10,
            "model_version": ["3"] * 10,
            "model_alias": ["champion"] * 9 + ["challenger"],
            "event_timestamp": [day_end(d)] * 10,
        }))  # fmt: skip
    # a day scored before intervals existed: no interval columns in its file
    old = D0 - timedelta(days=1)
    w.write("clip_scores", old, pa.table({
        "clip_id": ["c0"], "score": [50.0], "model_version": ["2"],
        "model_alias": ["champion"], "event_timestamp": [day_end(old)],
    }))  # fmt: skip
    return w, labels


def expected(labels, day_offset: int, spread: float) -> dict:
    rows = [(55.0 + 3 * i, labels[i]) for i in range(8)]  # c8 unlabelled, c9 challenger
    err = [s - y for s, y in rows]
    inside = [s - spread <= y <= s + spread for s, y in rows]
    return {
        "rmse": math.sqrt(sum(e * e for e in err) / len(err)),
        "mae": sum(abs(e) for e in err) / len(err),
        "n_labels": len(err),
        "coverage": sum(inside) / len(inside),
        "mean_interval_width": 2 * spread,
    }


def test_figures_per_day_and_age_bucket_match_a_plain_computation(wh):
    w, labels = wh
    as_of_ds = D0 + timedelta(days=5)
    got = performance.history(w.con, w, as_of_ds, day_end(as_of_ds), window_days=28)
    rows = {r["scored_ds"]: r for r in got.to_pylist()}
    assert sorted(rows) == [D0 - timedelta(days=1), D0, D0 + timedelta(days=3)]
    for d, spread, bucket in ((D0, 10.0, "creation_day"), (D0 + timedelta(days=3), 4.0, "3d")):
        want, r = expected(labels, (d - D0).days, spread), rows[d]
        for k, v in want.items():
            assert r[k] == pytest.approx(v, abs=1e-12), (d, k)
        assert r["interval_level"] == 0.8 and r["model_version"] == "3"
        [age] = r["by_age"]
        assert age["age_bucket"] == bucket
        for k, v in want.items():
            assert age[k] == pytest.approx(v, abs=1e-12), (d, bucket, k)
    old = rows[D0 - timedelta(days=1)]  # no interval: coverage unknown, never 0 or 1
    assert old["coverage"] is None and old["interval_level"] is None
    assert old["mean_interval_width"] is None and old["n_labels"] == 1


def test_the_coverage_boundary_counts_a_label_on_the_bound_as_inside(wh):
    w, _ = wh
    as_of_ds, d = D0 + timedelta(days=5), D0 + timedelta(days=3)

    def coverage(spread: float) -> float:
        t = w.read("clip_scores", d)
        t = t.set_column(
            t.schema.get_field_index("score_low"),
            "score_low",
            pa.array([s - spread for s in t.column("score").to_pylist()]),
        )
        t = t.set_column(t.schema.get_field_index("score_high"), "score_high",
                         pa.array([s + spread for s in t.column("score").to_pylist()]))  # fmt: skip
        w.write("clip_scores", d, t)
        got = performance.history(w.con, w, as_of_ds, day_end(as_of_ds))
        return {r["scored_ds"]: r["coverage"] for r in got.to_pylist()}[d]

    # |score - label| = |5 - 2i| for the labelled clips i = 0..7: 5, 3, 1, 1, 3, 5, 7, 9
    assert coverage(5.0) == 6 / 8  # i = 0 and i = 5 sit on the bound: inside
    assert coverage(4.999999) == 4 / 8  # just under: both outside
    assert coverage(3.0) == 4 / 8 and coverage(2.999999) == 2 / 8


def test_without_scores_or_labels_the_history_is_empty_with_its_columns(tmp_path):
    w = Warehouse(tmp_path / "h", threads=1, memory_limit="512MiB")
    got = performance.history(w.con, w, D0, day_end(D0))
    assert got.num_rows == 0 and "by_age" in got.column_names and "coverage" in got.column_names


def test_the_window_its_edges_and_every_age_bucket(tmp_path):
    """Scores on D0 (clip a at 18 h; n, never in `clips`, of unknown age; f, created after
    it was scored, of negative age: both the creation day), D0+1 (a at 42 h: 1 day; y at
    18 h) and D0+7 (a at 186 h: day 7). The window of `window_days` ends at as_of's day."""
    w = Warehouse(tmp_path / "h", threads=1, memory_limit="512MiB")
    at = {"a": CREATED, "y": CREATED + timedelta(days=1), "f": CREATED + timedelta(days=2)}
    for c, t in at.items():
        w.write("clips", t.date(), pa.table({"clip_id": [c], "created_at": [t]}))
    as_of_ds = D0 + timedelta(days=7)
    scored = {D0: ["a", "n", "f"], D0 + timedelta(days=1): ["a", "y"], as_of_ds: ["a"]}
    for d, ids in scored.items():
        w.write("clip_scores", d, pa.table({
            "clip_id": ids, "score": [60.0] * len(ids), "score_low": [55.0] * len(ids),
            "score_high": [65.0] * len(ids), "interval_level": [0.8] * len(ids),
            "model_version": ["1"] * len(ids), "model_alias": ["champion"] * len(ids),
            "event_timestamp": [day_end(d)] * len(ids),
        }))  # fmt: skip
    assert performance.history(w.con, w, as_of_ds, day_end(as_of_ds)).num_rows == 0  # no labels
    w.write("labels", D0, pa.table({
        "clip_id": ["a", "n", "f", "y"], "labeled_at": [CREATED] * 4,
        "quality_score": [50.0, 70.0, 62.0, 58.0],
    }))  # fmt: skip

    def buckets(**kw):
        got = performance.history(w.con, w, as_of_ds, day_end(as_of_ds), **kw).to_pylist()
        return {r["scored_ds"]: [(a["age_bucket"], a["n_labels"]) for a in r["by_age"]]
                for r in got}  # fmt: skip

    everything = {
        D0: [("creation_day", 3)],
        D0 + timedelta(days=1): [("creation_day", 1), ("1d", 1)],
        as_of_ds: [("7d", 1)],
    }
    assert buckets() == everything  # the default window: 28 days
    assert buckets(window_days=8) == everything  # D0 is the window's first day
    assert buckets(window_days=7) == {k: v for k, v in everything.items() if k != D0}


def test_pooled_coverage_weights_days_by_labels_and_keeps_the_latest_level():
    d = [date(2026, 3, k) for k in (1, 2, 3, 4)]
    rows = [
        {"scored_ds": d[0], "rmse": 3.0, "mae": 2.0, "n_labels": 100, "coverage": 0.5,
         "interval_level": 0.9},  # an older level: left out of the coverage
        {"scored_ds": d[1], "rmse": 1.0, "mae": 1.0, "n_labels": 30, "coverage": None,
         "interval_level": None},  # scored without intervals
        {"scored_ds": d[2], "rmse": 2.0, "mae": 1.0, "n_labels": 100, "coverage": 0.7,
         "interval_level": 0.8},
        {"scored_ds": d[3], "rmse": 2.0, "mae": 1.0, "n_labels": 300, "coverage": 0.9,
         "interval_level": 0.8},
    ]  # fmt: skip
    got = performance.pooled(rows)
    assert got["n_labels"] == 530 and got["interval_level"] == 0.8
    assert got["n_interval_labels"] == 400
    assert got["coverage"] == pytest.approx((100 * 0.7 + 300 * 0.9) / 400, rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt((100 * 9 + 30 + 400 * 4) / 530), rel=1e-12)
    assert got["mae"] == pytest.approx((100 * 2 + 30 * 1 + 400 * 1) / 530, rel=1e-12)
    since = performance.pooled(rows, since=d[3])
    assert (since["coverage"], since["n_interval_labels"]) == (0.9, 300)
    none = performance.pooled(rows[1:2])
    assert (none["coverage"], none["interval_level"], none["n_interval_labels"]) == (None, None, 0)
    assert performance.pooled([]) is None


def test_pooled_by_age_pools_each_bucket_over_the_days():
    def age(name, rmse, mae, n, cov):
        return {"age_bucket": name, "rmse": rmse, "mae": mae, "n_labels": n, "coverage": cov,
                "mean_interval_width": 10.0}  # fmt: skip

    rows = [
        {"scored_ds": date(2026, 2, 28), "rmse": 2.0, "mae": 1.0, "n_labels": 10,
         "coverage": 0.1, "interval_level": 0.9,  # an older level: errors count, coverage not
         "by_age": [age("creation_day", 2.0, 1.0, 10, 0.1)]},
        {"scored_ds": date(2026, 3, 1), "rmse": 2.0, "mae": 1.0, "n_labels": 40,
         "coverage": 0.8, "interval_level": 0.8,
         "by_age": [age("creation_day", 3.0, 2.0, 10, 0.5), age("7d", 1.0, 1.0, 30, 0.9)]},
        {"scored_ds": date(2026, 3, 2), "rmse": 2.0, "mae": 1.0, "n_labels": 30,
         "coverage": None, "interval_level": None,  # no intervals: its coverage is left out
         "by_age": [age("creation_day", 4.0, 3.0, 30, None), age("1d", 2.0, 1.0, 5, None)]},
    ]  # fmt: skip
    got = performance.pooled(rows)["by_age"]
    assert [g["age_bucket"] for g in got] == ["creation_day", "1d", "7d"]  # 3d: no labels
    creation, one_day, week = got
    assert (one_day["n_labels"], one_day["coverage"]) == (5, None)  # never scored with one
    assert creation["n_labels"] == 50
    assert creation["rmse"] == pytest.approx(math.sqrt((10 * 4 + 10 * 9 + 30 * 16) / 50), rel=1e-12)
    assert creation["mae"] == pytest.approx((10 * 1 + 10 * 2 + 30 * 3) / 50, rel=1e-12)
    assert creation["coverage"] == 0.5  # only the day scored with intervals at the level
    assert (week["n_labels"], week["rmse"], week["coverage"]) == (30, 1.0, 0.9)


def test_a_home_scored_only_before_intervals_has_no_coverage(tmp_path):
    """Every clip_scores file predates the interval columns: coverage and width are null,
    never an error (the upgrade path); a day 27 days back is in the default window, 28 not."""
    w = Warehouse(tmp_path / "h", threads=1, memory_limit="512MiB")
    as_of_ds = D0 + timedelta(days=27)
    w.write("clips", D0, pa.table({"clip_id": ["a", "b"], "created_at": [CREATED] * 2}))
    for d, c in ((D0, "a"), (D0 - timedelta(days=1), "b")):
        w.write("clip_scores", d, pa.table({
            "clip_id": [c], "score": [50.0], "model_version": ["1"],
            "model_alias": ["champion"], "event_timestamp": [day_end(d)],
        }))  # fmt: skip
    w.write("labels", D0, pa.table({"clip_id": ["a", "b"], "labeled_at": [CREATED] * 2,
                                    "quality_score": [40.0, 45.0]}))  # fmt: skip
    [row] = performance.history(w.con, w, as_of_ds, day_end(as_of_ds)).to_pylist()
    assert row["scored_ds"] == D0 and (row["rmse"], row["n_labels"]) == (10.0, 1)
    assert (row["coverage"], row["interval_level"], row["mean_interval_width"]) == (None,) * 3
    assert [a["coverage"] for a in row["by_age"]] == [None]


def test_by_age_lists_the_buckets_in_age_order_whatever_the_rows_order(tmp_path):
    w = Warehouse(tmp_path / "h", threads=1, memory_limit="512MiB")
    ages = {"g": 150, "e": 100, "c": 30, "a": 1}  # hours old at D0's end, oldest first
    end = day_end(D0)
    for c, h in ages.items():
        t = end - timedelta(hours=h)
        w.write("clips", t.date(), pa.table({"clip_id": [c], "created_at": [t]}), name=c)
    w.write("clip_scores", D0, pa.table({
        "clip_id": list(ages), "score": [50.0] * 4, "score_low": [40.0] * 4,
        "score_high": [60.0] * 4, "interval_level": [0.8] * 4, "model_version": ["1"] * 4,
        "model_alias": ["champion"] * 4, "event_timestamp": [end] * 4,
    }))  # fmt: skip
    w.write("labels", D0, pa.table({"clip_id": list(ages), "labeled_at": [end] * 4,
                                    "quality_score": [50.0] * 4}))  # fmt: skip
    [row] = performance.history(w.con, w, D0, end).to_pylist()
    assert [a["age_bucket"] for a in row["by_age"]] == ["creation_day", "1d", "3d", "7d"]
