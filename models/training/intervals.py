"""Prediction intervals for clip scores: split-conformal calibration on the gate's holdout,
by the clip's age at scoring (#17).

A score made at a clip's creation (no engagement yet) is far less certain than one made
after a week of engagement, so one interval width for every score would be too wide for
old clips and too narrow for new ones. The holdout (the newest clips, never trained on:
models/training/train.py `time_split`) holds every scoring moment of its clips: creation
and the end of each of their first 7 days. Its absolute residuals |label - prediction| are
split by the moment's age (`clip_age_hours`) into `AGE_BUCKETS`, and within each bucket
the conformal quantile at level L is the k-th smallest residual, k = ceil((n + 1) L)
(the finite-sample split-conformal rule: a new score of that bucket, exchangeable with the
holdout's, is within ±q of its label with probability at least L). Where a bucket has too
few rows for that (k > n), its quantile is infinite and its interval the whole score range
[0, 100]: an interval is never narrower than the data can back.

The calibration is a JSON document logged with the model (`intervals.json`, read back
with `registry.load_document`); `bounds` turns it into `score_low`/`score_high`, clipped to
the score range, vectorised over a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

INTERVALS_FILE = "intervals.json"
METHOD = "split_conformal_abs_residual_by_age"
LEVELS = (0.8, 0.9)  # calibrated and logged with the model
DEFAULT_LEVEL = 0.8  # the level `clip_scores` carries (score_low, score_high)
SCORE_RANGE = (0.0, 100.0)
# (name, lower age in hours inclusive, upper exclusive). A clip is scored at its creation
# and at the end of each of its first 7 days (ages 0 to < 168 h): the creation day, after
# 1-2 days, 3-5 days, and its seventh day (144 h on, the week's last score)
AGE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("creation_day", 0.0, 24.0),
    ("1d", 24.0, 72.0),
    ("3d", 72.0, 144.0),
    ("7d", 144.0, math.inf),
)


def bucket_index(age_hours) -> np.ndarray:
    """The `AGE_BUCKETS` index of each age (hours since creation); a negative or missing
    age goes to the creation day (the least certain bucket)."""
    age = np.asarray(age_hours, dtype=np.float64)
    age = np.where(np.isfinite(age), age, 0.0)
    edges = np.array([lo for _, lo, _ in AGE_BUCKETS[1:]])
    return np.searchsorted(edges, age, side="right")


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The k-th smallest absolute residual, k = ceil((n + 1) * level); inf when k > n."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), not {level!r}")
    r = np.sort(np.abs(np.asarray(residuals, dtype=np.float64)))
    r = r[np.isfinite(r)]
    k = math.ceil((len(r) + 1) * level)
    return float(r[k - 1]) if k <= len(r) else math.inf


def calibrate(age_hours, y, pred, levels: Sequence[float] = LEVELS) -> dict:
    """The calibration document of a model from its holdout: per age bucket its row count,
    the conformal quantile at each level (`q`, by str(level)) and the mean absolute
    residual."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    if not len(y) == len(pred) == len(np.asarray(age_hours)):
        raise ValueError("age_hours, y and pred must have the same length")
    which = bucket_index(age_hours)
    resid = np.abs(y - pred)
    buckets = []
    for i, (name, lo, hi) in enumerate(AGE_BUCKETS):
        r = resid[which == i]
        buckets.append({
            "name": name,
            "age_hours_from": lo,
            "age_hours_to": None if math.isinf(hi) else hi,
            "n": int(len(r)),
            "q": {str(level): _json_float(conformal_quantile(r, level)) for level in levels},
            "mean_abs_residual": float(r.mean()) if len(r) else None,
        })  # fmt: skip
    return {"method": METHOD, "levels": [float(x) for x in levels], "buckets": buckets}


def bounds(calibration: dict, age_hours, pred, level: float = DEFAULT_LEVEL):
    """(score_low, score_high) as float64 arrays: `pred` ± its age bucket's quantile at
    `level`, clipped to the score range (a bucket without a finite quantile: the range)."""
    key = str(float(level))
    if key not in {str(float(x)) for x in calibration["levels"]}:
        raise ValueError(f"level {level} is not calibrated (levels {calibration['levels']})")
    q = np.array([_from_json(b["q"][key]) for b in calibration["buckets"]], dtype=np.float64)
    half = q[bucket_index(age_hours)]
    pred = np.asarray(pred, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf never happens: pred is finite
        low = np.clip(pred - half, *SCORE_RANGE)
        high = np.clip(pred + half, *SCORE_RANGE)
    return low, high


def _json_float(x: float) -> float | None:
    return None if math.isinf(x) else x  # JSON has no inf: None means "no finite bound"


def _from_json(x: float | None) -> float:
    return math.inf if x is None else float(x)
