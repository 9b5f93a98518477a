"""Holdout metrics, a paired clip-level bootstrap, the promotion gate and diagnostic plots.

The gate compares a candidate with the mean predictor and with the serving champion on
the same holdout rows. Rows of one clip are correlated (a clip is scored at creation and
after each of its first days), so the bootstrap resamples clips, not rows, when `groups`
(the clip ids) is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SCORE_RANGE = (0.0, 100.0)
METRICS = ("rmse", "mae", "r2")
_MAX_CELLS = 1 << 23  # bootstrap index matrix cells per chunk (64 MiB of int64)


def metrics(y, yhat) -> dict[str, float]:
    """rmse, mae and r2 of predictions `yhat` for targets `y`."""
    y, yhat = _f64(y), _f64(yhat)
    err = yhat - y
    sst = float(np.sum((y - y.mean()) ** 2))
    sse = float(np.sum(err**2))
    return {
        "rmse": float(np.sqrt(sse / len(y))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
    }


def baseline_metrics(y_train_mean: float, y_holdout) -> dict[str, float]:
    """Metrics of the mean predictor: the training target mean for every holdout row."""
    y = _f64(y_holdout)
    return metrics(y, np.full_like(y, float(y_train_mean)))


def paired_bootstrap(
    y,
    pred_a,
    pred_b,
    metric: str = "rmse",
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups=None,
) -> dict[str, float]:
    """metric(a) - metric(b) on the full sample (`diff`) and its percentile bootstrap CI.

    Both predictions are scored on the same resamples (paired). With `groups`, whole groups
    (clips) are resampled with replacement. Vectorised: per-group sums, then an
    (n x n_groups) index matrix in chunks; sample i uses the i-th row of
    `default_rng(seed).integers(0, n_groups, (n, n_groups))`.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    y, a, b = _f64(y), _f64(pred_a), _f64(pred_b)
    codes = np.arange(len(y)) if groups is None else pd.factorize(np.asarray(groups))[0]
    g = int(codes.max()) + 1
    sums = _group_sums(codes, g, y, a, b, metric)  # (k, g): the statistics' building blocks
    full = sums.sum(axis=1)
    diff = _metric_from_sums(full[None, :], metric)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    step = max(1, _MAX_CELLS // g)
    for start in range(0, n, step):
        k = min(step, n - start)
        idx = rng.integers(0, g, size=(k, g))
        boot = np.stack([s[idx].sum(axis=1) for s in sums], axis=1)
        diffs[start : start + k] = _metric_from_sums(boot, metric)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(diffs, [alpha, 1.0 - alpha])
    return {"diff": float(diff[0]), "ci_low": float(lo), "ci_high": float(hi)}


def _group_sums(codes, g, y, a, b, metric) -> np.ndarray:
    def s(w):
        return np.bincount(codes, weights=w, minlength=g)

    count = np.bincount(codes, minlength=g).astype(np.float64)
    if metric == "rmse":
        return np.stack([count, s((a - y) ** 2), s((b - y) ** 2)])
    if metric == "mae":
        return np.stack([count, s(np.abs(a - y)), s(np.abs(b - y))])
    return np.stack([count, s((a - y) ** 2), s((b - y) ** 2), s(y), s(y * y)])


def _metric_from_sums(t: np.ndarray, metric: str) -> np.ndarray:
    """metric(a) - metric(b) per row of t (columns as in `_group_sums`)."""
    n, ea, eb = t[:, 0], t[:, 1], t[:, 2]
    if metric == "rmse":
        return np.sqrt(ea / n) - np.sqrt(eb / n)
    if metric == "mae":
        return (ea - eb) / n
    sst = t[:, 4] - t[:, 3] ** 2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - ea / sst) - (1.0 - eb / sst)


@dataclass
class GateResult:
    """`passed`: the candidate may be registered as validated (challenger or champion).
    `reasons`: why it failed (empty when passed); `details["checks"]`: every check's
    sentence; `details["better_than_champion"]`: clearly better, so it may be promoted."""

    passed: bool
    reasons: list[str]
    details: dict = field(default_factory=dict)

    @property
    def better_than_champion(self) -> bool:
        return bool(self.details.get("better_than_champion", False))


def gate(
    y,
    candidate_pred,
    baseline_pred,
    champion_pred=None,
    tolerance: float = 0.5,
    groups=None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> GateResult:
    """Validate a candidate on the holdout.

    Fails when any candidate prediction is NaN or outside [0, 100]; when the bootstrap CI
    of rmse(candidate) - rmse(baseline) is not entirely below 0; or, with a champion scored
    on the same rows, when that CI's upper bound for rmse(candidate) - rmse(champion) is not
    below `tolerance` (RMSE points). `better_than_champion`: that upper bound is below 0, or
    there is no champion, or the champion's own predictions are invalid (it is broken).
    """
    y, cand = _f64(y), _f64(candidate_pred)
    base = np.broadcast_to(_f64(baseline_pred), y.shape)
    pct = f"{confidence:.0%}"
    checks, reasons = [], []
    details: dict = {"rows": len(y), "tolerance": tolerance, "confidence": confidence}

    bad = int(np.sum(~((cand >= SCORE_RANGE[0]) & (cand <= SCORE_RANGE[1]))))
    details["invalid_predictions"] = bad
    if bad:
        msg = f"{bad} of {len(y)} candidate predictions are NaN or outside [0, 100]."
        details.update(checks=[msg], better_than_champion=False)
        return GateResult(False, [msg], details)

    boot = {"n": n_boot, "seed": seed, "confidence": confidence, "groups": groups}
    details["candidate"] = cm = metrics(y, cand)
    details["baseline"] = bm = metrics(y, base)
    details["vs_baseline"] = vb = paired_bootstrap(y, cand, base, **boot)
    ok = vb["ci_high"] < 0
    verdict = "beats" if ok else "does not clearly beat"
    tail = "entirely below 0" if ok else "not entirely below 0"
    msg = (
        f"Candidate RMSE {cm['rmse']:.3f} {verdict} the mean-predictor baseline's "
        f"{bm['rmse']:.3f}: difference {vb['diff']:+.3f}, {pct} CI "
        f"[{vb['ci_low']:+.3f}, {vb['ci_high']:+.3f}] {tail}."
    )
    checks.append(msg)
    if not ok:
        reasons.append(msg)

    better = True
    if champion_pred is None:
        checks.append("No champion yet: nothing to compare with.")
    else:
        champ = _f64(champion_pred)
        champ_bad = int(np.sum(~((champ >= SCORE_RANGE[0]) & (champ <= SCORE_RANGE[1]))))
        if champ_bad:
            checks.append(
                f"The champion's predictions are invalid ({champ_bad} of {len(y)} NaN or "
                "outside [0, 100]): the candidate is not held to it."
            )
        else:
            details["champion"] = chm = metrics(y, champ)
            details["vs_champion"] = vc = paired_bootstrap(y, cand, champ, **boot)
            hi = vc["ci_high"]
            better = hi < 0
            head = (
                f"Candidate RMSE {cm['rmse']:.3f} vs the champion's {chm['rmse']:.3f} on the "
                f"same {len(y)} holdout rows: difference {vc['diff']:+.3f}, {pct} CI "
                f"[{vc['ci_low']:+.3f}, {hi:+.3f}]"
            )
            if hi >= tolerance:
                msg = f"{head}; upper bound {hi:.3f} >= tolerance {tolerance}: worse than the champion."
                reasons.append(msg)
            elif better:
                msg = f"{head}; entirely below 0: better than the champion."
            else:
                msg = (
                    f"{head}; upper bound {hi:.3f} < tolerance {tolerance}: not worse than "
                    "the champion beyond tolerance, but not clearly better."
                )
            checks.append(msg)
    details["checks"] = checks
    details["better_than_champion"] = better and not reasons
    return GateResult(not reasons, reasons, details)


def diagnostic_plots(booster, y, yhat, out_dir: str | Path, max_points: int = 5_000) -> dict:
    """Feature importance (gain) and residual plots as PNGs in out_dir; {name: path}.

    Uses matplotlib's object API (no pyplot, no global backend switch): Agg canvases only.
    """
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gain = sorted(booster.get_score(importance_type="gain").items(), key=lambda kv: kv[1])[-20:]
    fig = Figure(figsize=(7, 6), layout="tight")
    ax = fig.add_subplot()
    ax.barh([k for k, _ in gain], [v for _, v in gain])
    ax.set_xlabel("mean gain per split")
    ax.set_title("Feature importance (top 20 by gain)")
    paths = {"feature_importance": out / "feature_importance.png"}
    fig.savefig(paths["feature_importance"], dpi=100)

    y, yhat = _f64(y), _f64(yhat)
    if len(y) > max_points:
        keep = np.random.default_rng(0).choice(len(y), max_points, replace=False)
        y, yhat = y[keep], yhat[keep]
    fig = Figure(figsize=(11, 4.5), layout="tight")
    a1, a2 = fig.subplots(1, 2)
    a1.scatter(yhat, y, s=3, alpha=0.3)
    a1.plot(SCORE_RANGE, SCORE_RANGE, color="black", lw=1)
    a1.set(xlabel="predicted quality_score", ylabel="actual", title="Holdout: actual vs predicted")
    a2.hist(y - yhat, bins=60)
    a2.set(xlabel="actual - predicted", ylabel="rows", title="Holdout residuals")
    paths["residuals"] = out / "residuals.png"
    fig.savefig(paths["residuals"], dpi=100)
    return paths


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
