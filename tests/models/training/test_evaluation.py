"""Evaluation: metrics, the paired clip-level bootstrap against a slow reference, the gate."""

from __future__ import annotations

import numpy as np
import pytest

from models.training import evaluation as ev


def holdout(n_clips: int = 300, rows: int = 4, seed: int = 0):
    """Targets of clips with a few correlated rows each, and a good model's predictions."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_clips), rows)
    y = np.clip(
        np.repeat(rng.normal(55, 15, n_clips), rows) + rng.normal(0, 2, groups.size), 0, 100
    )
    good = np.clip(y + rng.normal(0, 4, y.size), 0, 100)
    return y, good, groups


def reference_bootstrap(y, a, b, metric, n, seed, confidence, groups):
    """One resample at a time, rows gathered per drawn clip: the definition, slowly."""
    fn = {
        "rmse": lambda t, p: np.sqrt(np.mean((p - t) ** 2)),
        "mae": lambda t, p: np.mean(np.abs(p - t)),
        "r2": lambda t, p: 1 - np.sum((p - t) ** 2) / np.sum((t - t.mean()) ** 2),
    }[metric]
    ids = np.unique(groups)  # factorize order == first appearance == sorted here
    rows_of = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        pick = rng.integers(0, len(ids), size=len(ids))
        rows = np.concatenate([rows_of[i] for i in pick])
        diffs.append(fn(y[rows], a[rows]) - fn(y[rows], b[rows]))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return {"diff": fn(y, a) - fn(y, b), "ci_low": lo, "ci_high": hi}


def test_metrics_known_values():
    m = ev.metrics([0.0, 10.0], [2.0, 10.0])
    assert m["rmse"] == pytest.approx(np.sqrt(2.0))
    assert m["mae"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - 4 / 50)
    base = ev.baseline_metrics(5.0, [0.0, 10.0])
    assert base == pytest.approx({"rmse": 5.0, "mae": 5.0, "r2": 0.0})


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
@pytest.mark.parametrize("grouped", [True, False])
def test_bootstrap_matches_slow_reference(metric, grouped):
    y, good, groups = holdout(n_clips=40, rows=3)
    worse = np.clip(good + np.random.default_rng(1).normal(0, 3, y.size), 0, 100)
    g = groups if grouped else np.arange(y.size)
    args = dict(metric=metric, n=300, seed=7, confidence=0.9)
    fast = ev.paired_bootstrap(y, good, worse, groups=g if grouped else None, **args)
    slow = reference_bootstrap(y, good, worse, groups=g, **args)
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-12)


def test_bootstrap_chunks_give_the_same_answer(monkeypatch):
    y, good, groups = holdout(n_clips=50)
    whole = ev.paired_bootstrap(y, good, np.full_like(y, 50.0), n=200, groups=groups)
    monkeypatch.setattr(ev, "_MAX_CELLS", 120)  # 2 resamples a chunk
    assert ev.paired_bootstrap(y, good, np.full_like(y, 50.0), n=200, groups=groups) == whole


def test_identical_predictions_have_a_zero_interval():
    y, good, groups = holdout()
    assert ev.paired_bootstrap(y, good, good, groups=groups) == {
        "diff": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
    }


def test_gate_passes_a_good_model_without_champion():
    y, good, groups = holdout()
    result = ev.gate(y, good, y.mean(), None, groups=groups)
    assert result.passed and result.reasons == []
    assert result.better_than_champion
    assert "beats the mean-predictor baseline" in result.details["checks"][0]


def test_gate_rejects_a_constant_model():
    y, _, groups = holdout()
    result = ev.gate(y, np.full_like(y, y.mean() + 1.0), y.mean(), None, groups=groups)
    assert not result.passed
    assert "does not clearly beat the mean-predictor baseline" in result.reasons[0]


def test_gate_rejects_a_point_win_whose_interval_straddles_zero():
    """A candidate barely better than the mean on 30 clips: its RMSE is lower, but the
    bootstrap interval of the difference reaches above 0, so it does not clearly beat it."""
    y, _, groups = holdout(n_clips=30, rows=2)
    rng = np.random.default_rng(3)
    weak = np.clip(y.mean() + 0.1 * (y - y.mean()) + rng.normal(0, 3, y.size), 0, 100)
    diff = ev.metrics(y, weak)["rmse"] - ev.baseline_metrics(y.mean(), y)["rmse"]
    assert -0.5 < diff < 0  # the point estimate beats the baseline
    result = ev.gate(y, weak, y.mean(), None, groups=groups)
    vb = result.details["vs_baseline"]
    assert vb["diff"] == pytest.approx(diff) and vb["ci_low"] < 0 < vb["ci_high"]
    assert not result.passed and not result.better_than_champion
    assert len(result.reasons) == 1
    assert "does not clearly beat the mean-predictor baseline" in result.reasons[0]
    assert "not entirely below 0" in result.reasons[0]


def test_gate_against_champion_worse_equal_better():
    y, good, groups = holdout()
    noisy = np.clip(good + np.random.default_rng(2).normal(0, 6, y.size), 0, 100)
    # a noisier candidate is worse than the champion beyond tolerance
    worse = ev.gate(y, noisy, y.mean(), good, groups=groups)
    assert not worse.passed and "worse than the champion" in worse.reasons[0]
    assert not worse.better_than_champion
    # the same predictions: not worse beyond tolerance, not better -> passes, no promotion
    same = ev.gate(y, good, y.mean(), good, groups=groups)
    assert same.passed and not same.better_than_champion
    # the good model against the noisy champion: clearly better
    better = ev.gate(y, good, y.mean(), noisy, groups=groups)
    assert better.passed and better.better_than_champion
    d = better.details["vs_champion"]
    assert d["ci_high"] < 0 and d["diff"] == pytest.approx(
        better.details["candidate"]["rmse"] - better.details["champion"]["rmse"]
    )


def test_gate_tolerance_admits_a_slightly_worse_candidate():
    y, good, groups = holdout()
    slightly = np.clip(good + 0.3, 0, 100)  # ~0.01 RMSE worse
    assert ev.gate(y, slightly, y.mean(), good, tolerance=0.5, groups=groups).passed
    assert not ev.gate(y, slightly, y.mean(), good, tolerance=0.0, groups=groups).passed


@pytest.mark.parametrize("bad", [np.nan, -0.5, 100.5])
def test_gate_rejects_invalid_predictions(bad):
    y, good, groups = holdout()
    pred = good.copy()
    pred[[3, 9]] = bad
    result = ev.gate(y, pred, y.mean(), None, groups=groups)
    assert not result.passed
    assert result.reasons == [f"2 of {y.size} candidate predictions are NaN or outside [0, 100]."]


def test_gate_does_not_hold_a_candidate_to_a_broken_champion():
    y, good, groups = holdout()
    result = ev.gate(y, good, y.mean(), np.full_like(y, np.nan), groups=groups)
    assert result.passed and result.better_than_champion
    assert "champion's predictions are invalid" in result.details["checks"][1]


def test_diagnostic_plots_are_pngs(tmp_path):
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(x, x[:, 0] * 10 + 50), 5)
    paths = ev.diagnostic_plots(booster, x[:, 0] * 10 + 50, booster.inplace_predict(x), tmp_path)
    assert set(paths) == {"feature_importance", "residuals"}
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_r2_is_nan_for_a_constant_target_and_exact_for_a_small_spread():
    flat = ev.metrics([5.0, 5.0], [5.0, 6.0])
    assert np.isnan(flat["r2"]) and flat["mae"] == 0.5
    assert ev.metrics([0.0, 1.0], [0.0, 1.0])["r2"] == 1.0  # total sum of squares 0.5
    # integer labels: the mean predictor is not truncated to an integer
    assert ev.baseline_metrics(5.5, [0, 10])["rmse"] == pytest.approx(np.sqrt(25.25))


def test_bootstrap_rejects_an_unknown_metric():
    with pytest.raises(
        ValueError, match=r"metric must be one of \('rmse', 'mae', 'r2'\), not 'auc'"
    ):
        ev.paired_bootstrap([1.0], [1.0], [1.0], metric="auc")


def test_bootstrap_last_chunk_may_be_short(monkeypatch):
    y, good, groups = holdout(n_clips=50)
    whole = ev.paired_bootstrap(y, good, np.full_like(y, 50.0), n=199, groups=groups)
    monkeypatch.setattr(ev, "_MAX_CELLS", 120)  # 2 resamples a chunk, the last one alone
    assert ev.paired_bootstrap(y, good, np.full_like(y, 50.0), n=199, groups=groups) == whole


def test_gate_details_and_sentences_when_it_passes_without_champion():
    y, good, groups = holdout()
    result = ev.gate(y, good, y.mean(), None, groups=groups, n_boot=300, seed=5, confidence=0.9)
    d = result.details
    assert result.passed is True and result.reasons == []
    assert d["rows"] == y.size and d["tolerance"] == 0.5 and d["confidence"] == 0.9
    assert d["invalid_predictions"] == 0
    assert d["candidate"] == ev.metrics(y, good)
    assert d["baseline"] == ev.baseline_metrics(y.mean(), y)
    # the interval is the clip-level bootstrap with the gate's own n, seed and confidence
    boot = dict(n=300, seed=5, confidence=0.9, groups=groups)
    vb = ev.paired_bootstrap(y, good, np.full_like(y, y.mean()), **boot)
    assert d["vs_baseline"] == vb
    assert d["checks"] == [
        f"Candidate RMSE {d['candidate']['rmse']:.3f} beats the mean-predictor baseline's "
        f"{d['baseline']['rmse']:.3f}: difference {vb['diff']:+.3f}, 90% CI "
        f"[{vb['ci_low']:+.3f}, {vb['ci_high']:+.3f}] entirely below 0.",
        "No champion yet: nothing to compare with.",
    ]


def test_gate_fails_a_candidate_no_better_than_the_mean_at_a_zero_interval():
    y, _, groups = holdout()
    result = ev.gate(y, np.full_like(y, y.mean()), y.mean(), None, groups=groups)
    assert result.details["vs_baseline"] == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert not result.passed
    assert result.reasons[0].endswith("[+0.000, +0.000] not entirely below 0.")


def test_gate_on_invalid_predictions_stops_before_any_bootstrap():
    y, good, groups = holdout()
    pred = good.copy()
    pred[0] = np.inf
    result = ev.gate(y, pred, y.mean(), good, groups=groups)
    msg = f"1 of {y.size} candidate predictions are NaN or outside [0, 100]."
    assert result.passed is False and result.better_than_champion is False
    assert result.details == {
        "rows": y.size,
        "tolerance": 0.5,
        "confidence": 0.95,
        "invalid_predictions": 1,
        "checks": [msg],
        "better_than_champion": False,
    }


def test_gate_champion_sentences_and_its_interval():
    y, good, groups = holdout()
    noisy = np.clip(good + np.random.default_rng(2).normal(0, 6, y.size), 0, 100)
    boot = dict(n=300, seed=5, confidence=0.9, groups=groups)
    for cand, champ, tail in [
        (good, noisy, "entirely below 0: better than the champion."),
        (
            good,
            good,
            "upper bound 0.000 < tolerance 0.5: not worse than the champion "
            "beyond tolerance, but not clearly better.",
        ),
    ]:
        result = ev.gate(
            y, cand, y.mean(), champ, n_boot=300, seed=5, confidence=0.9, groups=groups
        )
        d = result.details
        vc = ev.paired_bootstrap(y, cand, champ, **boot)
        assert d["vs_champion"] == vc and d["champion"] == ev.metrics(y, champ)
        assert result.passed and d["checks"][1] == (
            f"Candidate RMSE {d['candidate']['rmse']:.3f} vs the champion's "
            f"{d['champion']['rmse']:.3f} on the same {y.size} holdout rows: difference "
            f"{vc['diff']:+.3f}, 90% CI [{vc['ci_low']:+.3f}, {vc['ci_high']:+.3f}]; {tail}"
        )


def test_gate_fails_at_an_upper_bound_equal_to_the_tolerance():
    y, good, groups = holdout()
    noisy = np.clip(good + np.random.default_rng(2).normal(0, 6, y.size), 0, 100)
    hi = ev.paired_bootstrap(y, noisy, good, groups=groups)["ci_high"]
    assert hi > 0
    assert not ev.gate(y, noisy, y.mean(), good, tolerance=hi, groups=groups).passed
    assert ev.gate(
        y, noisy, y.mean(), good, tolerance=np.nextafter(hi, np.inf), groups=groups
    ).passed


def test_gate_does_not_hold_a_candidate_to_a_champion_out_of_range():
    y, good, groups = holdout()
    result = ev.gate(y, good, y.mean(), np.full_like(y, 150.0), groups=groups)
    assert result.passed and result.better_than_champion and "vs_champion" not in result.details
    assert result.details["checks"][1] == (
        f"The champion's predictions are invalid ({y.size} of {y.size} NaN or outside "
        "[0, 100]): the candidate is not held to it."
    )
