"""Train the clip-quality XGBoost regressor on a point-in-time training set.

The training set (`models.features.training_set`) has one row per scoring moment of a clip: keys
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
from pandas.util import hash_array

from models.core.contract import ASPECT_RATIOS, RESOLUTIONS
from models.features.clip_features import CATEGORICAL_FEATURES, FEATURE_COLUMNS
from models.features.training_set import FEATURE_SERVICE
from models.training.params import TrainParams  # noqa: F401  (re-exported)

TARGET = "quality_score"
SCORE_RANGE = (0.0, 100.0)
FIXED_CATEGORIES: dict[str, list[str]] = {
    "resolution": list(RESOLUTIONS),
    "aspect_ratio": list(ASPECT_RATIOS),
}
FINGERPRINT_KEYS = ["clip_id", "event_timestamp"]
FEATURE_TYPES = ["c" if n in CATEGORICAL_FEATURES else "q" for n in FEATURE_COLUMNS]
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
        if pa.types.is_dictionary(col.type) or pa.types.is_null(col.type):
            col = col.cast(pa.string())  # (an all-null column of an online lookup is null-typed)
        codes = pc.index_in(col, value_set=pa.array(cats, pa.string()))
        codes = codes.fill_null(-1).to_numpy().astype(np.int32, copy=False)
        return pd.Categorical.from_codes(codes, categories=cats)
    return pd.Categorical(col, categories=cats)


def _numeric(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        return col.cast(pa.float32(), safe=False).to_numpy()  # nulls -> NaN; big ints round
    return col.to_numpy(dtype=np.float32, na_value=np.nan)


def coded_matrix(matrix: pd.DataFrame) -> np.ndarray:
    """`to_matrix`'s frame as one float32 array, categoricals as their codes (missing: NaN),
    for a `DMatrix` with `feature_types=FEATURE_TYPES`."""
    out = np.empty((len(matrix), len(matrix.columns)), dtype=np.float32)
    for j, name in enumerate(matrix.columns):
        col = matrix[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy()
            out[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            out[:, j] = col.to_numpy(np.float32)
    return out


def time_split(data: Data, params: TrainParams) -> tuple[Data, ...]:
    """(train, valid, holdout) by clip creation time: the newest `holdout_fraction` of clips
    are the holdout, the next `validation_fraction` the early-stopping slice, the rest
    train. All rows of a clip land on one side; ties are broken by clip_id. The parts are
    of the input's kind (pandas or Arrow)."""
    side = split_sides(_col(data, "clip_id"), _col(data, "created_at"), params)
    if isinstance(data, pa.Table):
        return tuple(data.filter(pa.array(side == k)) for k in (0, 1, 2))
    return tuple(data[side == k] for k in (0, 1, 2))


def split_sides(clip_id, created_at, params: TrainParams) -> np.ndarray:
    """Per row: 0 train, 1 valid, 2 holdout (see `time_split`); vectorised over clips."""
    if not (params.holdout_fraction > 0 and params.validation_fraction > 0):
        raise ValueError("holdout_fraction and validation_fraction must both be > 0")
    if isinstance(clip_id, pa.ChunkedArray):
        enc = pc.dictionary_encode(clip_id.combine_chunks())
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        clip_ids = enc.dictionary.to_numpy(zero_copy_only=False).astype(str)
    else:
        codes, uniques = pd.factorize(clip_id, sort=False)
        clip_ids = np.asarray(uniques, dtype=object).astype(str)
    created = _utc_micros(created_at)
    n = len(clip_ids)
    clip_created = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(clip_created, codes, created)
    n_hold = _share(n, params.holdout_fraction)
    n_valid = _share(n, params.validation_fraction)
    if n - n_hold - n_valid < 1:
        raise ValueError(
            f"{n} clips are too few to split {params.holdout_fraction} / "
            f"{params.validation_fraction}"
        )
    order = np.lexsort((clip_ids, clip_created))
    side = np.empty(n, dtype=np.int8)
    side[order] = np.repeat([0, 1, 2], [n - n_hold - n_valid, n_valid, n_hold])
    row_side = side[codes]
    bounds = [(created[row_side == k].min(), created[row_side == k].max()) for k in (0, 1, 2)]
    if not (bounds[0][1] <= bounds[1][0] <= bounds[2][0] and bounds[1][1] <= bounds[2][0]):
        raise AssertionError(f"time split out of order: {bounds}")
    return row_side


def _share(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


def _utc_micros(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        ts = col.cast(pa.timestamp("us", tz="UTC"), safe=False)  # ns -> us truncates
        return ts.cast(pa.int64()).to_numpy()
    t = pd.to_datetime(col, utc=True)
    return t.dt.as_unit("us").astype("int64").to_numpy()


def _time_range(col) -> tuple[pd.Timestamp, pd.Timestamp]:
    if isinstance(col, pa.ChunkedArray):
        mm = pc.min_max(col)
        return tuple(pd.Timestamp(mm[k].as_py()).tz_convert("UTC") for k in ("min", "max"))
    t = pd.to_datetime(col, utc=True)
    return t.min(), t.max()


def _target(part: Data, dtype=np.float32) -> np.ndarray:
    col = _col(part, TARGET)
    if isinstance(col, pa.ChunkedArray):
        return col.cast(pa.from_numpy_dtype(dtype)).to_numpy()
    return col.to_numpy(dtype)


def train(data: Data, params: TrainParams | None = None) -> TrainedModel:
    """Fit on the train slice with early stopping on the validation slice; the booster is
    cut at its best iteration and carries its features and categories as an attribute.

    Arrow input stays Arrow up to the model matrices (only the holdout becomes pandas).
    XGBoost predicts the validation slice every round: it is a plain `DMatrix` of category
    codes (`coded_matrix`), with the same predictions. Measured here on 32-48k validation
    rows: a one-tree prediction takes 3.0 ms on the codes vs 6.4 ms on a pandas-categorical
    `DMatrix`, and the per-round eval added ~23 ms on a `QuantileDMatrix` (with `ref`) vs
    ~6 ms on a pandas-categorical `DMatrix`.
    """
    params = params or TrainParams()
    if isinstance(data, pa.Table):  # train and valid need only the model's columns
        side = split_sides(data.column("clip_id"), data.column("created_at"), params)
        model_cols = data.select([*FEATURE_COLUMNS, TARGET])
        tr, va = (model_cols.filter(pa.array(side == k)) for k in (0, 1))
        ho = data.filter(pa.array(side == 2))
    else:
        tr, va, ho = time_split(data, params)
    cats = category_maps(tr)
    dtrain = xgb.QuantileDMatrix(
        to_matrix(tr, cats), label=_target(tr), enable_categorical=True, nthread=params.nthread
    )
    dvalid = xgb.DMatrix(
        coded_matrix(to_matrix(va, cats)),
        label=_target(va),
        feature_names=FEATURE_COLUMNS,
        feature_types=FEATURE_TYPES,
        enable_categorical=True,
        nthread=params.nthread,
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
    holdout = ho.to_pandas() if isinstance(ho, pa.Table) else ho.reset_index(drop=True).copy()
    holdout["prediction"] = np.clip(booster.inplace_predict(to_matrix(ho, cats)), *SCORE_RANGE)
    start, end = _time_range(_col(data, "event_timestamp"))
    return TrainedModel(
        booster=booster,
        categories=cats,
        features=list(FEATURE_COLUMNS),
        best_iteration=best,
        params=params,
        holdout=holdout,
        y_train_mean=float(_target(tr, np.float64).mean()),
        rows={"train": len(tr), "valid": len(va), "holdout": len(ho), "total": len(data)},
        training_start=start,
        training_end=end,
        data_fingerprint=fingerprint(data),
    )


def fingerprint(data: Data) -> str:
    """sha256 of the training set's rows (keys, target, features), independent of row and
    chunk order and of storage types (timestamps as UTC microseconds, numbers as float64,
    strings and categoricals as text). Vectorised: one 64-bit hash per row (pandas'
    `hash_pandas_object` scheme, each distinct string hashed once), sorted."""
    cols = [*FINGERPRINT_KEYS, TARGET, *FEATURE_COLUMNS]
    hashes = (_column_hash(_col(data, c)) for c in cols)
    rows = np.sort(_combine_hashes(hashes, len(cols)))
    h = hashlib.sha256(json.dumps(cols).encode())
    h.update(rows.tobytes())
    return h.hexdigest()


def _column_hash(col) -> np.ndarray:
    """uint64 per value, equal to `hash_array` of the canonical value (float64, UTC
    microseconds, or text with None for null)."""
    if isinstance(col, pa.ChunkedArray):
        t = col.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return hash_array(_utc_micros(col))
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            enc = pc.dictionary_encode(col.combine_chunks())
            codes = enc.indices.fill_null(-1).to_numpy().astype(np.int64, copy=False)
            return _take_hashes(enc.dictionary.to_numpy(zero_copy_only=False), codes)
        return hash_array(col.cast(pa.float64()).to_numpy())
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(col):
        return hash_array(_utc_micros(col))
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return hash_array(col.to_numpy(dtype=np.float64, na_value=np.nan))
    codes, uniques = pd.factorize(col.astype(object), sort=False)
    return _take_hashes(np.asarray(uniques, dtype=object), codes)


def _take_hashes(uniques: np.ndarray, codes: np.ndarray) -> np.ndarray:
    uniq = hash_array(np.asarray(uniques, dtype=object), categorize=False)
    out = uniq.take(codes) if len(uniq) else np.zeros(len(codes), np.uint64)
    out[codes < 0] = np.iinfo(np.uint64).max  # null, as pandas hashes a missing value
    return out


def _combine_hashes(arrays, num_items: int) -> np.ndarray:
    """Row hashes from column hashes, as `pandas.util.hash_pandas_object` combines them."""
    mult, out = np.uint64(1000003), None
    for i, a in enumerate(arrays):
        out = np.zeros_like(a) + np.uint64(0x345678) if out is None else out
        inverse = num_items - i
        out ^= a
        out *= mult
        mult += np.uint64(82520 + inverse + inverse)
    return out + np.uint64(97531)
