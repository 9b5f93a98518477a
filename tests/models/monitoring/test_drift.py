"""Drift statistics: equal to references, quiet on stable data, exact on planted shifts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from bench.feature_store import make_clip_features
from models.features.clip_features import FEATURE_COLUMNS
from models.monitoring import drift


def one_row_per_clip(n: int, seed: int) -> pa.Table:
    """Realistic clip_features rows: one moment per clip (lognormal views, skewed
    languages and topics, nulls where the warehouse has them)."""
    table, _ = make_clip_features(n, all_moments=False, seed=seed)
    return table


@pytest.fixture(scope="module")
def reference() -> dict:
    table = one_row_per_clip(200_000, seed=1)
    return drift.profile(table, FEATURE_COLUMNS)


def test_profile_kinds_cover_every_feature(reference):
    kinds = {k: v["kind"] for k, v in reference["features"].items()}
    assert set(kinds) == set(FEATURE_COLUMNS)
    assert kinds["topic"] == kinds["has_captions"] == drift.CATEGORICAL
    assert kinds["duration_s"] == kinds["views_7d"] == drift.NUMERICAL
    assert len(reference["features"]["duration_s"]["quantiles"]) == drift.GRID


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(3, 0.6, 300_000), rng.lognormal(3.1, 0.6, 200_000)
    pa_, pb = (drift.column_profile(pa.chunked_array([x])) for x in (a, b))
    got = drift.wasserstein_normalised(pa_, pb)
    want = wasserstein_distance(a, b) / a.std()
    assert got == pytest.approx(want, rel=0.02)


def test_jensen_shannon_matches_scipy_and_keeps_unseen_categories():
    ref, cur = {"a": 50, "b": 30, "c": 20}, {"a": 40, "b": 30, "d": 30}
    got, unseen = drift.jensen_shannon(ref, cur)
    want = jensenshannon([50, 30, 20, 0], [40, 30, 0, 30], base=2)
    assert got == pytest.approx(want, abs=1e-12)
    assert unseen == ["d"]


def test_psi_of_a_known_shift():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 400_000), rng.normal(0.5, 1, 400_000)
    pa_, pb = (drift.column_profile(pa.chunked_array([x])) for x in (a, b))
    # PSI of N(0,1) vs N(0.5,1) on deciles is ~0.25 (computed with the exact normal CDF)
    edges = np.quantile(a, np.arange(1, 10) / 10)
    r = np.diff(np.concatenate([[0], np.searchsorted(np.sort(a), edges) / len(a), [1]]))
    c = np.diff(np.concatenate([[0], np.searchsorted(np.sort(b), edges) / len(b), [1]]))
    assert drift.psi(pa_, pb) == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=0.02)


@pytest.mark.parametrize("method", ["wasserstein", "psi"])
@pytest.mark.parametrize("n", [2_000, 20_000, 200_000])
def test_same_distribution_flags_nothing(reference, n, method):
    current = drift.profile(one_row_per_clip(n, seed=10 + n), FEATURE_COLUMNS)
    result = drift.compare(reference, current, drift.DriftThresholds(numerical_method=method))
    worst = max(result["features"].items(), key=lambda kv: kv[1]["statistic"] / kv[1]["threshold"])
    assert result["drifted_features"] == [], worst
    assert not result["dataset_drift"]
    # and well below the thresholds, not just under them
    assert worst[1]["statistic"] < 0.6 * worst[1]["threshold"], worst


def planted(table: pa.Table, rng) -> pa.Table:
    """Longer clips (+40%: half a standard deviation of log duration), a new language on
    12% of rows, 30% more gaming."""
    n = table.num_rows

    def put(t, name, values):
        return t.set_column(t.schema.get_field_index(name), name, values)

    table = put(table, "duration_s", pc.multiply(table.column("duration_s"), 1.4))
    lang = np.where(rng.random(n) < 0.12, "xx", table.column("language").to_numpy(False))
    table = put(table, "language", pa.array(lang))
    topic = np.where(rng.random(n) < 0.3, "gaming", table.column("topic").to_numpy(False))
    return put(table, "topic", pa.array(topic))


@pytest.mark.parametrize("method", ["wasserstein", "psi"])
@pytest.mark.parametrize("n", [2_000, 50_000])
def test_planted_shift_flags_exactly_the_shifted_features(reference, n, method):
    rng = np.random.default_rng(n)
    current = planted(one_row_per_clip(n, seed=99 + n), rng)
    # duration_min is duration_s / 60 in the warehouse: shift it too, it is the same signal
    current = current.set_column(
        current.schema.get_field_index("duration_min"),
        "duration_min",
        pc.divide(current.column("duration_s"), 60.0),
    )
    result = drift.compare(
        reference,
        drift.profile(current, FEATURE_COLUMNS),
        drift.DriftThresholds(numerical_method=method),
    )
    assert result["drifted_features"] == ["duration_min", "duration_s", "language", "topic"]
    assert result["features"]["language"]["unseen"] == ["xx"]
    assert result["drift_share"] == pytest.approx(4 / len(FEATURE_COLUMNS))
    assert not result["dataset_drift"]


def test_prediction_drift_and_dataset_drift():
    rng = np.random.default_rng(5)
    t = one_row_per_clip(5_000, seed=5)
    ref = drift.profile(t, ["duration_s", "topic"], predictions=rng.normal(50, 10, 5_000))
    cur = drift.profile(t, ["duration_s", "topic"], predictions=rng.normal(58, 10, 5_000))
    result = drift.compare(ref, cur, drift.DriftThresholds(drift_share=0.5))
    assert result["prediction"]["drifted"] and not result["dataset_drift"]
    moved = drift.profile(planted(t, rng), ["duration_s", "topic"])
    assert drift.compare(ref, moved)["dataset_drift"]  # 1 of 2 features >= 0.5


def test_missing_values_are_reported_not_counted():
    a = pa.chunked_array([pa.array([1.0, 2.0, None, 4.0] * 1000)])
    b = pa.chunked_array([pa.array([1.0, None, None, 4.0] * 1000)])
    ra, rb = drift.column_profile(a), drift.column_profile(b)
    assert ra["missing"] == 0.25 and rb["missing"] == 0.5
    out = drift.compare_column(ra, rb, drift.DriftThresholds(noise_alpha=0))
    assert out["missing_current"] == 0.5
    # the statistic is over the non-missing values only: {1, 2, 4} against {1, 4}
    ref, cur = np.array([1.0, 2.0, 4.0] * 1000), np.array([1.0, 4.0] * 1000)
    want = wasserstein_distance(ref, cur) / ref.std()  # 0.5 / 1.247
    assert out["method"] == "wasserstein" and out["statistic"] == pytest.approx(want, rel=0.01)
    assert out["threshold"] == 0.1 and out["drifted"]  # 0.40 is far above it
    # PSI on the reference's deciles, by hand: bins {1}, {2}, {4} hold 1/3 each of the
    # reference and 1/2, 0 (floored at PSI_EPS), 1/2 of the current values
    r, c = np.full(3, 1 / 3), np.array([0.5, drift.PSI_EPS, 0.5])
    out = drift.compare_column(ra, rb, drift.DriftThresholds(numerical_method="psi"))
    assert out["statistic"] == pytest.approx(np.sum((c - r) * np.log(c / r)), rel=0.01)
    assert out["threshold"] == 0.2 and out["drifted"]  # 2.8 is far above it


def test_a_feature_absent_from_the_day_is_an_error_naming_it(reference):
    current = drift.profile(one_row_per_clip(100, seed=3), FEATURE_COLUMNS[:-1])
    with pytest.raises(KeyError, match=FEATURE_COLUMNS[-1]):
        drift.compare(reference, current)
