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


def num(quantiles, std: float, n: int = 1000, missing: float = 0.0) -> dict:
    """A numerical profile with the given quantile function (what compare reads)."""
    return {"kind": drift.NUMERICAL, "missing": missing, "n": n, "std": std,
            "quantiles": [float(q) for q in quantiles]}  # fmt: skip


def cat(counts: dict, missing: float = 0.0) -> dict:
    return {"kind": drift.CATEGORICAL, "missing": missing, "n": sum(counts.values()),
            "counts": counts}  # fmt: skip


EMPTY_NUM = {"kind": drift.NUMERICAL, "missing": 1.0, "n": 0}


# -- profiles ----------------------------------------------------------------------------
def test_numerical_profile_of_a_known_column():
    # 0..999 shuffled, plus two nulls (missing) and a NaN and an inf (dropped, not missing)
    values = [float(v) for v in np.random.default_rng(0).permutation(GRID)]
    prof = drift.column_profile(col(values + [None, math.nan, None, math.inf]))
    assert prof == {
        "kind": drift.NUMERICAL,
        "missing": 2 / 1004,
        "n": 1000,
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
        "kind": drift.NUMERICAL, "missing": 0.0, "n": 0
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
    assert drift.compare_column(ref, cur, drift.DriftThresholds()) == {
        "kind": drift.CATEGORICAL,
        "missing_reference": 0.1,
        "missing_current": 0.2,
        "method": "jensen_shannon",
        "threshold": 0.1,
        "unseen": ["xx"],
        "statistic": stat,
        "drifted": True,
    }
    t = drift.DriftThresholds(wasserstein=1.5)
    assert drift.compare_column(num(HALVES, 0.5), num([3.0] * GRID, 0.0, missing=0.3), t) == {
        "kind": drift.NUMERICAL,
        "missing_reference": 0.0,
        "missing_current": 0.3,
        "method": "wasserstein",
        "threshold": 1.5,
        "statistic": 1.0,
        "drifted": False,
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
    t = drift.DriftThresholds(numerical_method=method if numerical else "wasserstein")
    stat = drift.compare_column(ref, cur, t)["statistic"]
    assert stat > 0
    at = drift.DriftThresholds(**(t.asdict() | {method: stat}))
    above = drift.DriftThresholds(**(t.asdict() | {method: float(np.nextafter(stat, 1.0))}))
    assert drift.compare_column(ref, cur, at)["drifted"] is True
    assert drift.compare_column(ref, cur, above)["drifted"] is False


def test_dataset_drift_at_its_share_boundary():
    reference = {"features": {"x": REF_0_999, "c": cat({"a": 5})}}
    current = {"features": {"x": DOWN_50, "c": cat({"a": 7})}}  # x drifts, c does not
    result = drift.compare(reference, current, drift.DriftThresholds(drift_share=0.5))
    assert result["drifted_features"] == ["x"] and result["drift_share"] == 0.5
    assert result["dataset_drift"] is True and result["prediction"] is None
    above = drift.DriftThresholds(drift_share=float(np.nextafter(0.5, 1.0)))
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
        "psi_bins": 10,
    }
    with pytest.raises(ValueError, match="must be 'wasserstein' or 'psi', not 'ks'"):
        drift.DriftThresholds(numerical_method="ks")
