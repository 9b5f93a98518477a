"""Scoring: the model's own encoding, batching, Arrow and Parquet input, clipping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from models.core.contract import ASPECT_RATIOS, RESOLUTIONS
from models.features.clip_features import CATEGORICAL_FEATURES, FEATURE_COLUMNS
from models.serving import scoring
from models.training import train as training


def make_training_set(n_clips: int = 400, seed: int = 0) -> pd.DataFrame:
    """Clips over 20 days, 2 scoring moments each; target driven by a category and a number."""
    rng = np.random.default_rng(seed)
    c = {n: rng.normal(size=n_clips) for n in FEATURE_COLUMNS if n not in CATEGORICAL_FEATURES}
    c |= {
        "resolution": rng.choice(RESOLUTIONS, n_clips),
        "aspect_ratio": rng.choice(ASPECT_RATIOS, n_clips),
        "language": rng.choice(["en", "es", "pt"], n_clips),
        "topic": rng.choice(["gaming", "music"], n_clips),
    }
    df = pd.DataFrame(c)
    lang = df["language"].map({"en": 0.0, "es": 15.0, "pt": -15.0})
    df["quality_score"] = np.clip(
        50 + lang + 10 * df["hook_strength"] + rng.normal(0, 3, n_clips), 0, 100
    )
    df["clip_id"] = [f"c{i:05d}" for i in range(n_clips)]
    df["creator_id"] = "k1"
    df["created_at"] = pd.Timestamp("2026-02-01", tz="UTC") + pd.to_timedelta(
        rng.uniform(0, 20 * 86400, n_clips), unit="s"
    )
    df = df.loc[df.index.repeat(2)].reset_index(drop=True)
    df["event_timestamp"] = df["created_at"] + pd.to_timedelta(np.tile([0, 1], n_clips), "D")
    return df


@pytest.fixture(scope="module")
def df():
    return make_training_set()


@pytest.fixture(scope="module")
def model(df):
    return training.train(df, training.TrainParams(n_estimators=30))


def predict_by_hand(booster: xgb.Booster, categories: dict, frame: pd.DataFrame) -> np.ndarray:
    """The booster's `predict` on a DMatrix built from the raw columns (numerics as float,
    a category as its index in the model's list, NaN when absent), clipped to 0-100."""
    cols = []
    for name in booster.feature_names:
        if name in categories:
            code = {v: float(i) for i, v in enumerate(categories[name])}
            cols.append([code.get(v, np.nan) for v in frame[name]])
        else:
            cols.append(frame[name].to_numpy(np.float64))
    matrix = xgb.DMatrix(
        np.column_stack(cols),
        feature_names=booster.feature_names,
        feature_types=booster.feature_types,
        enable_categorical=True,
    )
    return np.clip(booster.predict(matrix), 0.0, 100.0)


def test_score_is_the_boosters_prediction_clipped(df, model):
    expected = predict_by_hand(model.booster, model.categories, df)
    got = scoring.score(model, df)
    assert got.dtype == np.float32 and got.shape == (len(df),)
    assert expected.std() > 5  # the rows get different scores, not one constant
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.array_equal(
        scoring.score(model, model.holdout), model.holdout_pred.astype(np.float32)
    )


def test_batches_and_arrow_input_give_the_same_scores(df, model):
    whole = scoring.score(model, df)
    assert np.array_equal(scoring.score(model, df, batch_rows=37), whole)
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert np.array_equal(scoring.score(model, table, batch_rows=100), whole)


def test_encoding_does_not_depend_on_the_batch(df, model):
    """One row alone scores as it does among others (categories are the model's, not the
    batch's), and a language never seen in training scores like a missing one."""
    whole = scoring.score(model, df)
    assert scoring.score(model, df.iloc[[5]])[0] == whole[5]
    only_pt = df[df["language"] == "pt"]
    assert np.array_equal(scoring.score(model, only_pt), whole[df["language"].eq("pt").to_numpy()])
    unseen = scoring.score(model, df.head(20).assign(language="xx"))
    missing = scoring.score(model, df.head(20).assign(language=None))
    assert np.array_equal(unseen, missing)


def test_scores_are_clipped_to_the_scale(df):
    """A booster whose raw predictions leave [0, 100] at both ends scores within it."""
    cats = training.category_maps(df)
    x = training.to_matrix(df, cats)
    target = 50 + 100 * df["hook_strength"].to_numpy()  # about -250 to 350
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(x, target, enable_categorical=True), 20)
    wide = SimpleNamespace(booster=booster, categories=cats)
    raw = booster.inplace_predict(x)
    assert (raw < 0).sum() > 50 and (raw > 100).sum() > 50
    got = scoring.score(wide, df)
    assert got.min() == 0.0 and got.max() == 100.0
    np.testing.assert_allclose(got, predict_by_hand(booster, cats, df), rtol=0, atol=1e-4)


def test_score_parquet_streams_keys_and_scores(df, model, tmp_path):
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), src, row_group_size=150)
    assert scoring.score_parquet(model, src, dst, batch_rows=128) == len(df)
    out = pq.read_table(dst)
    assert out.column_names == ["clip_id", "event_timestamp", "score"]
    assert out.column("clip_id").to_pylist() == df["clip_id"].tolist()
    assert np.array_equal(out.column("score").to_numpy(), scoring.score(model, df))

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pandas(df.head(0), preserve_index=False), empty)
    assert scoring.score_parquet(model, empty, tmp_path / "out0.parquet") == 0
    assert pq.read_table(tmp_path / "out0.parquet").num_rows == 0
