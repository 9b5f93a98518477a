"""Train the clip-quality XGBoost regressor on a point-in-time training set.

The training set (`models.training_set`) has one row per scoring moment of a clip: keys
`clip_id`, `event_timestamp`, `created_at`, `creator_id`, every name in `FEATURE_COLUMNS`
and the target `quality_score` (0-100). Several rows share a clip, so every split is by
clip: the newest clips (by `created_at`) are the holdout, the next newest the
early-stopping slice, the rest train. Nothing is random about the split.

Categoricals are pandas `category` columns with fixed category lists, so training and
scoring encode a value the same way: `resolution` and `aspect_ratio` from the contract,
`language` and `topic` the sorted values seen in the training slice (stored with the
model; a value never seen in training scores as missing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb

from models.contract import ASPECT_RATIOS, RESOLUTIONS
from models.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS
from models.train_params import TrainParams  # noqa: F401  (re-exported)
from models.training_set import FEATURE_SERVICE

TARGET = "quality_score"
SCORE_RANGE = (0.0, 100.0)
FIXED_CATEGORIES: dict[str, list[str]] = {
    "resolution": list(RESOLUTIONS),
    "aspect_ratio": list(ASPECT_RATIOS),
}
FINGERPRINT_KEYS = ["clip_id", "event_timestamp"]
BOOSTER_ATTR = "clipflow"  # booster attribute holding features and categories as JSON

Data = pd.DataFrame | pa.Table


@dataclass
class TrainedModel:
    """A trained booster (cut at its best iteration) and what it was trained on.

    `holdout` holds the holdout rows (keys, features, target) plus `prediction`, so a
    champion can be scored on the very same rows.
    """

    booster: xgb.Booster
    categories: dict[str, list[str]]
    features: list[str]
    best_iteration: int
    params: TrainParams
    holdout: pd.DataFrame
    y_train_mean: float
    rows: dict[str, int]
    training_start: pd.Timestamp
    training_end: pd.Timestamp
    data_fingerprint: str
    feature_service: str = FEATURE_SERVICE

    @property
    def y_holdout(self) -> np.ndarray:
        return self.holdout[TARGET].to_numpy(dtype=np.float64)

    @property
    def holdout_pred(self) -> np.ndarray:
        return self.holdout["prediction"].to_numpy(dtype=np.float64)


def category_maps(data: Data) -> dict[str, list[str]]:
    """Category lists of the categorical features: fixed for resolution and aspect_ratio,
    the sorted non-null values of `data` for the others."""
    maps = {}
    for name in CATEGORICAL_FEATURES:
        if name in FIXED_CATEGORIES:
            maps[name] = list(FIXED_CATEGORIES[name])
        elif isinstance(data, pa.Table):
            maps[name] = sorted(
                pc.unique(data.column(name)).drop_null().cast(pa.string()).to_pylist()
            )
        else:
            maps[name] = sorted(str(v) for v in data[name].dropna().unique())
    return maps


def to_matrix(data: Data, categories: Mapping[str, list[str]] | None = None) -> pd.DataFrame:
    """The model matrix: FEATURE_COLUMNS in order, numerics as float32 (null -> NaN),
    categoricals as `category` with the given lists (a value not in its list -> NaN).

    `categories=None` derives them from `data` (`category_maps`): only for training; at
    scoring time pass the model's own maps.
    """
    if categories is None:
        categories = category_maps(data)
    cols = {}
    for name in FEATURE_COLUMNS:
        if name in CATEGORICAL_FEATURES:
            cols[name] = _categorical(_col(data, name), list(categories[name]))
        else:
            cols[name] = _numeric(_col(data, name))
    return pd.DataFrame(cols, copy=False)


def _col(data: Data, name: str):
    return data.column(name) if isinstance(data, pa.Table) else data[name]


def _categorical(col, cats: list[str]) -> pd.Categorical:
    if isinstance(col, pa.ChunkedArray):
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        codes = pc.index_in(col, value_set=pa.array(cats, pa.string()))
        codes = codes.fill_null(-1).to_numpy().astype(np.int32, copy=False)
        return pd.Categorical.from_codes(codes, categories=cats)
    return pd.Categorical(col, categories=cats)


def _numeric(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        return col.cast(pa.float32()).to_numpy()  # nulls -> NaN
    return col.to_numpy(dtype=np.float32, na_value=np.nan)


def time_split(df: pd.DataFrame, params: TrainParams) -> tuple[pd.DataFrame, ...]:
    """(train, valid, holdout) by clip creation time: the newest `holdout_fraction` of clips
    are the holdout, the next `validation_fraction` the early-stopping slice, the rest
    train. All rows of a clip land on one side; ties are broken by clip_id."""
    if not (params.holdout_fraction > 0 and params.validation_fraction > 0):
        raise ValueError("holdout_fraction and validation_fraction must both be > 0")
    codes, clip_ids = pd.factorize(df["clip_id"], sort=False)
    created = _utc_micros(df["created_at"])
    clip_created = pd.Series(created).groupby(codes).min().to_numpy()
    n = len(clip_ids)
    n_hold = _share(n, params.holdout_fraction)
    n_valid = _share(n, params.validation_fraction)
    if n - n_hold - n_valid < 1:
        raise ValueError(
            f"{n} clips are too few to split {params.holdout_fraction} / "
            f"{params.validation_fraction}"
        )
    order = np.lexsort((np.asarray(clip_ids, dtype=object).astype(str), clip_created))
    side = np.empty(n, dtype=np.int8)  # 0 train, 1 valid, 2 holdout
    side[order] = np.repeat([0, 1, 2], [n - n_hold - n_valid, n_valid, n_hold])
    row_side = side[codes]
    parts = tuple(df[row_side == k] for k in (0, 1, 2))
    bounds = [(created[row_side == k].min(), created[row_side == k].max()) for k in (0, 1, 2)]
    if not (bounds[0][1] <= bounds[1][0] <= bounds[2][0] and bounds[1][1] <= bounds[2][0]):
        raise AssertionError(f"time split out of order: {bounds}")
    return parts


def _share(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


def _utc_micros(s: pd.Series) -> np.ndarray:
    t = pd.to_datetime(s, utc=True)
    return t.dt.as_unit("us").astype("int64").to_numpy()


def train(data: Data, params: TrainParams | None = None) -> TrainedModel:
    """Fit on the train slice with early stopping on the validation slice; the booster is
    cut at its best iteration and carries its features and categories as an attribute."""
    params = params or TrainParams()
    df = data.to_pandas() if isinstance(data, pa.Table) else data
    tr, va, ho = time_split(df, params)
    cats = category_maps(tr)
    dtrain = xgb.QuantileDMatrix(
        to_matrix(tr, cats),
        label=tr[TARGET].to_numpy(np.float32),
        enable_categorical=True,
        nthread=params.nthread,
    )
    dvalid = xgb.QuantileDMatrix(
        to_matrix(va, cats),
        label=va[TARGET].to_numpy(np.float32),
        enable_categorical=True,
        nthread=params.nthread,
        ref=dtrain,
    )
    booster = xgb.train(
        params.xgb_params(),
        dtrain,
        num_boost_round=params.n_estimators,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=params.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    booster = booster[: best + 1]
    booster.set_attr(
        **{BOOSTER_ATTR: json.dumps({"features": FEATURE_COLUMNS, "categories": cats})}
    )
    holdout = ho.reset_index(drop=True).copy()
    holdout["prediction"] = np.clip(booster.inplace_predict(to_matrix(ho, cats)), *SCORE_RANGE)
    ts = pd.to_datetime(df["event_timestamp"], utc=True)
    return TrainedModel(
        booster=booster,
        categories=cats,
        features=list(FEATURE_COLUMNS),
        best_iteration=best,
        params=params,
        holdout=holdout,
        y_train_mean=float(tr[TARGET].mean()),
        rows={"train": len(tr), "valid": len(va), "holdout": len(ho), "total": len(df)},
        training_start=ts.min(),
        training_end=ts.max(),
        data_fingerprint=fingerprint(df),
    )


def fingerprint(data: Data) -> str:
    """sha256 of the training set's rows (keys, target, features), independent of row and
    chunk order and of storage types (timestamps as UTC microseconds, numbers as float64,
    strings and categoricals as text). Vectorised: one 64-bit hash per row, sorted."""
    cols = [*FINGERPRINT_KEYS, TARGET, *FEATURE_COLUMNS]
    df = data.select(cols).to_pandas() if isinstance(data, pa.Table) else data[cols]
    canon = pd.DataFrame({c: _canonical(df[c]) for c in cols}, copy=False)
    rows = np.sort(pd.util.hash_pandas_object(canon, index=False).to_numpy())
    h = hashlib.sha256(json.dumps(cols).encode())
    h.update(rows.tobytes())
    return h.hexdigest()


def _canonical(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
        return pd.Series(_utc_micros(s))
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return pd.Series(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return pd.Series(s.astype(object).where(s.notna(), None).to_numpy(dtype=object))
