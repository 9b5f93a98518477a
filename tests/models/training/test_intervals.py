"""Prediction intervals (#17): split-conformal quantiles by age bucket, checked against a
hand computation, at the k = ceil((n + 1) L) boundary, and for coverage on held-out
generated clips (each age bucket within 3 points of the level; wider at creation than
after a week)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from models.training import intervals as iv


def test_bucket_edges_are_inclusive_below_and_bad_ages_are_the_creation_day():
    ages = [0.0, 23.999, 24.0, 71.9, 72.0, 143.99, 144.0, 500.0, -1.0, float("nan")]
    assert iv.bucket_index(ages).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 0, 0]


def test_the_quantile_is_the_k_th_smallest_residual_at_the_boundary():
    r = np.arange(1.0, 10.0)  # 9 residuals: k = ceil(10 L)
    assert iv.conformal_quantile(r, 0.8) == 8.0  # k = 8
    assert iv.conformal_quantile(-r, 0.8) == 8.0  # absolute values
    assert iv.conformal_quantile(r, 0.9) == 9.0  # k = 9 = n: still finite
    assert iv.conformal_quantile(r, 0.9000001) == math.inf  # k = 10 > n: no finite bound
    assert iv.conformal_quantile(r, 0.7999999) == 8.0  # k = ceil(7.999999) = 8
    assert iv.conformal_quantile(r, 0.7) == 7.0
    assert iv.conformal_quantile([], 0.8) == math.inf
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="level"):
            iv.conformal_quantile(r, bad)


def test_calibrate_and_bounds_match_a_hand_computation():
    rng = np.random.default_rng(0)
    ages = np.repeat([2.0, 30.0, 100.0, 150.0], 50)
    pred = rng.uniform(10, 90, 200)
    y = pred + rng.normal(0, 1, 200) * np.repeat([8.0, 5.0, 3.0, 1.0], 50)
    cal = iv.calibrate(ages, y, pred)
    assert cal["method"] == iv.METHOD and cal["levels"] == [0.8, 0.9]
    for i, b in enumerate(cal["buckets"]):
        r = np.sort(np.abs(y - pred)[i * 50 : (i + 1) * 50])
        assert b["n"] == 50
        assert b["q"]["0.8"] == r[math.ceil(51 * 0.8) - 1]  # the 41st smallest
        assert b["q"]["0.9"] == r[math.ceil(51 * 0.9) - 1]  # the 46th
        assert b["mean_abs_residual"] == pytest.approx(r.mean())
    low, high = iv.bounds(cal, [2.0, 150.0, 150.0], [50.0, 99.5, 0.2], level=0.8)
    q0, q3 = cal["buckets"][0]["q"]["0.8"], cal["buckets"][3]["q"]["0.8"]
    assert low.tolist() == [50.0 - q0, max(0.0, 99.5 - q3), max(0.0, 0.2 - q3)]
    assert high.tolist() == [50.0 + q0, min(100.0, 99.5 + q3), min(100.0, 0.2 + q3)]
    with pytest.raises(ValueError, match="not calibrated"):
        iv.bounds(cal, [2.0], [50.0], level=0.95)


def test_the_calibration_document_whole():
    """The document as logged with the model, every key, on residuals 1 (creation day, 3
    rows: too few for 0.8, k = 4) and 0..29 (7 days: k = ceil(31 x 0.8) = 25, the 25th
    smallest is 24; k = 28 for 0.9: 27)."""
    y = [50.0] * 3 + [float(i) for i in range(30)]
    cal = iv.calibrate([1.0] * 3 + [200.0] * 30, y, [49.0] * 3 + [0.0] * 30)
    assert cal == {
        "method": "split_conformal_abs_residual_by_age",
        "levels": [0.8, 0.9],
        "buckets": [
            {"name": "creation_day", "age_hours_from": 0.0, "age_hours_to": 24.0, "n": 3,
             "q": {"0.8": None, "0.9": None}, "mean_abs_residual": 1.0},
            {"name": "1d", "age_hours_from": 24.0, "age_hours_to": 72.0, "n": 0,
             "q": {"0.8": None, "0.9": None}, "mean_abs_residual": None},
            {"name": "3d", "age_hours_from": 72.0, "age_hours_to": 144.0, "n": 0,
             "q": {"0.8": None, "0.9": None}, "mean_abs_residual": None},
            {"name": "7d", "age_hours_from": 144.0, "age_hours_to": None, "n": 30,
             "q": {"0.8": 24.0, "0.9": 27.0}, "mean_abs_residual": 14.5},
        ],
    }  # fmt: skip
    with pytest.raises(ValueError, match="^age_hours, y and pred must have the same length$"):
        iv.calibrate([1.0], [1.0, 2.0], [1.0, 2.0])


def test_a_bucket_too_small_for_its_level_gives_the_whole_score_range():
    cal = iv.calibrate([1.0] * 3 + [200.0] * 30, [50.0] * 33, [49.0] * 33)
    assert cal["buckets"][0]["n"] == 3 and cal["buckets"][0]["q"]["0.8"] is None  # k = 4 > 3
    assert cal["buckets"][1]["n"] == 0 and cal["buckets"][1]["q"]["0.8"] is None
    low, high = iv.bounds(cal, [1.0, 30.0, 200.0], [49.0, 49.0, 49.0])
    assert low.tolist() == [0.0, 0.0, 48.0] and high.tolist() == [100.0, 100.0, 50.0]


@pytest.fixture(scope="module")
def generated():
    """A model trained on generated clips (every scoring moment: creation and the end of
    each of the first 7 days), its holdout, and 6,000 other clips never seen; the label
    is the clip's latent quality plus noise, which engagement reveals as the clip ages."""
    from bench.feature_data import make_clip_features
    from models.training import train as training

    def clips(n, seed, prefix):
        rows, z = make_clip_features(n, all_moments=True, seed=seed, prefix=prefix)
        noise = np.repeat(np.random.default_rng(seed + 100).normal(0, 4, n), 8)
        y = np.clip(50 + 15 * z + noise, 0, 100)
        return rows.append_column("quality_score", pa.array(y))

    model = training.train(clips(6000, 1, "a"), training.TrainParams(n_estimators=120))
    return model, clips(6000, 2, "b")


def test_coverage_on_held_out_clips_is_within_3_points_of_the_level_in_every_bucket(generated):
    from models.serving.scoring import score

    model, unseen = generated
    ho = model.holdout
    cal = iv.calibrate(ho["clip_age_hours"], model.y_holdout, model.holdout_pred)
    pred = score(model, unseen).astype(np.float64)
    y = unseen.column("quality_score").to_numpy()
    age = unseen.column("clip_age_hours").to_numpy()
    which = iv.bucket_index(age)
    assert sorted(set(which.tolist())) == [0, 1, 2, 3]  # every bucket is checked
    for level in iv.LEVELS:
        low, high = iv.bounds(cal, age, pred, level)
        covered = (y >= low) & (y <= high)
        for i, (name, _, _) in enumerate(iv.AGE_BUCKETS):
            got = covered[which == i].mean()
            assert abs(got - level) <= 0.03, (name, level, got)
    q = [b["q"]["0.8"] for b in cal["buckets"]]
    assert q[0] > q[3] * 1.2, q  # the creation day is clearly less certain than day 7
