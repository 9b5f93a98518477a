"""The day's drift profile as monitor_day builds it: null scores are missing predictions,
non-finite feature values are counted (#16, case 5)."""

from __future__ import annotations

import math

import pyarrow as pa

from models.core.names import FEATURE_KINDS
from models.monitoring.daily import current_profile

ARROW = {"float": pa.float64(), "int": pa.int64(), "string": pa.string(), "bool": pa.bool_()}
SAMPLE = {"float": 1.5, "int": 3, "string": "en", "bool": True}


def _rows(n: int, scores: list, bad: dict[str, list]) -> pa.Table:
    cols = {
        name: pa.array(bad.get(name, [SAMPLE[kind]] * n), ARROW[kind])
        for name, kind in FEATURE_KINDS.items()
    }
    return pa.table({**cols, "score": pa.array(scores, pa.float64()), "model_version": ["3"] * n})


def test_null_scores_count_as_missing_predictions():
    scores = [None, 40.0, None, 60.0, 70.0]
    prof = current_profile(_rows(5, scores, {}))
    assert prof["prediction"]["missing"] == sum(s is None for s in scores) / len(scores)
    assert prof["prediction"]["n"] == 3 and prof["prediction"]["non_finite"] == 0
    assert set(prof["features"]) == set(FEATURE_KINDS)


def test_non_finite_feature_values_are_counted_per_feature():
    floats = [n for n, k in FEATURE_KINDS.items() if k == "float"]
    a, b = floats[0], floats[-1]
    bad = {a: [math.inf, 1.0, math.nan, -math.inf], b: [None, math.nan, 2.0, 3.0]}
    prof = current_profile(_rows(4, [1.0, 2.0, 3.0, 4.0], bad))
    got = {n: (p.get("non_finite"), p["missing"]) for n, p in prof["features"].items()}
    assert got[a] == (3, 0.0) and got[b] == (1, 0.25)
    assert all(v[0] in (0, None) for n, v in got.items() if n not in (a, b))
    assert prof["prediction"]["missing"] == 0.0
