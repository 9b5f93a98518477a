"""A/B statistics on per-arm moments: Welch tests, CUPED, SRM, Benjamini-Hochberg, power
and the decision. Pure numpy/scipy; the moments come from the warehouse through
`models.experiments.aggregate`, which also documents the population, outcome and pre-period.

Choices (also in the README):
- Welch t test with Welch-Satterthwaite df (the t distribution at every n, so p-values equal
  `scipy.stats.ttest_ind(equal_var=False)`); the lift CI uses the same t quantile.
- Relative lift: (variant mean / control mean) - 1, CI by the delta method with the same
  quantile; marginal (not multiplicity-adjusted).
- CUPED: theta = cov(x, y) / var(x) over all users of all arms (pooled), applied when some
  user has pre-period data; y_adj = y - theta (x - mean x). With CUPED, `control_mean` and
  `variant_mean` are the adjusted means (so `lift` is their difference); the raw ones are in
  `*_mean_raw`.
- Method: `sequential` experiments (the default) get the confidence sequence of
  models/experiments/sequential.py in place of Welch's interval (always-valid p-values, the
  same CUPED); `fixed_horizon` ones get Welch. The decision rules, the minimum runtime and
  the history are in models/experiments/decision.py.
- Multiple testing: the primary metric is tested at alpha = 1 - confidence, uncorrected;
  the secondary metrics (all of them, every variant) get Benjamini-Hochberg q-values (of
  the method's p-values) and `significant` means q < alpha. Guardrail metrics are tested
  marginally (stricter for a safety check). CIs stay marginal.
- Power: `mde` is the absolute lift detectable with power 0.8 at two-sided alpha with the
  current standard error; `sample_reached` when every variant has `min_sample_size` users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy import stats

from models.experiments.config import ExperimentConfig

SRM_ALPHA = 0.001
POWER = 0.8
DECISIONS = ("ship", "no_ship", "inconclusive", "invalid_srm", "running")


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one arm (fields may be arrays for many experiments at once):
    n users, mean and sample variance of outcome y and pre-period x, sample cov(x, y)."""

    n: np.ndarray | float
    mean_y: np.ndarray | float
    var_y: np.ndarray | float
    mean_x: np.ndarray | float = 0.0
    var_x: np.ndarray | float = 0.0
    cov_xy: np.ndarray | float = 0.0


def moments(y, x=None, axis: int = -1) -> Moments:
    """Moments of per-user arrays (along `axis`)."""
    y = np.asarray(y, dtype=float)
    x = np.zeros_like(y) if x is None else np.asarray(x, dtype=float)
    n = y.shape[axis]
    my, mx = y.mean(axis=axis), x.mean(axis=axis)
    dy = y - np.expand_dims(my, axis)
    dx = x - np.expand_dims(mx, axis)
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 1: NaN, like var_samp
        var_y, var_x, cov = ((a * b).sum(axis) / (n - 1) for a, b in ((dy, dy), (dx, dx), (dx, dy)))
    return Moments(n, my, var_y, mx, var_x, cov)


def pool(arms: list[Moments]) -> Moments:
    """The moments of the union of the arms (the parallel-variance formula). Scalar arms
    with n = 0 are skipped; the union of none has n = 0 and NaN moments."""
    if all(np.ndim(a.n) == 0 for a in arms):
        arms = [a for a in arms if a.n > 0]
        if not arms:
            return Moments(0.0, math.nan, math.nan, math.nan, math.nan, math.nan)
    n = sum(np.asarray(a.n, dtype=float) for a in arms)
    my = sum(a.n * a.mean_y for a in arms) / n
    mx = sum(a.n * a.mean_x for a in arms) / n

    def comoment(dev_a, dev_b, within) -> np.ndarray:
        total = sum((a.n - 1) * _nan0(within(a)) + a.n * dev_a(a) * dev_b(a) for a in arms)
        return total / np.maximum(n - 1, 1)

    def dy(a):
        return a.mean_y - my

    def dx(a):
        return a.mean_x - mx

    return Moments(
        n,
        my,
        comoment(dy, dy, lambda a: a.var_y),
        mx,
        comoment(dx, dx, lambda a: a.var_x),
        comoment(dx, dy, lambda a: a.cov_xy),
    )


def _nan0(v):
    return np.nan_to_num(np.asarray(v, dtype=float), nan=0.0)


# -- CUPED ------------------------------------------------------------------------------
def cuped_theta(arms: list[Moments]) -> np.ndarray | float:
    """theta = cov(x, y) / var(x) over all users of all arms; 0 without pre-period variance.

    A variance within rounding of a constant x (a standard deviation under 1e-12 of its
    mean: arms' means of 0.95 differ in the last bit) is none, not a theta of 1e15."""
    p = pool(arms)
    var_x = np.asarray(p.var_x, dtype=float)
    varies = var_x > (1e-12 * np.asarray(p.mean_x, dtype=float)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(varies, p.cov_xy / np.where(varies, var_x, 1.0), 0.0)


def cuped_adjust(arm: Moments, theta, mean_x_all) -> Moments:
    """The arm's moments of y_adj = y - theta (x - mean_x_all)."""
    return Moments(
        arm.n,
        arm.mean_y - theta * (arm.mean_x - mean_x_all),
        np.maximum(arm.var_y - 2 * theta * arm.cov_xy + theta**2 * arm.var_x, 0.0),
        arm.mean_x,
        arm.var_x,
        arm.cov_xy - theta * arm.var_x,
    )


def cuped(y, x, arms=None) -> np.ndarray:
    """Per-user CUPED-adjusted outcomes, theta pooled over every user (all arms)."""
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    labels = np.zeros(len(y)) if arms is None else np.asarray(arms)
    parts = [moments(y[labels == a], x[labels == a]) for a in np.unique(labels)]
    theta = cuped_theta(parts)
    return y - theta * (x - x.mean())


# -- tests ------------------------------------------------------------------------------
def welch_moments(control: Moments, variant: Moments, confidence: float) -> dict:
    """Welch's t test of mean(variant) - mean(control), with the relative lift (delta method)
    and the minimum detectable effect at the current n. Works on arrays of experiments."""
    alpha = 1.0 - confidence
    nc, nt = np.asarray(control.n, dtype=float), np.asarray(variant.n, dtype=float)
    mc, mt = np.asarray(control.mean_y, dtype=float), np.asarray(variant.mean_y, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        qc, qt = np.asarray(control.var_y) / nc, np.asarray(variant.var_y) / nt
        se = np.sqrt(qc + qt)
        df = (qc + qt) ** 2 / (qc**2 / (nc - 1) + qt**2 / (nt - 1))
        lift = mt - mc
        t = lift / se
        p = 2 * stats.t.sf(np.abs(t), df)
        crit = stats.t.ppf(1 - alpha / 2, df)
        rel = mt / mc - 1
        se_rel = np.sqrt(qt / mc**2 + mt**2 * qc / mc**4)
        mde = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER)) * se
        return {
            "control_mean": mc,
            "variant_mean": mt,
            "lift": lift,
            "ci_low": lift - crit * se,
            "ci_high": lift + crit * se,
            "relative_lift": rel,
            "relative_ci_low": rel - crit * se_rel,
            "relative_ci_high": rel + crit * se_rel,
            "se": se,
            "df": df,
            "t": t,
            "p_value": p,
            "mde": mde,
            "relative_mde": mde / np.abs(mc),
            "n_control": nc,
            "n_variant": nt,
        }


def welch(y_control, y_variant, confidence: float = 0.95) -> dict:
    """`welch_moments` on per-user arrays."""
    return welch_moments(moments(y_control), moments(y_variant), confidence)


def compare(
    control: Moments,
    variant: Moments,
    confidence: float,
    theta=0.0,
    mean_x_all=0.0,
    cuped=False,
    tuning_n: float | None = None,
) -> dict:
    """Welch (or, given `tuning_n`, the confidence sequence of models/experiments/sequential.py)
    on raw or CUPED-adjusted moments, with the variance reduction CUPED brought."""
    if tuning_n is None:
        test = welch_moments
    else:
        from models.experiments.sequential import sequential_moments

        def test(c, v, conf):
            return sequential_moments(c, v, conf, tuning_n)

    raw = test(control, variant, confidence)
    if not cuped:
        return {**raw, "cuped": False, "theta": None, "variance_reduction": 0.0}
    adj = test(
        cuped_adjust(control, theta, mean_x_all),
        cuped_adjust(variant, theta, mean_x_all),
        confidence,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        reduction = 1 - adj["se"] ** 2 / raw["se"] ** 2
    return {
        **adj,
        "control_mean_raw": raw["control_mean"],
        "variant_mean_raw": raw["variant_mean"],
        "cuped": True,
        "theta": theta,
        "variance_reduction": reduction,
    }


def srm(observed: dict[str, int], weights: dict[str, float]) -> dict:
    """Sample-ratio mismatch: chi-square goodness of fit of the users per variant against
    the configured weights; `detected` when p < 0.001."""
    names = list(weights)
    obs = np.array([observed.get(v, 0) for v in names], dtype=float)
    total = obs.sum()
    expected = np.array([weights[v] for v in names]) * total
    if total == 0:
        stat, p = 0.0, None
    else:
        stat = float(((obs - expected) ** 2 / expected).sum())
        p = float(stats.chi2.sf(stat, len(names) - 1))
    return {
        "expected": {v: float(e) for v, e in zip(names, expected, strict=True)},
        "observed": {v: int(o) for v, o in zip(names, obs, strict=True)},
        "statistic": stat,
        "p_value": p,
        "detected": p is not None and p < SRM_ALPHA,
    }


def benjamini_hochberg(p_values) -> np.ndarray:
    """BH-adjusted p-values (q-values), in the input order; NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


# -- the result -----------------------------------------------------------------------
def summarize(
    exp: ExperimentConfig,
    counts: dict[str, int],
    by_metric: dict[str, dict[str, Moments]],
    as_of: datetime,
    pre_period_days: int,
) -> dict:
    """The A/B result of one look in the contract's JSON shape (every variant vs the control,
    for the primary, secondary and guardrail metrics) from the users per variant and
    {metric: {variant: Moments}}, plus the decision under the experiment's method
    (models/experiments/decision.py)."""
    from models.experiments import decision as d

    check = srm(counts, exp.variants)
    sample_reached = all(counts.get(v, 0) >= exp.min_sample_size for v in exp.variants)
    sequential = exp.method == d.SEQUENTIAL
    ended = as_of >= exp.end - timedelta(microseconds=1)
    horizon = ended or (exp.horizon_users is not None
                        and all(counts.get(v, 0) >= exp.horizon_users for v in exp.variants))  # fmt: skip

    rows, informative = [], True
    for metric in exp.metrics:
        arms = by_metric[metric]
        everyone = pool(list(arms.values()))
        use_cuped = bool(everyone.n > 1 and everyone.var_x > 0)
        theta = float(cuped_theta(list(arms.values()))) if use_cuped else 0.0
        for variant in exp.treatments:
            r = compare(
                arms[exp.control],
                arms[variant],
                exp.confidence_level,
                theta,
                float(everyone.mean_x) if use_cuped else 0.0,
                use_cuped,
                exp.tuning_n if sequential else None,
            )
            rows.append(_row(metric, variant, metric == exp.primary_metric, r, sample_reached))
            rows[-1]["guardrail"] = metric in exp.guardrail_metrics
            if metric == exp.primary_metric:
                informative &= bool(np.isfinite(r["se"]) and r["se"] > 0)

    alpha = 1 - exp.confidence_level
    secondary = [r for r in rows if not r["primary"] and not r["guardrail"]]
    q = benjamini_hochberg([math.nan if r["p_value"] is None else r["p_value"] for r in secondary])
    for r, qi in zip(secondary, q, strict=True):
        r["p_value_adjusted"] = _clean(qi)
    for r in rows:
        r["significant"] = r["p_value_adjusted"] is not None and r["p_value_adjusted"] < alpha
    # a significant row has a finite, non-zero lift (p is NaN without one, 1 at zero)
    fell = {r["variant"] for r in rows if r["guardrail"] and r["significant"] and r["lift"] < 0}
    primary = [r for r in rows if r["primary"]]
    for r in primary:
        r["guardrail_blocked"] = r["variant"] in fell
    up = [r for r in primary if r["significant"] and r["lift"] > 0]
    decision, reason = d.decide(
        exp.method,
        srm_detected=check["detected"],
        runtime_reached=d.runtime_reached(exp.start, as_of, exp.min_runtime_days),
        horizon_reached=horizon,
        ended=ended,
        sample_reached=sample_reached,
        informative=informative,
        up=bool(up),
        guardrail_down=all(r["guardrail_blocked"] for r in up),
        all_down=bool(primary) and all(r["significant"] and r["lift"] < 0 for r in primary),
    )
    decision, reason = str(decision), str(reason)
    return {
        "experiment_id": exp.experiment_id,
        "analyzed_at": as_of.isoformat(),
        "srm": check,
        "metrics": rows,
        "decision": decision,
        "decision_reason": reason,
        "decision_grade": decision != "running",
        "final": d.is_final(exp.method, decision, horizon),
        "method": exp.method,
        "min_runtime_days": exp.min_runtime_days,
        "sequential_tuning_n": exp.tuning_n if sequential else None,
        "horizon_reached": horizon,
        "primary_metric": exp.primary_metric,
        "guardrail_metrics": list(exp.guardrail_metrics),
        "control": exp.control,
        "confidence_level": exp.confidence_level,
        "min_sample_size": exp.min_sample_size,
        "sample_reached": sample_reached,
        "pre_period_days": pre_period_days,
        "unknown_variants": {v: c for v, c in counts.items() if v not in exp.variants},
    }


def _row(metric: str, variant: str, primary: bool, r: dict, sample_reached: bool) -> dict:
    keys = ("control_mean", "variant_mean", "lift", "relative_lift", "ci_low", "ci_high", "p_value")
    out = {"metric": metric, "variant": variant, **{k: _clean(r[k]) for k in keys}}
    extra = (
        "relative_ci_low",
        "relative_ci_high",
        "theta",
        "variance_reduction",
        "mde",
        "relative_mde",
    )
    return out | {
        "significant": False,
        "cuped": bool(r["cuped"]),
        "n_control": int(r["n_control"]),
        "n_variant": int(r["n_variant"]),
        "primary": primary,
        "p_value_adjusted": _clean(r["p_value"]),
        "control_mean_raw": _clean(r.get("control_mean_raw", r["control_mean"])),
        "variant_mean_raw": _clean(r.get("variant_mean_raw", r["variant_mean"])),
        **{k: _clean(r[k]) for k in extra},
        "sample_reached": sample_reached,
        "guardrail": False,
        "guardrail_blocked": False,
    }


def _clean(v) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None
