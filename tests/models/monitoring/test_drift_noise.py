"""Sample-size-aware drift thresholds (#17, models/monitoring/drift.py `noise_bound`): the
same statistic means drift on many rows and noise on few; each bound against an
independent computation, and a statistic just above and just below its bound."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import chi2

from models.monitoring import drift


def _num(values: np.ndarray, n: int) -> dict:
    prof = drift.column_profile(pa.chunked_array([values]))
    return prof | {"n": n}


def test_the_same_wasserstein_statistic_means_drift_at_200k_rows_and_noise_at_200():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 200_000)
    ref, cur = _num(x, 200_000), _num(x + 0.15, 200_000)  # W1 / std = 0.15
    t = drift.DriftThresholds()
    big = drift.compare_column(ref, cur, t)
    small = drift.compare_column(ref, cur | {"n": 200}, t)
    assert big["statistic"] == small["statistic"] == pytest.approx(0.15, rel=0.01)
    assert big["threshold"] == 0.1 and big["drifted"] is True
    assert small["threshold"] > 0.15 and small["drifted"] is False
    # the bound, independently: 4 x the integral of sqrt(F(1 - F)) of the sample's own CDF
    s = np.sort(x)
    f = np.arange(1, len(s)) / len(s)
    spread = np.sum(np.sqrt(f * (1 - f)) * np.diff(s))
    n_eff = 200_000 * 200 / 200_200
    # (the profile reads F off its 1,000-point grid: within 2%)
    assert small["noise_bound"] == pytest.approx(4 * spread / x.std() / math.sqrt(n_eff), rel=0.02)


def test_jensen_shannon_and_psi_bounds_are_the_chi_square_quantiles():
    t = drift.DriftThresholds()
    ref = {"kind": "categorical", "n": 10_000, "counts": {"a": 6_000, "b": 3_000, "c": 1_000}}
    cur = {"kind": "categorical", "n": 300, "counts": {"a": 180, "b": 90, "d": 30}}
    n_eff = 10_000 * 300 / 10_300
    want = 1.2 * math.sqrt(chi2.ppf(1 - 1e-4, 3) / (8 * n_eff * math.log(2)))  # 4 categories
    assert drift.noise_bound(ref, cur, "jensen_shannon", t) == pytest.approx(want, rel=1e-9)
    rng = np.random.default_rng(1)
    a, b = _num(rng.normal(size=50_000), 50_000), _num(rng.normal(size=5_000), 5_000)
    want = 1.2 * chi2.ppf(1 - 1e-4, 9) * (1 / 50_000 + 1 / 5_000)  # 10 decile bins
    assert drift.noise_bound(a, b, "psi", t) == pytest.approx(want, rel=1e-9)
    assert drift.noise_bound(a, b, "psi", drift.DriftThresholds(noise_alpha=0)) is None
    # two categories: one degree of freedom
    two = {"kind": "categorical", "n": 400, "counts": {"a": 300, "b": 100}}
    want = 1.2 * math.sqrt(chi2.ppf(1 - 1e-4, 1) / (8 * 200 * math.log(2)))
    assert drift.noise_bound(two, two, "jensen_shannon", t) == pytest.approx(want, rel=1e-9)
    # no values on both sides: no bound (and no division by zero)
    empty = {"kind": "categorical", "n": 0, "counts": {}}
    assert drift.noise_bound(empty, empty, "jensen_shannon", t) is None


def test_the_wasserstein_bound_is_in_the_reference_s_units():
    """Scaled by the reference's std, never the current's; a constant reference: 0."""
    t = drift.DriftThresholds()
    ref = _num(np.random.default_rng(2).normal(0, 0.5, 10_000), 10_000)
    wide = _num(np.random.default_rng(3).normal(0, 2.0, 10_000), 10_000)
    got = drift.noise_bound(ref, wide, "wasserstein", t)
    q = np.asarray(ref["quantiles"], np.float64)
    p = np.arange(1, len(q)) / len(q)
    want = 4 * np.sum(np.sqrt(p * (1 - p)) * np.diff(q)) / (ref["std"] * math.sqrt(5_000))
    assert got == pytest.approx(want, rel=1e-12) and ref["std"] < 1
    flat = _num(np.full(1_000, 3.0), 1_000)
    assert drift.noise_bound(flat, wide, "wasserstein", t) == 0.0


def test_a_statistic_just_above_its_noise_bound_drifts_and_just_below_does_not():
    """The bound falls as 1/sqrt(n): the same two category mixes, with the current side's
    row count just above and just below the count where the bound meets the statistic."""
    t = drift.DriftThresholds(jensen_shannon=0.01)  # a floor below every bound here
    ref = {"kind": "categorical", "n": 10**12, "missing": 0.0, "counts": {"a": 500, "b": 500}}
    cur = {"kind": "categorical", "missing": 0.0, "counts": {"a": 60, "b": 40}}
    stat, _ = drift.jensen_shannon(ref["counts"], cur["counts"])
    c = drift.noise_bound(ref, cur | {"n": 1}, "jensen_shannon", t)  # the bound at n_eff ~1
    n_star = (c / stat) ** 2
    above = drift.compare_column(ref, cur | {"n": math.ceil(n_star) + 1}, t)
    below = drift.compare_column(ref, cur | {"n": math.floor(n_star) - 1}, t)
    assert above["statistic"] == below["statistic"] == stat
    assert above["threshold"] == above["noise_bound"] < stat and above["drifted"] is True
    assert below["threshold"] == below["noise_bound"] > stat and below["drifted"] is False
    with pytest.raises(ValueError, match="noise_alpha"):
        drift.DriftThresholds(noise_alpha=1.0)
