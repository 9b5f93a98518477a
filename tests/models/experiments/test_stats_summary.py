"""`summarize`, the A/B result in the contract's shape, on moments of per-user data, every
field against an independent computation from the users' numbers: scipy's Welch test, a
least-squares CUPED slope, scipy's Benjamini-Hochberg (test_aggregate.py runs it on the
warehouse)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from models.experiments.config import ExperimentConfig
from models.experiments.stats import POWER, Moments, _clean, moments, summarize

AS_OF = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
VARIANTS = {"control": 0.4, "b": 0.3, "c": 0.3}
N = {"control": 400, "b": 300, "c": 300}
ROW_KEYS = {
    "metric", "variant", "control_mean", "variant_mean", "lift", "relative_lift", "ci_low",
    "ci_high", "p_value", "significant", "cuped", "n_control", "n_variant", "primary",
    "p_value_adjusted", "control_mean_raw", "variant_mean_raw", "relative_ci_low",
    "relative_ci_high", "theta", "variance_reduction", "mde", "relative_mde", "sample_reached",
    "guardrail", "guardrail_blocked",
}  # fmt: skip


def config(min_sample_size: int = 300, confidence: float = 0.9, variants=VARIANTS):
    return ExperimentConfig.from_dict(
        {
            "experiment_id": "exp_sum",
            "name": "summary",
            "variants": variants,
            "start": "2026-01-10T00:00:00Z",
            "end": "2026-01-20T00:00:00Z",
            "primary_metric": "watch",
            "secondary_metrics": ["likes", "shares"],
            "min_sample_size": min_sample_size,
            "confidence_level": confidence,
            "method": "fixed_horizon",  # Welch at the horizon (AS_OF is after the end)
        }
    )


def shift_to_p(yc, yt, p: float) -> np.ndarray:
    """yt moved by a constant so that Welch's two-sided p-value is `p` with a positive lift."""
    res = stats.ttest_ind(yt, yc, equal_var=False)
    se = (yt.mean() - yc.mean()) / res.statistic
    return yt + stats.t.isf(p / 2, res.df) * se - (yt.mean() - yc.mean())


def users(primary_p=(0.098, 0.102), seed: int = 21) -> dict[str, dict[str, tuple]]:
    """{metric: {variant: (y, x)}}: `watch` and `shares` without a pre-period (x = 0), their
    p-values set; `likes` with a correlated pre-period (CUPED) and a lift planted in b."""
    rng = np.random.default_rng(seed)
    data: dict[str, dict[str, tuple]] = {"watch": {}, "likes": {}, "shares": {}}
    for metric, targets in (("watch", primary_p), ("shares", (0.07, 0.6))):
        yc = rng.gamma(2.0, 3.0, N["control"])
        data[metric]["control"] = (yc, np.zeros_like(yc))
        for v, p in zip(("b", "c"), targets, strict=True):
            yt = shift_to_p(yc, rng.gamma(2.0, 3.0, N[v]), p)
            data[metric][v] = (yt, np.zeros_like(yt))
    for v, lift in (("control", 0.0), ("b", 1.5), ("c", 0.0)):
        x = rng.gamma(2.0, 2.0, N[v])
        data["likes"][v] = (3 + 0.9 * x + rng.normal(0, 2, N[v]) + lift, x)
    return data


def by_metric(data) -> dict:
    return {m: {v: moments(y, x) for v, (y, x) in arms.items()} for m, arms in data.items()}


def expected_rows(data, confidence: float, reached: bool) -> list[dict]:
    """Every row from the users' numbers, without the module's moment arithmetic."""
    alpha = 1 - confidence
    rows = []
    for metric, arms in data.items():
        x_all = np.concatenate([x for _, x in arms.values()])
        y_all = np.concatenate([y for y, _ in arms.values()])
        use_cuped = x_all.var() > 0
        theta = np.polyfit(x_all, y_all, 1)[0] if use_cuped else 0.0
        adj = {v: y - theta * (x - x_all.mean()) for v, (y, x) in arms.items()}
        yc, rc = adj["control"], arms["control"][0]
        for v in ("b", "c"):
            yt, rt = adj[v], arms[v][0]
            res = stats.ttest_ind(yt, yc, equal_var=False)
            ci = res.confidence_interval(confidence)
            qc, qt = yc.var(ddof=1) / len(yc), yt.var(ddof=1) / len(yt)
            se = math.sqrt(qc + qt)
            raw_se2 = rc.var(ddof=1) / len(rc) + rt.var(ddof=1) / len(rt)
            mc, mt = yc.mean(), yt.mean()
            se_rel = math.sqrt(qt / mc**2 + mt**2 * qc / mc**4)
            crit = stats.t.ppf(1 - alpha / 2, res.df)
            mde = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER)) * se
            rows.append(
                {
                    "metric": metric, "variant": v, "control_mean": mc, "variant_mean": mt,
                    "lift": mt - mc, "relative_lift": mt / mc - 1, "ci_low": ci.low,
                    "ci_high": ci.high, "p_value": res.pvalue, "cuped": bool(use_cuped),
                    "n_control": len(yc), "n_variant": len(yt), "primary": metric == "watch",
                    "control_mean_raw": rc.mean(), "variant_mean_raw": rt.mean(),
                    "relative_ci_low": mt / mc - 1 - crit * se_rel,
                    "relative_ci_high": mt / mc - 1 + crit * se_rel,
                    "theta": theta if use_cuped else None,
                    "variance_reduction": 1 - se**2 / raw_se2 if use_cuped else 0.0,
                    "mde": mde, "relative_mde": mde / abs(mc), "sample_reached": reached,
                    "guardrail": False, "guardrail_blocked": False,
                }
            )  # fmt: skip
    secondary = [r for r in rows if not r["primary"]]
    q = stats.false_discovery_control([r["p_value"] for r in secondary])
    for r in rows:
        r["p_value_adjusted"] = r["p_value"]
    for r, qi in zip(secondary, q, strict=True):
        r["p_value_adjusted"] = qi
    for r in rows:
        r["significant"] = bool(r["p_value_adjusted"] < alpha)
    return rows


def assert_rows(got: list[dict], want: list[dict]) -> None:
    assert [(r["metric"], r["variant"]) for r in got] == [(r["metric"], r["variant"]) for r in want]
    for g, w in zip(got, want, strict=True):
        assert set(g) == ROW_KEYS, (g["metric"], g["variant"])
        for key, value in w.items():
            if isinstance(value, (bool, str, int)) or value is None:
                assert g[key] == value and type(g[key]) is type(value), (g["metric"], key)
            else:
                assert type(g[key]) is float, (g["metric"], key)
                assert g[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (g["metric"], key)


def test_every_field_of_every_row_from_the_users_numbers():
    data = users()
    counts = {**N, "mystery": 7}
    out = summarize(config(), counts, by_metric(data), AS_OF, 28)
    want = expected_rows(data, 0.9, reached=True)
    assert_rows(out["metrics"], want)
    # the planted cases: watch/b just significant at confidence 0.9 (p 0.098), watch/c just
    # not (0.102); shares/b has p 0.07 < 0.1 but a BH q-value above 0.1; likes/b survives BH
    by = {(r["metric"], r["variant"]): r for r in out["metrics"]}
    assert by["watch", "b"]["significant"] and not by["watch", "c"]["significant"]
    assert by["shares", "b"]["p_value"] < 0.1 <= by["shares", "b"]["p_value_adjusted"]
    assert not by["shares", "b"]["significant"] and by["likes", "b"]["significant"]
    assert by["likes", "b"]["cuped"] and by["likes", "b"]["variance_reduction"] > 0.3
    assert out["decision"] == "ship"
    assert {k: v for k, v in out.items() if k not in ("metrics", "srm")} == {
        "experiment_id": "exp_sum",
        "analyzed_at": "2026-02-03T04:05:06+00:00",
        "decision": "ship",
        "decision_reason": "primary_up",
        "decision_grade": True,
        "final": True,  # at the horizon
        "method": "fixed_horizon",
        "min_runtime_days": 7,
        "sequential_tuning_n": None,
        "horizon_reached": True,
        "guardrail_metrics": [],
        "primary_metric": "watch",
        "control": "control",
        "confidence_level": 0.9,
        "min_sample_size": 300,
        "sample_reached": True,
        "pre_period_days": 28,
        "unknown_variants": {"mystery": 7},
    }
    ref = stats.chisquare([400, 300, 300], [400.0, 300.0, 300.0])
    assert out["srm"] == {
        "expected": {"control": 400.0, "b": 300.0, "c": 300.0},
        "observed": {"control": 400, "b": 300, "c": 300},
        "statistic": pytest.approx(ref.statistic, abs=1e-12),
        "p_value": pytest.approx(ref.pvalue),
        "detected": False,
    }


def test_only_the_primary_metric_ships():
    """watch not significant (p 0.102 and 0.3), likes/b significantly up: no_ship."""
    data = users(primary_p=(0.102, 0.3))
    out = summarize(config(), N, by_metric(data), AS_OF, 28)
    assert_rows(out["metrics"], expected_rows(data, 0.9, reached=True))
    assert [r["significant"] for r in out["metrics"] if r["primary"]] == [False, False]
    assert any(r["significant"] and r["lift"] > 0 for r in out["metrics"])
    assert out["decision"] == "no_ship"


def test_the_confidence_level_sets_alpha():
    """At 0.95, watch/b (p 0.098) is not significant: no_ship."""
    data = users()
    out = summarize(config(confidence=0.95), N, by_metric(data), AS_OF, 28)
    assert_rows(out["metrics"], expected_rows(data, 0.95, reached=True))
    assert out["decision"] == "no_ship"


@pytest.mark.parametrize(
    ("min_sample_size", "reached", "decision"), [(300, True, "ship"), (301, False, "inconclusive")]
)
def test_min_sample_size_at_its_boundary(min_sample_size, reached, decision):
    """The smallest arm has 300 users: reached at 300 (inclusive), not at 301."""
    data = users()
    out = summarize(config(min_sample_size), N, by_metric(data), AS_OF, 28)
    assert out["sample_reached"] is reached and out["decision"] == decision
    assert [r["sample_reached"] for r in out["metrics"]] == [reached] * 6
    assert_rows(out["metrics"], expected_rows(data, 0.9, reached=reached))


def test_srm_invalidates_whatever_the_metrics_say():
    counts = {"control": 500, "b": 250, "c": 250, "mystery": 3}
    out = summarize(config(), counts, by_metric(users()), AS_OF, 14)
    assert out["srm"]["detected"] and out["srm"]["observed"] == {"control": 500, "b": 250, "c": 250}
    assert out["srm"]["p_value"] == pytest.approx(
        stats.chisquare([500, 250, 250], [400, 300, 300]).pvalue
    )
    assert out["decision"] == "invalid_srm"
    assert out["unknown_variants"] == {"mystery": 3} and out["pre_period_days"] == 14


def test_a_row_without_a_p_value_is_left_out_of_bh():
    """One user per arm on a secondary metric: no variance, no p-value (None, not NaN), no
    q-value, not significant; the other secondary rows are adjusted among themselves. CUPED
    still applies from 2 users on, and to a var(x) under 1 (theta = the slope through the
    two points)."""
    data = {m: {v: arms[v] for v in ("control", "b")} for m, arms in users().items()}
    data["shares"] = {
        "control": (np.array([2.0]), np.array([1.0])),
        "b": (np.array([7.0]), np.array([2.0])),
    }
    exp = config(variants={"control": 0.5, "b": 0.5})
    out = summarize(exp, {"control": 400, "b": 400}, by_metric(data), AS_OF, 28)
    shares = out["metrics"][-1]
    assert (shares["metric"], shares["variant"]) == ("shares", "b")
    assert shares["p_value"] is None and shares["p_value_adjusted"] is None
    assert shares["significant"] is False and shares["ci_low"] is None
    assert shares["cuped"] is True and shares["theta"] == pytest.approx(5.0)
    assert shares["control_mean_raw"] == 2.0 and shares["variant_mean_raw"] == 7.0
    # var(x) 0.5, cov 2.5; y - 5 (x - 1.5): 2 - 5 (-0.5) = 4.5 and 7 - 5 (0.5) = 4.5
    assert shares["control_mean"] == pytest.approx(4.5) and shares["lift"] == pytest.approx(0.0)
    likes = out["metrics"][1]
    assert likes["metric"] == "likes" and likes["p_value_adjusted"] == likes["p_value"]


def test_clean_turns_nan_and_infinities_into_none():
    assert [_clean(v) for v in (None, math.nan, math.inf, -math.inf)] == [None] * 4
    got = _clean(np.float64(2.5))
    assert got == 2.5 and type(got) is float
    assert _clean(np.array(-1)) == -1.0 and type(_clean(3)) is float


def test_a_variant_without_users_has_not_reached_the_sample():
    out = summarize(config(min_sample_size=1), {"control": 400, "b": 300}, by_metric(users()),
                    AS_OF, 28)  # fmt: skip
    assert out["sample_reached"] is False
    assert out["srm"]["observed"] == {"control": 400, "b": 300, "c": 0}
    assert out["decision"] == "invalid_srm"


def t_at_and_below(alpha: float) -> tuple[float, float]:
    """Two t statistics at df 1, a few ulps apart: Welch's p-value exactly `alpha` in
    floating point, and just below it."""
    t0 = stats.t.isf(alpha / 2, 1.0)
    ts = t0 + np.arange(-3000, 3000) * np.spacing(t0)
    p = 2 * stats.t.sf(ts, 1.0)
    at = np.flatnonzero(p == alpha)
    assert len(at), "no float t gives p == alpha exactly"
    below = at[-1] + np.flatnonzero(p[at[-1] :] < alpha)[0]
    return float(ts[at[-1]]), float(ts[below])


@pytest.mark.parametrize(("which", "significant"), [(0, False), (1, True)])
def test_significant_means_strictly_below_alpha(which, significant):
    """p = 1 - confidence exactly is not significant; p just below it is. Control: 2 users,
    variance 2 (se 1); variant: 2 users, no variance (so df 1), mean t."""
    alpha = 1 - 0.9
    t = t_at_and_below(alpha)[which]
    arms = {"control": Moments(2.0, 0.0, 2.0), "b": Moments(2.0, t, 0.0)}
    exp = config(min_sample_size=1, variants={"control": 0.5, "b": 0.5})
    out = summarize(exp, {"control": 2, "b": 2}, dict.fromkeys(exp.metrics, arms), AS_OF, 0)
    primary = out["metrics"][0]
    assert (primary["p_value"] == alpha) is not significant and primary["p_value"] <= alpha
    assert [r["significant"] for r in out["metrics"]] == [significant] * 3
    assert out["decision"] == ("ship" if significant else "no_ship")
