"""Training: the model matrix, the clip-level time split, reproducibility, the fingerprint,
and a model that learns a learnable signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.core.contract import ASPECT_RATIOS, RESOLUTIONS
from models.features.clip_features import CATEGORICAL_FEATURES, FEATURE_COLUMNS
from models.training import train as training
from models.training.evaluation import baseline_metrics, metrics

TOPICS = ["gaming", "podcast", "music", "news", "sports"]
FAST = training.TrainParams(n_estimators=50)


def make_training_set(n_clips: int = 800, seed: int = 0, rows_per_clip: int = 4) -> pd.DataFrame:
    """Clips over 30 days, each scored at creation and at its first day-ends. The target is
    a nonlinear signal (convex hook, duration sweet spot, captions x speech, topic, format)
    of std ~14 plus N(0, 4) noise: a perfect model reaches holdout R^2 ~0.92."""
    rng = np.random.default_rng(seed)
    c = {n: rng.normal(size=n_clips) for n in FEATURE_COLUMNS if n not in CATEGORICAL_FEATURES}
    c |= {
        "duration_s": np.clip(rng.lognormal(3.4, 0.6, n_clips), 3, 600),
        "resolution": rng.choice(RESOLUTIONS, n_clips),
        "aspect_ratio": rng.choice(ASPECT_RATIOS, n_clips),
        "language": rng.choice(["en", "es", "pt", "de"], n_clips),
        "topic": rng.choice(TOPICS, n_clips),
        "has_captions": rng.random(n_clips) < 0.5,
        "speech_ratio": rng.random(n_clips),
        "hook_strength": rng.random(n_clips),
    }
    offset = pd.Series([-8.0, -3.0, 0.0, 3.0, 8.0], TOPICS)[c["topic"]].to_numpy()
    quality = (
        25
        + 40 * c["hook_strength"] ** 2
        + 15 * np.exp(-(((c["duration_s"] - 30) / 15) ** 2))
        + 8 * (c["has_captions"] & (c["speech_ratio"] > 0.5))
        + offset
        + 5 * np.isin(c["aspect_ratio"], ["9:16", "4:5"])
        + rng.normal(0, 4, n_clips)
    )
    clips = pd.DataFrame(c)
    clips["clip_id"] = [f"c{i:05d}" for i in range(n_clips)]
    clips["creator_id"] = [f"k{i}" for i in rng.integers(0, 40, n_clips)]
    clips["created_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        rng.uniform(0, 30 * 86400, n_clips), unit="s"
    )
    clips["quality_score"] = np.clip(quality, 0, 100)
    df = clips.loc[clips.index.repeat(rows_per_clip)].reset_index(drop=True)
    day = np.tile(np.arange(rows_per_clip), n_clips)
    df["event_timestamp"] = df["created_at"].dt.floor("D") + pd.to_timedelta(day, unit="D")
    df.loc[day == 0, "event_timestamp"] = df["created_at"]
    df["clip_age_hours"] = (df["event_timestamp"] - df["created_at"]).dt.total_seconds() / 3600
    df["creator_label_mean"] = np.where(rng.random(len(df)) < 0.3, np.nan, df["creator_label_mean"])
    return df


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_training_set()


@pytest.fixture(scope="module")
def trained(df) -> training.TrainedModel:
    return training.train(df, FAST)


def test_to_matrix_orders_features_and_fixes_categories(df):
    cats = training.category_maps(df)
    assert cats["resolution"] == list(RESOLUTIONS)
    assert cats["aspect_ratio"] == list(ASPECT_RATIOS)
    assert cats["language"] == ["de", "en", "es", "pt"]
    x = training.to_matrix(df, cats)
    assert list(x.columns) == FEATURE_COLUMNS
    for name in CATEGORICAL_FEATURES:
        assert list(x[name].cat.categories) == cats[name]
    numeric = [c for c in FEATURE_COLUMNS if c not in CATEGORICAL_FEATURES]
    assert numeric and all(x[c].dtype == np.float32 for c in numeric)
    assert x["creator_label_mean"].isna().any()  # nulls stay missing

    # the same value gets the same code whatever else is in the batch; unseen -> NaN
    few = df.head(3).assign(language=["pt", "xx", None])
    xf = training.to_matrix(few, cats)
    assert list(xf["language"].astype(object).fillna("NA")) == ["pt", "NA", "NA"]
    assert xf["language"].cat.codes.tolist() == [3, -1, -1]
    # Arrow input encodes exactly like pandas input
    xa = training.to_matrix(pa.Table.from_pandas(few, preserve_index=False), cats)
    pd.testing.assert_frame_equal(xa, xf)


def test_time_split_keeps_clips_whole_and_newest_clips_out_of_train(df):
    shuffled = df.sample(frac=1.0, random_state=3)
    train, valid, holdout = training.time_split(shuffled, FAST)
    ids = [set(p["clip_id"]) for p in (train, valid, holdout)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # a clip on one side
    assert len(train) + len(valid) + len(holdout) == len(df)
    assert (len(ids[0]), len(ids[1]), len(ids[2])) == (560, 80, 160)  # 70/10/20 of 800
    assert train["created_at"].max() <= valid["created_at"].min()
    assert valid["created_at"].max() <= holdout["created_at"].min()
    # deterministic: the row order of the input does not change the split
    again = training.time_split(df, FAST)
    assert [set(p["clip_id"]) for p in again] == ids


def test_training_is_reproducible(df, trained):
    again = training.train(df, FAST)
    assert np.array_equal(again.holdout_pred, trained.holdout_pred)
    assert bytes(again.booster.save_raw("ubj")) == bytes(trained.booster.save_raw("ubj"))


def test_booster_is_cut_at_best_iteration_and_describes_itself(trained):
    assert trained.booster.num_boosted_rounds() == trained.best_iteration + 1
    assert trained.features == FEATURE_COLUMNS
    assert training.BOOSTER_ATTR in trained.booster.attributes()
    assert trained.rows == {"train": 2240, "valid": 320, "holdout": 640, "total": 3200}
    assert trained.holdout["prediction"].between(0, 100).all()


def test_model_learns_the_signal(trained):
    # The target's signal (std ~14) is ~3.5x its noise (sd 4): a perfect model reaches R^2
    # ~0.92 and the training mean ~0. 0.75 sits well above anything a broken pipeline
    # (shuffled rows, misencoded categoricals, a leaky or empty split) reaches here, and
    # below the ceiling with room for 50 trees on 560 training clips.
    got = metrics(trained.y_holdout, trained.holdout_pred)
    base = baseline_metrics(trained.y_train_mean, trained.y_holdout)
    assert got["r2"] > 0.75
    assert base["r2"] < 0.05
    assert got["rmse"] < 0.6 * base["rmse"]


def test_fingerprint_is_stable_and_sensitive(df):
    fp = training.fingerprint(df)
    assert fp == training.fingerprint(df.sample(frac=1.0, random_state=1))  # row order
    assert fp == training.fingerprint(pa.Table.from_pandas(df))  # storage
    us = df.assign(event_timestamp=df["event_timestamp"].dt.as_unit("us"))
    assert fp == training.fingerprint(us)  # timestamp unit
    changed = df.copy()
    changed.loc[5, "quality_score"] += 0.01
    assert training.fingerprint(changed) != fp
    assert training.fingerprint(df.drop(index=7)) != fp
