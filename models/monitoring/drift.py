"""Data and prediction drift between a model's reference and a day of serving data.

Both sides are reduced to the same compact *profile* in one pass per table (`profile`):
per numerical feature its non-null values' quantile function on a fixed grid of
`GRID` points (plus mean, std and missing share), per categorical feature its category
counts. The reference profile is computed once, when a model is registered, from its
training set at the moments the daily scorer sees (day-end rows) and stored with the model
(`reference_profile.json`); each day profiles the day's scored rows. `compare` then works
on the profiles only, so a report costs one sort per numerical column of the day.

Methods, suited to large samples (where a p-value flags every tiny difference):
- numerical: normalised Wasserstein distance (W1 of the two quantile functions over the
  reference's standard deviation; default threshold 0.1), or PSI on the reference's decile
  bins (threshold 0.2) when `numerical_method="psi"`;
- categorical (strings, booleans): Jensen-Shannon distance, base 2, in [0, 1] (threshold
  0.1). A category the reference never saw keeps its mass (so it counts as drift) and is
  listed under `unseen`.
Missing values are left out of the distributions and reported as `missing` shares.
Non-finite values (NaN, +inf, -inf) are left out too, and counted: a numerical profile
holds `non_finite` (rows) and `non_finite_share` (of all rows), the comparison reports both
sides per feature, and a feature whose non-finite share rises by more than
`DriftThresholds.non_finite_rise` (default 0: any rise) is flagged `non_finite_rise` and
listed under `non_finite_features`. That is a data fault, not a distribution shift: it does
not count as drift. A reference profile stored before the count existed has None there,
and its share is taken as 0 (so a current non-finite value is flagged, never hidden).

Noise level, measured on realistic clip features (tests/models/monitoring/test_drift.py) with 2,000
current rows against 200,000 reference rows from the same distribution: at most 0.034
(Wasserstein), 0.007 (PSI) and 0.036 (Jensen-Shannon, 8 languages); at 200,000 rows 0.006,
0.0002 and 0.004. The thresholds sit well above that noise and below a real shift (half a
standard deviation, a new category on 12% of rows, 30% of rows moved to one topic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GRID = 1000  # quantile-function points per numerical feature
NUMERICAL, CATEGORICAL = "numerical", "categorical"
PSI_EPS = 1e-4  # floor of a bin share in PSI (an empty bin would make it infinite)


@dataclass(frozen=True)
class DriftThresholds:
    """Methods and thresholds (the monitoring config's defaults live here)."""

    numerical_method: str = "wasserstein"  # or "psi"
    wasserstein: float = 0.1
    psi: float = 0.2
    jensen_shannon: float = 0.1
    drift_share: float = 0.5  # dataset drift when at least this share of features drift
    psi_bins: int = 10
    non_finite_rise: float = 0.0  # flag a feature whose non-finite share rises by more
    # sample-size-aware thresholds: a comparison's threshold is the configured one or the
    # largest statistic sampling noise gives at this per-comparison false-alarm rate,
    # whichever is higher (`noise_bound`); 0 keeps the configured thresholds as they are
    noise_alpha: float = 1e-4

    def __post_init__(self):
        if self.numerical_method not in ("wasserstein", "psi"):
            raise ValueError(
                f"numerical_method must be 'wasserstein' or 'psi', not {self.numerical_method!r}"
            )
        if not 0.0 <= self.noise_alpha < 1.0:
            raise ValueError(f"noise_alpha must be in [0, 1), not {self.noise_alpha!r}")

    def asdict(self) -> dict:
        return asdict(self)


def kind_of(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_boolean(dtype):
        return CATEGORICAL
    return NUMERICAL


# -- profiles ----------------------------------------------------------------------------
def profile(table: pa.Table, features: Sequence[str], predictions=None, threads: int = 2) -> dict:
    """The profile of `features` of `table` (and of `predictions`, as a numerical column:
    an Arrow array keeps its nulls as missing; any other 1-D array-like is read as floats,
    its NaN non-finite), JSON-ready: {"rows", "features": {name: ...}, "prediction"}."""
    with ThreadPoolExecutor(max(1, threads)) as pool:  # numpy's sort releases the GIL
        got = pool.map(lambda name: column_profile(table.column(name)), features)
        profiles = dict(zip(features, got, strict=True))  # each column read in its worker
    pred = None
    if isinstance(predictions, pa.Array | pa.ChunkedArray):
        pred = column_profile(pa.chunked_array([predictions]))
    elif predictions is not None:
        pred = column_profile(pa.chunked_array([pa.array(np.asarray(predictions, np.float64))]))
    return {"rows": table.num_rows, "features": profiles, "prediction": pred}


def column_profile(col: pa.ChunkedArray) -> dict:
    n = len(col)
    missing = col.null_count / n if n else 0.0
    if kind_of(col.type) == CATEGORICAL:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_boolean(col.type):
            col = col.cast(pa.string())
        counts = pc.value_counts(col.drop_null())
        values = counts.field("values").to_pylist()
        return {
            "kind": CATEGORICAL,
            "missing": missing,
            "n": n - col.null_count,
            "counts": dict(zip(values, counts.field("counts").to_pylist(), strict=True)),
        }
    x = col.cast(pa.float64()).to_numpy()  # nulls -> NaN
    x = np.sort(x[np.isfinite(x)])
    non_finite = n - col.null_count - len(x)  # NaN, +inf, -inf among the non-null values
    prof = {
        "kind": NUMERICAL,
        "missing": missing,
        "n": int(len(x)),
        "non_finite": int(non_finite),
        "non_finite_share": non_finite / n if n else 0.0,
    }
    if len(x):
        idx = np.minimum((np.arange(GRID) + 0.5) / GRID * len(x), len(x) - 1).astype(np.int64)
        prof |= {
            "mean": float(x.mean()),
            "std": float(x.std()),
            "min": float(x[0]),
            "max": float(x[-1]),
            "quantiles": [float(v) for v in np.float32(x[idx])],
        }
    return prof


# -- comparison --------------------------------------------------------------------------
def wasserstein_normalised(ref: dict, cur: dict) -> float:
    """W1 between the two quantile functions, over the reference's std (the current std
    when the reference is constant; 1 when both are)."""
    qa, qb = np.asarray(ref["quantiles"]), np.asarray(cur["quantiles"])
    scale = ref["std"] if ref["std"] > 0 else (cur["std"] if cur["std"] > 0 else 1.0)
    return float(np.mean(np.abs(qa - qb)) / scale)


def psi(ref: dict, cur: dict, bins: int = 10) -> float:
    """Population stability index on the reference's quantile bins (`bins` of them, fewer
    when values repeat)."""
    qa, qb = np.asarray(ref["quantiles"]), np.asarray(cur["quantiles"])
    edges = np.unique(np.quantile(qa, np.arange(1, bins) / bins, method="inverted_cdf"))
    share = [
        np.bincount(np.searchsorted(edges, q, side="right"), minlength=len(edges) + 1) / len(q)
        for q in (qa, qb)
    ]
    r, c = (np.maximum(s, PSI_EPS) for s in share)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(ref_counts: dict, cur_counts: dict) -> tuple[float, list[str]]:
    """(Jensen-Shannon distance base 2, the current categories the reference lacks)."""
    cats = sorted(set(ref_counts) | set(cur_counts))
    p = np.array([ref_counts.get(k, 0) for k in cats], dtype=np.float64)
    q = np.array([cur_counts.get(k, 0) for k in cats], dtype=np.float64)
    unseen = [k for k in cats if ref_counts.get(k, 0) == 0 and cur_counts.get(k, 0) > 0]
    if p.sum() == 0 or q.sum() == 0:
        return (0.0 if p.sum() == q.sum() else 1.0), unseen
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2))), unseen


# -- sample-size-aware thresholds --------------------------------------------------------
# The same statistic does not mean the same on 200 rows and on 200,000: each threshold is the
# configured one (the smallest change that matters) or the noise bound of the two sample
# sizes, whichever is higher; n_eff = n_ref * n_cur / (n_ref + n_cur). Wasserstein: sqrt(n_eff)
# * W1 of two samples of F tends to the integral of |B(F(x))| (B a Brownian bridge), of mean
# sqrt(2/pi) * J, J = the integral of sqrt(F(1 - F)) dx off the reference's quantiles; bound
# W1_NOISE_FACTOR * J / (std * sqrt(n_eff)) (measured, 1,200 null draws of four shapes, 100 to
# 200,000 rows: mean 0.80 of J / (std * sqrt(n_eff)), largest 2.8). PSI on k bins ~ chi2(k - 1)
# * (1/n_ref + 1/n_cur); Jensen-Shannon (nats) ~ chi2(k - 1) / (8 n_eff): their 1 - noise_alpha
# quantiles, CHI2_MARGIN times higher (plain chi-square errs low for rare categories at small
# n: 4 to 8 exceedances in 10,000 at 30-400 rows, 1 expected; with the margin none in 60,000).
# PSI stays fragile below ~1,000 rows: one empty decile (floored at PSI_EPS) alone gives 0.69.
W1_NOISE_FACTOR = 4.0
CHI2_MARGIN = 1.2


def n_effective(n_ref: int, n_cur: int) -> float:
    return n_ref * n_cur / (n_ref + n_cur) if n_ref and n_cur else 0.0


def _chi2_quantile(df: int, alpha: float) -> float:
    from scipy.stats import chi2

    return float(chi2.isf(alpha, max(1, df)))


def noise_bound(ref: dict, cur: dict, method: str, t: DriftThresholds) -> float | None:
    """The largest `method` statistic sampling noise alone gives (at false-alarm rate
    `t.noise_alpha` per comparison) between samples of these sizes of one distribution;
    None when adaptation is off (`noise_alpha` 0) or a side has no values."""
    n = n_effective(ref["n"], cur["n"])
    if not t.noise_alpha or not n:
        return None
    if method == "wasserstein":
        if ref["std"] <= 0:  # a constant reference: samples of it do not vary
            return 0.0
        q = np.asarray(ref["quantiles"], dtype=np.float64)
        p = np.arange(1, len(q)) / len(q)  # between grid points (i + 0.5) / GRID
        spread = float(np.sum(np.sqrt(p * (1 - p)) * np.diff(q)))
        return W1_NOISE_FACTOR * spread / (ref["std"] * math.sqrt(n))
    if method == "psi":
        q = np.asarray(ref["quantiles"])
        bins = len(np.unique(np.quantile(q, np.arange(1, t.psi_bins) / t.psi_bins,
                                         method="inverted_cdf"))) + 1
        chi = _chi2_quantile(bins - 1, t.noise_alpha)
        return CHI2_MARGIN * chi * (1 / ref["n"] + 1 / cur["n"])
    k = len(set(ref["counts"]) | set(cur["counts"]))
    return CHI2_MARGIN * math.sqrt(_chi2_quantile(k - 1, t.noise_alpha) / (8 * n * math.log(2)))


def non_finite(ref: dict, cur: dict, t: DriftThresholds) -> dict:
    """Both sides' non-finite rows (None: a reference profiled before they were counted)
    and whether the share rose by more than `t.non_finite_rise` (categorical: never)."""
    if ref["kind"] == CATEGORICAL:
        return {"non_finite_reference": 0, "non_finite_current": 0, "non_finite_rise": False}
    rise = cur["non_finite_share"] - ref.get("non_finite_share", 0.0)
    return {
        "non_finite_reference": ref.get("non_finite"),
        "non_finite_current": cur["non_finite"],
        "non_finite_rise": bool(rise > t.non_finite_rise),
    }


def compare_column(ref: dict, cur: dict, t: DriftThresholds) -> dict:
    """{kind, method, statistic, threshold, drifted, missing_reference, missing_current,
    non_finite_reference, non_finite_current, non_finite_rise} (+ `unseen` for
    categorical). A side with no values gives statistic None, not drifted."""
    out = {
        "kind": ref["kind"],
        "missing_reference": ref["missing"],
        "missing_current": cur["missing"],
        **non_finite(ref, cur, t),
    }
    if ref["kind"] == CATEGORICAL:
        stat, unseen = jensen_shannon(ref["counts"], cur["counts"])
        method, floor = "jensen_shannon", t.jensen_shannon
        out["unseen"] = unseen
        if not ref["n"] or not cur["n"]:
            stat = None
    else:
        method = t.numerical_method
        floor = t.wasserstein if method == "wasserstein" else t.psi
        if not ref["n"] or not cur["n"]:
            stat = None
        elif method == "wasserstein":
            stat = wasserstein_normalised(ref, cur)
        else:
            stat = psi(ref, cur, t.psi_bins)
    noise = noise_bound(ref, cur, method, t)
    threshold = floor if noise is None else max(floor, noise)
    out |= {
        "method": method,
        "threshold": threshold,
        "noise_bound": noise,
        "n_reference": ref["n"],
        "n_current": cur["n"],
        "statistic": stat,
        "drifted": bool(stat is not None and stat >= threshold),
    }
    return out


def compare(reference: dict, current: dict, thresholds: DriftThresholds | None = None) -> dict:
    """Per feature and for the prediction: the drift verdicts; `drift_share` (of features
    with a statistic) and `dataset_drift` (share >= thresholds.drift_share);
    `non_finite_features`: the features whose non-finite share rose."""
    t = thresholds or DriftThresholds()
    if reference.get("cohorts") and current.get("cohorts"):
        from models.monitoring.cohorts import compare_cohorts

        return compare_cohorts(reference, current, t)
    features = {}
    for name in reference["features"]:
        features[name] = compare_column(*sides(reference, current, name), t)
    prediction = None
    if reference.get("prediction") and current.get("prediction"):
        prediction = compare_column(reference["prediction"], current["prediction"], t)
    return summarise(features, prediction, t)


def sides(reference: dict, current: dict, name: str) -> tuple[dict, dict]:
    """Feature `name`'s profile on both sides; an error naming it when the current data
    lacks it or has it of another kind."""
    ref, cur = reference["features"][name], current["features"].get(name)
    if cur is None:
        raise KeyError(f"feature {name!r} of the reference is not in the current data")
    if cur["kind"] != ref["kind"]:
        raise TypeError(f"feature {name!r}: {ref['kind']} in the reference, {cur['kind']} now")
    return ref, cur


def summarise(features: dict, prediction: dict | None, t: DriftThresholds) -> dict:
    """A comparison's result from its per-feature verdicts (see `compare`)."""
    judged = [f for f in features.values() if f["statistic"] is not None]
    share = sum(f["drifted"] for f in judged) / len(judged) if judged else 0.0
    return {
        "features": features,
        "prediction": prediction,
        "drift_share": share,
        "dataset_drift": bool(judged) and share >= t.drift_share,
        "drifted_features": sorted(k for k, f in features.items() if f["drifted"]),
        "non_finite_features": sorted(k for k, f in features.items() if f["non_finite_rise"]),
    }


def build_report(
    ds: str,
    model_version: str,
    reference: dict,
    current: dict,
    result: dict,
    thresholds: DriftThresholds,
    performance: dict | None = None,
    history: Sequence[dict] = (),
) -> dict:
    """The drift report (docs/contract.md §2's drift JSON plus the details the HTML shows):
    `result` is `compare(reference, current, thresholds)`; `history` the performance
    history rows (models/monitoring/performance.py) with `scored_ds` as ISO text."""
    window = reference.get("window", {})
    return {
        "date": ds,
        "model_version": model_version,
        "reference": {k: window.get(k) for k in ("start", "end", "rows")},
        "current": {"rows": current["rows"]},
        **result,
        "performance": performance,
        "performance_history": list(history),
        "thresholds": thresholds.asdict(),
    }


# -- the reference of a model ------------------------------------------------------------
REFERENCE_FILE = "reference_profile.json"  # the model run's artifact (models.training.registry)
REFERENCE_MAX_ROWS = 200_000  # quantiles of 200k rows: noise ~0.006, far below thresholds


def _sample(rows: pa.Table, max_rows: int, seed: int) -> pa.Table:
    if rows.num_rows <= max_rows:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(rows.num_rows, max_rows, replace=False))
    return rows.take(pa.array(keep))


def reference_profile(
    training_rows: pa.Table,
    holdout_predictions,
    features: Sequence[str],
    max_rows: int = REFERENCE_MAX_ROWS,
    seed: int = 0,
    holdout_ages=None,
) -> dict:
    """The profile a model is monitored against: its training set's day-end rows (the
    moments the daily scorer scores; creation rows, with no engagement yet, are left out),
    at most `max_rows` of them drawn with a fixed seed, and its holdout predictions (out
    of sample, as served). Adds `window` {start, end, rows, sampled_from} and, when the
    rows carry `clip_age_hours`, `cohorts` (`cohort_profiles`): the creation rows (at most
    `max_rows`) as arrivals, the day-end rows by age bucket, the holdout predictions by
    `holdout_ages` (the day-end holdout rows' ages)."""
    created = pc.equal(training_rows.column("event_timestamp"), training_rows.column("created_at"))
    day_end = pc.invert(created)
    total = pc.sum(day_end.cast(pa.int64())).as_py() or 0
    rows = _sample(training_rows.filter(day_end), max_rows, seed)
    prof = profile(rows, features, predictions=holdout_predictions)
    if "clip_age_hours" in training_rows.column_names and holdout_ages is not None:
        arrivals = _sample(training_rows.filter(created), max_rows, seed)
        both = pa.concat_tables([arrivals, rows])
        first = np.arange(both.num_rows) < arrivals.num_rows
        from models.monitoring.cohorts import cohort_profiles

        prof["cohorts"] = cohort_profiles(
            both, first, ~first, holdout_predictions, np.asarray(holdout_ages, np.float64)
        )
    ts = pc.min_max(training_rows.column("event_timestamp"))
    prof["window"] = {
        "start": ts["min"].as_py().isoformat() if training_rows.num_rows else None,
        "end": ts["max"].as_py().isoformat() if training_rows.num_rows else None,
        "rows": rows.num_rows,
        "sampled_from": total,
    }
    return prof
