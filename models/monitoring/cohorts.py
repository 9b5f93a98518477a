"""Drift compared like with like (#17): which rows of each side each feature is judged on.

What a clip *is* (its attributes) is compared as it arrives: the day's new clips against
the reference's clips at creation. What the audience does with it (engagement, creator
track record) is compared at matched ages: the day's rows of each age bucket against the
reference's rows of the same bucket, and so are the predictions. A feature that grows by
construction is not compared (names.GROWTH_FEATURES says why); its missing and non-finite
shares still are, on all rows. Without cohorts (a reference stored before them) `compare`
falls back to all rows against all day-end rows.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from models.core.names import ARRIVAL, BY_AGE, FEATURE_MONITORING, GROWTH, GROWTH_FEATURES
from models.monitoring.drift import (
    CATEGORICAL,
    NUMERICAL,
    DriftThresholds,
    compare_column,
    profile,
    sides,
    summarise,
)
from models.training.intervals import AGE_BUCKETS, bucket_index

__all__ = ["ARRIVAL", "BY_AGE", "GROWTH", "AGE_BUCKETS", "bucket_index"]

POPULATIONS = {
    ARRIVAL: "new clips: the day's clips created that day, against the reference's clips at "
    "creation",
    BY_AGE: "matched ages: each age bucket of the day's rows against the reference's rows of "
    "the same bucket",
}


def cohort_profiles(
    rows: pa.Table,
    arrival,
    aged,
    predictions=None,
    prediction_ages=None,
    monitoring: dict[str, str] = FEATURE_MONITORING,
    threads: int = 2,
) -> dict:
    """{ARRIVAL: the profile of the `arrival` rows (a boolean mask) over the arrival
    features; per age bucket name: the profile of the `aged` rows of that bucket (by
    `clip_age_hours`) over the by-age features, with the `predictions` of that bucket (by
    `prediction_ages`, the rows' own ages when not given)}."""
    on_arrival = [n for n, how in monitoring.items() if how == ARRIVAL]
    by_age = [n for n, how in monitoring.items() if how == BY_AGE]
    arrivals = _Taken(rows, pa.array(np.flatnonzero(np.asarray(arrival, bool))))
    out = {ARRIVAL: profile(arrivals, on_arrival, threads=threads)}
    which = bucket_index(rows.column("clip_age_hours").to_numpy(zero_copy_only=False))
    aged = np.asarray(aged, bool)
    if predictions is not None:
        preds = (pa.chunked_array([predictions]) if isinstance(predictions, pa.Array)
                 else predictions)
        if not isinstance(preds, pa.ChunkedArray):
            preds = pa.chunked_array([pa.array(np.asarray(preds, np.float64))])
        pred_which = which if prediction_ages is None else bucket_index(prediction_ages)
    for i, (name, _, _) in enumerate(AGE_BUCKETS):
        take = pa.array(np.flatnonzero(aged & (which == i)))
        pred = None
        if predictions is not None:
            pred = preds.take(pa.array(np.flatnonzero(pred_which == i)))
        out[name] = profile(_Taken(rows, take), by_age, predictions=pred, threads=threads)
    return out


class _Taken:
    """Rows `idx` of `table` as `drift.profile` reads a table (`column`, `num_rows`), each
    column taken when profiled: a cohort of 7M rows never copies the whole table (#20)."""

    def __init__(self, table: pa.Table, idx: pa.Array) -> None:
        self.table, self.idx, self.num_rows = table, idx, len(idx)

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name).take(self.idx)


def _shares(whole: dict) -> dict:
    """The kind and the missing and non-finite figures of an all-rows comparison."""
    return {k: v for k, v in whole.items() if k.startswith(("kind", "missing", "non_finite"))}


def _over(part: dict) -> float:
    """How far a comparison is over its threshold (a threshold of 0: any statistic is)."""
    t = part["threshold"]
    return part["statistic"] / t if t > 0 else (math.inf if part["statistic"] > 0 else 0.0)


def _cohort_entry(parts: list[dict]) -> dict:
    """One verdict out of several comparisons of one feature (one per age bucket): the
    statistic and threshold of the bucket furthest over (or nearest to) its threshold,
    drifted when any bucket drifted, and every bucket's figures under `cohorts`."""
    judged = [p for p in parts if p["statistic"] is not None]
    worst = max(judged, key=_over) if judged else parts[0]
    keys = ("cohort", "statistic", "threshold", "noise_bound", "n_reference", "n_current",
            "drifted")
    return {
        **{k: worst[k] for k in ("method", "statistic", "threshold", "noise_bound",
                                 "n_reference", "n_current", "cohort")},
        "drifted": any(p["drifted"] for p in parts),
        "cohorts": [{k: p[k] for k in keys} for p in parts],
    }


def compare_cohorts(
    reference: dict,
    current: dict,
    thresholds: DriftThresholds | None = None,
    monitoring: dict[str, str] = FEATURE_MONITORING,
) -> dict:
    """`compare`, like with like: each feature on the population its declaration names
    (`population`, `cohort`, per-bucket `cohorts`); the prediction per age bucket. Missing
    and non-finite shares come from all rows (`reference["features"]`, `current[...]`)."""
    t = thresholds or DriftThresholds()
    rc, cc = reference["cohorts"], current["cohorts"]
    ages = [name for name, _, _ in AGE_BUCKETS]
    features = {}
    for name, how in monitoring.items():
        ref, cur = sides(reference, current, name)
        base = _shares(compare_column(ref, cur, t))
        if how == GROWTH:
            features[name] = base | {
                "method": "not_compared", "statistic": None, "threshold": None,
                "noise_bound": None, "n_reference": ref["n"], "n_current": cur["n"],
                "drifted": False, "population": f"not compared: {GROWTH_FEATURES[name]}",
                "cohort": None, "cohorts": [],
            }
            continue
        cohorts = [ARRIVAL] if how == ARRIVAL else ages
        parts = []
        for c in cohorts:
            one = compare_column(rc[c]["features"][name], cc[c]["features"][name], t)
            parts.append({**one, "cohort": c})
        entry = base | _cohort_entry(parts) | {"population": POPULATIONS[how]}
        if ref["kind"] == CATEGORICAL:
            entry["unseen"] = sorted({u for p in parts for u in p.get("unseen", [])})
        features[name] = entry
    prediction = None
    if all(rc[a].get("prediction") and cc[a].get("prediction") for a in ages):
        parts = [{**compare_column(rc[a]["prediction"], cc[a]["prediction"], t), "cohort": a}
                 for a in ages]
        base = {}
        if reference.get("prediction") and current.get("prediction"):
            base = _shares(compare_column(reference["prediction"], current["prediction"], t))
        prediction = {"kind": NUMERICAL} | base | _cohort_entry(parts) | {
            "population": POPULATIONS[BY_AGE]}
    return summarise(features, prediction, t)
