"""Drift on tiny hand-built columns and profiles: every value computed by hand, every
threshold at its boundary (the statistics on realistic data are in test_drift.py)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from models.monitoring import drift

GRID = drift.GRID
EPS = drift.PSI_EPS


def col(values, type_=None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, type=type_)])


def num(quantiles, std: float, n: int = 1000, missing: float = 0.0, bad: int = 0) -> dict:
    """A numerical profile with the given quantile function (what compare reads); `bad`
    non-finite rows besides the `n` finite ones (no nulls)."""
    return {"kind": drift.NUMERICAL, "missing": missing, "n": n, "std": std,
            "quantiles": [float(q) for q in quantiles], "non_finite": bad,
            "non_finite_share": bad / (n + bad) if n + bad else 0.0}  # fmt: skip


def cat(counts: dict, missing: float = 0.0) -> dict:
    return {"kind": drift.CATEGORICAL, "missing": missing, "n": sum(counts.values()),
            "counts": counts}  # fmt: skip


EMPTY_NUM = {
    "kind": drift.NUMERICAL,
    "missing": 1.0,
    "n": 0,
    "non_finite": 0,
    "non_finite_share": 0.0,
}


# -- profiles ----------------------------------------------------------------------------
def test_numerical_profile_of_a_known_column():
    # 0..999 shuffled, plus two nulls (missing), a NaN, an inf and a -inf (counted, #16)
    values = [float(v) for v in np.random.default_rng(0).permutation(GRID)]
    prof = drift.column_profile(col(values + [None, math.nan, None, math.inf, -math.inf]))
    assert prof == {
        "kind": drift.NUMERICAL,
        "missing": 2 / 1005,
        "n": 1000,
        "non_finite": 3,
        "non_finite_share": 3 / 1005,
        "mean": 499.5,
        "std": pytest.approx(math.sqrt((1000**2 - 1) / 12)),  # of 0..n-1, population
        "min": 0.0,
        "max": 999.0,
        "quantiles": [float(v) for v in range(GRID)],  # one grid point per value
    }


def test_quantile_function_of_two_values_splits_the_grid_in_halves():
    prof = drift.column_profile(col([5.0, 1.0]))
    assert prof["quantiles"] == [1.0] * (GRID // 2) + [5.0] * (GRID // 2)
    assert (prof["min"], prof["max"], prof["mean"], prof["std"]) == (1.0, 5.0, 3.0, 2.0)


def test_categorical_profiles_of_dictionary_and_boolean_columns():
    words = col(["b", "a", None, "b"]).dictionary_encode()
    assert drift.kind_of(words.type) == drift.CATEGORICAL
    assert drift.column_profile(words) == {
        "kind": drift.CATEGORICAL, "missing": 0.25, "n": 3, "counts": {"b": 2, "a": 1}
    }  # fmt: skip
    flags = drift.column_profile(col([True, None, False, True, None]))
    assert flags == {
        "kind": drift.CATEGORICAL, "missing": 0.4, "n": 3, "counts": {"true": 2, "false": 1}
    }  # fmt: skip
    assert drift.kind_of(pa.dictionary(pa.int8(), pa.float64())) == drift.NUMERICAL


def test_empty_columns_have_no_missing_share_and_no_values():
    assert drift.column_profile(pa.chunked_array([], pa.float64())) == {
        "kind": drift.NUMERICAL, "missing": 0.0, "n": 0, "non_finite": 0, "non_finite_share": 0.0
    }  # fmt: skip
    assert drift.column_profile(pa.chunked_array([], pa.string())) == {
        "kind": drift.CATEGORICAL, "missing": 0.0, "n": 0, "counts": {}
    }  # fmt: skip


def test_profile_of_a_table_with_and_without_predictions():
    table = pa.table({"x": [1.0, 2.0, None], "c": ["u", "v", "u"]})
    prof = drift.profile(table, ["x", "c"])
    assert prof == {
        "rows": 3,
        "features": {"x": drift.column_profile(table["x"]), "c": drift.column_profile(table["c"])},
        "prediction": None,
    }
    with_pred = drift.profile(table, ["c"], predictions=[3, 1, 2], threads=1)
    assert with_pred["prediction"] == drift.column_profile(col([1.0, 2.0, 3.0]))


# -- the statistics ----------------------------------------------------------------------
HALVES = [2.5] * (GRID // 2) + [3.5] * (GRID // 2)  # std 0.5


@pytest.mark.parametrize(
    ("ref", "cur", "want"),
    [
        (num(HALVES, 0.5), num([3.0] * GRID, 0.0), 0.5 / 0.5),  # the reference's std
        (num([3.0] * GRID, 0.0), num(HALVES, 0.5), 0.5 / 0.5),  # constant reference: current's
        (num([3.0] * GRID, 0.0), num([5.0] * GRID, 0.0), 2.0 / 1),  # both constant: 1
        (num(HALVES, 0.5), num([3.0] * GRID, 4.0), 0.5 / 0.5),  # never the current's then
    ],
)
def test_wasserstein_scale(ref, cur, want):
    assert drift.wasserstein_normalised(ref, cur) == pytest.approx(want, rel=1e-12)


REF_0_999 = num(range(GRID), 288.7)
DOWN_50 = num(np.arange(GRID) - 50, 288.7)


def test_psi_on_deciles_by_hand():
    # edges: the reference's deciles 99, 199, ..., 899; a value on an edge counts above it.
    # Reference 0..999: 99, 100 x 8, 101 per bin; current -50..949: 149, 100 x 8, 51.
    want = 0.05 * math.log(149 / 99) - 0.05 * math.log(51 / 101)
    assert drift.psi(REF_0_999, DOWN_50) == pytest.approx(want, rel=1e-9)
    # quartiles 249, 499, 749: 249, 250, 250, 251 against 299, 250, 250, 201
    want4 = 0.05 * math.log(299 / 249) - 0.05 * math.log(201 / 251)
    assert drift.psi(REF_0_999, DOWN_50, bins=4) == pytest.approx(want4, rel=1e-9)
    t = drift.DriftThresholds(numerical_method="psi", psi_bins=4)
    assert drift.compare_column(REF_0_999, DOWN_50, t)["statistic"] == pytest.approx(want4)


def test_psi_floors_empty_bins():
    # every current value in the lowest bin; the nine others empty (floored at PSI_EPS)
    r = np.array([0.099] + [0.1] * 8 + [0.101])
    c = np.array([1.0] + [EPS] * 9)
    want = float(np.sum((c - r) * np.log(c / r)))
    assert drift.psi(REF_0_999, num([0.0] * GRID, 0.0)) == pytest.approx(want, rel=1e-9)


def test_jensen_shannon_of_empty_sides():
    assert drift.jensen_shannon({}, {}) == (0.0, [])
    assert drift.jensen_shannon({}, {"a": 1}) == (1.0, ["a"])
    assert drift.jensen_shannon({"a": 1}, {}) == (1.0, [])
    # a single count on one side is not an empty side
    assert drift.jensen_shannon({"a": 1}, {"a": 2}) == (0.0, [])
    assert drift.jensen_shannon({"a": 2}, {"a": 1}) == (0.0, [])


def test_jensen_shannon_disjoint_is_one_and_unseen_lists_current_categories_only():
    assert drift.jensen_shannon({"a": 3}, {"b": 1}) == (pytest.approx(1.0), ["b"])
    # "z" seen once now is unseen; "a" with a zero count in the reference and none now is not
    stat, unseen = drift.jensen_shannon({"a": 0, "b": 4}, {"b": 4, "z": 1})
    assert unseen == ["z"]
    p, q = np.array([1.0, 0.0]), np.array([0.8, 0.2])  # over (b, z)
    m = (p + q) / 2
    want = math.sqrt((np.sum(p[:1] * np.log2(p[:1] / m[:1])) + np.sum(q * np.log2(q / m))) / 2)
    assert stat == pytest.approx(want, rel=1e-12)


# -- verdicts ----------------------------------------------------------------------------
def test_compare_column_reports_every_field():
    ref, cur = cat({"en": 6, "es": 4}, missing=0.1), cat({"en": 5, "xx": 5}, missing=0.2)
    stat, _ = drift.jensen_shannon(ref["counts"], cur["counts"])
    # fixed thresholds (noise_alpha 0): the configured one, no noise bound
    assert drift.compare_column(ref, cur, drift.DriftThresholds(noise_alpha=0)) == {
        "kind": drift.CATEGORICAL,
        "missing_reference": 0.1,
        "missing_current": 0.2,
        "method": "jensen_shannon",
        "threshold": 0.1,
        "noise_bound": None,
        "n_reference": 10,
        "n_current": 10,
        "unseen": ["xx"],
        "statistic": stat,
        "drifted": True,
        "non_finite_reference": 0,
        "non_finite_current": 0,
        "non_finite_rise": False,
    }
    t = drift.DriftThresholds(wasserstein=1.5, noise_alpha=0)
    cur = num([3.0] * GRID, 0.0, missing=0.3, bad=4)
    assert drift.compare_column(num(HALVES, 0.5, bad=2), cur, t) == {
        "kind": drift.NUMERICAL,
        "missing_reference": 0.0,
        "missing_current": 0.3,
        "method": "wasserstein",
        "threshold": 1.5,
        "noise_bound": None,
        "n_reference": GRID,
        "n_current": GRID,
        "statistic": 1.0,
        "drifted": False,
        "non_finite_reference": 2,
        "non_finite_current": 4,
        "non_finite_rise": True,
    }


def test_a_side_without_values_has_no_statistic():
    t = drift.DriftThresholds()
    for ref, cur in [(cat({"a": 3}), cat({})), (cat({}), cat({"a": 3}))]:
        out = drift.compare_column(ref, cur, t)
        assert out["statistic"] is None and out["drifted"] is False
    for method in ("wasserstein", "psi"):
        t = drift.DriftThresholds(numerical_method=method)
        for ref, cur in [(REF_0_999, EMPTY_NUM), (EMPTY_NUM, REF_0_999)]:
            out = drift.compare_column(ref, cur, t)
            assert out["statistic"] is None and out["drifted"] is False


@pytest.mark.parametrize("method", ["wasserstein", "psi", "jensen_shannon"])
def test_a_statistic_equal_to_its_threshold_drifts(method):
    numerical = method != "jensen_shannon"
    ref, cur = (REF_0_999, DOWN_50) if numerical else (cat({"a": 6, "b": 4}), cat({"a": 5}))
    t = drift.DriftThresholds(numerical_method=method if numerical else "wasserstein",
                              noise_alpha=0)
    stat = drift.compare_column(ref, cur, t)["statistic"]
    assert stat > 0
    at = drift.DriftThresholds(**(t.asdict() | {method: stat}))
    above = drift.DriftThresholds(**(t.asdict() | {method: float(np.nextafter(stat, 1.0))}))
    assert drift.compare_column(ref, cur, at)["drifted"] is True
    assert drift.compare_column(ref, cur, above)["drifted"] is False


def test_dataset_drift_at_its_share_boundary():
    reference = {"features": {"x": REF_0_999, "c": cat({"a": 5})}}
    current = {"features": {"x": DOWN_50, "c": cat({"a": 7})}}  # x drifts, c does not
    result = drift.compare(reference, current, drift.DriftThresholds(drift_share=0.5, noise_alpha=0))
    assert result["drifted_features"] == ["x"] and result["drift_share"] == 0.5
    assert result["dataset_drift"] is True and result["prediction"] is None
    above = drift.DriftThresholds(drift_share=float(np.nextafter(0.5, 1.0)), noise_alpha=0)
    assert drift.compare(reference, current, above)["dataset_drift"] is False


def test_no_feature_with_values_is_no_drift():
    reference = {"features": {"x": REF_0_999, "c": cat({"a": 5})}}
    current = {"features": {"x": EMPTY_NUM, "c": cat({})}, "prediction": None}
    result = drift.compare(reference, current, drift.DriftThresholds(drift_share=0.0))
    assert (result["drift_share"], result["dataset_drift"], result["drifted_features"]) == (
        0.0,
        False,
        [],
    )


def test_a_feature_of_another_kind_is_an_error_naming_both():
    reference = {"features": {"views": REF_0_999}}
    current = {"features": {"views": cat({"1": 3})}}
    msg = "feature 'views': numerical in the reference, categorical now"
    with pytest.raises(TypeError, match=msg):
        drift.compare(reference, current)


def test_thresholds_defaults_and_an_unknown_method():
    assert drift.DriftThresholds().asdict() == {
        "numerical_method": "wasserstein",
        "wasserstein": 0.1,
        "psi": 0.2,
        "jensen_shannon": 0.1,
        "drift_share": 0.5,
        "non_finite_rise": 0.0,
        "psi_bins": 10,
        "noise_alpha": 1e-4,
    }
    with pytest.raises(ValueError, match="must be 'wasserstein' or 'psi', not 'ks'"):
        drift.DriftThresholds(numerical_method="ks")


# -- non-finite values (#16, case 5) -----------------------------------------------------------
QUARTER_BAD, HALF_BAD = num([1.0] * GRID, 0.0, n=3, bad=1), num([1.0] * GRID, 0.0, n=2, bad=2)


@pytest.mark.parametrize(
    ("ref", "cur", "limit", "rise"),
    [
        (QUARTER_BAD, QUARTER_BAD, 0.0, False),  # the same share: no rise
        (QUARTER_BAD, num([1.0] * GRID, 0.0, n=399, bad=133), 0.0, False),  # 1/4 again
        (QUARTER_BAD, num([1.0] * GRID, 0.0, n=398, bad=134), 0.0, True),  # just above
        (HALF_BAD, QUARTER_BAD, 0.0, False),  # a fall is no fault
        (num([1.0] * GRID, 0.0), num([1.0] * GRID, 0.0, n=10**6, bad=1), 0.0, True),  # one row
        (QUARTER_BAD, HALF_BAD, 0.25, False),  # rose by exactly the limit
        (QUARTER_BAD, HALF_BAD, float(np.nextafter(0.25, 0.0)), True),  # by more
    ],
)
def test_a_rise_of_the_non_finite_share_is_flagged_at_its_boundary(ref, cur, limit, rise):
    t = drift.DriftThresholds(non_finite_rise=limit)
    out = drift.compare_column(ref, cur, t)
    assert out["non_finite_rise"] is rise
    assert (out["non_finite_reference"], out["non_finite_current"]) == (
        ref["non_finite"],
        cur["non_finite"],
    )
    assert out["drifted"] is False  # a data fault, not a distribution shift


def test_a_reference_profiled_before_the_count_takes_share_zero():
    old = {k: v for k, v in REF_0_999.items() if not k.startswith("non_finite")}
    t = drift.DriftThresholds()
    clean = drift.compare_column(old, REF_0_999, t)
    assert (clean["non_finite_reference"], clean["non_finite_rise"]) == (None, False)
    bad = drift.compare_column(old, num(REF_0_999["quantiles"], REF_0_999["std"], bad=1), t)
    assert (bad["non_finite_reference"], bad["non_finite_current"], bad["non_finite_rise"]) == (
        None,
        1,
        True,
    )


def test_compare_lists_the_features_whose_non_finite_share_rose():
    reference = {"features": {"b": QUARTER_BAD, "a": QUARTER_BAD, "z": QUARTER_BAD,
                              "c": cat({"x": 3})}}  # fmt: skip
    current = {"features": {"b": HALF_BAD, "a": HALF_BAD, "z": QUARTER_BAD, "c": cat({"x": 3})}}
    result = drift.compare(reference, current)
    assert result["non_finite_features"] == ["a", "b"]
    assert result["drifted_features"] == [] and result["drift_share"] == 0.0
    assert result["features"]["c"]["non_finite_rise"] is False


def test_profile_counts_non_finite_values_from_a_real_table():
    """Counted from data, against an independent count of the same values."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    x[rng.choice(500, 40, replace=False)] = rng.choice([math.inf, -math.inf, math.nan], 40)
    nulls = [None if i % 50 == 0 else float(v) for i, v in enumerate(x)]
    prof = drift.profile(pa.table({"x": pa.array(nulls, pa.float64())}), ["x"])["features"]["x"]
    kept = [v for v in nulls if v is not None]
    want = sum(not math.isfinite(v) for v in kept)
    assert want > 0 and prof["non_finite"] == want
    assert prof["non_finite_share"] == want / 500
    assert prof["missing"] == (500 - len(kept)) / 500
    assert prof["n"] == len(kept) - want


def test_prediction_nulls_are_missing_and_nan_is_non_finite():
    """An Arrow column keeps its nulls (the report's prediction missing share); numbers
    from numpy are values, so a NaN among them is non-finite (#16: null scores went to NaN
    and were dropped, the missing share stayed 0)."""
    table = pa.table({"c": ["u", "v", "u", "v"]})
    arrow = pa.chunked_array([pa.array([1.0, None, 3.0, None])])
    pred = drift.profile(table, ["c"], predictions=arrow)["prediction"]
    assert (pred["missing"], pred["non_finite"], pred["n"]) == (0.5, 0, 2)
    plain = pa.array([2.0, None, math.inf, 1.0])
    pred = drift.profile(table, ["c"], predictions=plain)["prediction"]
    assert (pred["missing"], pred["non_finite"], pred["n"]) == (0.25, 1, 2)
    pred = drift.profile(table, ["c"], predictions=np.array([1.0, np.nan, 3.0, 4.0]))["prediction"]
    assert (pred["missing"], pred["non_finite"], pred["non_finite_share"], pred["n"]) == (
        0.0,
        1,
        0.25,
        3,
    )
