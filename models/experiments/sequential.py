"""Always-valid inference for the A/B lift: asymptotic confidence sequences.

The interval is the asymptotic confidence sequence (CS) of Waudby-Smith, Arbour, Sinha,
Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences", Annals of Statistics (2024), arXiv:2103.06476, the two-sided normal-mixture
boundary of its Theorem 2.2: at time t (users so far, all arms together) with estimated
per-user variance s2,

    margin_t = sqrt(s2) * sqrt( 2 (t rho2 + 1) / (t^2 rho2) * log( sqrt(t rho2 + 1) / alpha ) )

holds the true value at every t at once with probability >= 1 - alpha (asymptotically), so
the data can be looked at every day and a decision taken on any of them. For a difference
of arm means, s2 = t * Var(lift estimate) (GrowthBook's gbstats does the same, with
`sequential_tuning_parameter` as t_opt); the relative lift uses its delta-method variance.

rho2 tunes where the sequence is tightest: the value that minimises the margin at t_opt,
solved in closed form from d margin / d rho2 = 0 (u = t_opt rho2 + 1 solves
u - log u = 1 - 2 log alpha):

    rho2 = ( -W_{-1}( -alpha^2 / e ) - 1 ) / t_opt          (W_{-1}: Lambert W, lower branch)

(GrowthBook uses the approximation -2 log alpha + log(1 - 2 log alpha) for t_opt rho2.)

The always-valid p-value is the smallest alpha whose sequence (rho2 held at its design
value) excludes zero: p_t = min(1, sqrt(t rho2 + 1) exp(-z^2 t rho2 / (2 (t rho2 + 1))))
with z = lift / se; `p < alpha` exactly when the CS excludes 0. Every function works on
numpy arrays (many experiments, or many simulated runs, at once).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from models.experiments.stats import POWER, Moments


def best_rho2(alpha: float, t_opt: float) -> float:
    """The tuning rho2 that makes the (1 - alpha) sequence tightest at t_opt users."""
    if not (0 < alpha < 1 and t_opt > 0):
        raise ValueError(f"need 0 < alpha < 1 and t_opt > 0, got {alpha!r}, {t_opt!r}")
    u = -special.lambertw(-(alpha**2) * np.exp(-1.0), k=-1).real
    return float((u - 1.0) / t_opt)


def margin(t, rho2: float, alpha: float):
    """The unit-variance margin at time t (multiply by sqrt(s2) for the half-width)."""
    t = np.asarray(t, dtype=float)
    u = t * rho2 + 1.0
    with np.errstate(divide="ignore"):  # t = 0: an infinite margin
        return np.sqrt(2.0 * u / (t**2 * rho2) * np.log(np.sqrt(u) / alpha))


def always_valid_p(z, t, rho2: float):
    """The always-valid p-value of a z statistic at time t (see the module doc)."""
    u = np.asarray(t, dtype=float) * rho2 + 1.0
    with np.errstate(invalid="ignore"):  # z infinite at t = 0: NaN
        return np.minimum(1.0, np.sqrt(u) * np.exp(-(np.asarray(z) ** 2) * (u - 1) / (2 * u)))


def sequential_moments(
    control: Moments, variant: Moments, confidence: float, tuning_n: float
) -> dict:
    """The lift of the variant over the control with its confidence sequence: the fields
    of `stats.welch_moments` (ci_* are the sequence's bounds, p_value always valid)."""
    alpha = 1.0 - confidence
    rho2 = best_rho2(alpha, tuning_n)
    nc, nt = np.asarray(control.n, dtype=float), np.asarray(variant.n, dtype=float)
    mc, mt = np.asarray(control.mean_y, dtype=float), np.asarray(variant.mean_y, dtype=float)
    t = nc + nt
    with np.errstate(divide="ignore", invalid="ignore"):
        qc, qt = np.asarray(control.var_y) / nc, np.asarray(variant.var_y) / nt
        se = np.sqrt(qc + qt)
        m = margin(t, rho2, alpha) * np.sqrt(t)  # half-width = se * m
        lift = mt - mc
        z = lift / se
        rel = mt / mc - 1
        se_rel = np.sqrt(qt / mc**2 + mt**2 * qc / mc**4)
        # the lift this sequence would detect now with power POWER (normal approximation)
        mde = (m + stats.norm.ppf(POWER)) * se
        return {
            "control_mean": mc,
            "variant_mean": mt,
            "lift": lift,
            "ci_low": lift - m * se,
            "ci_high": lift + m * se,
            "relative_lift": rel,
            "relative_ci_low": rel - m * se_rel,
            "relative_ci_high": rel + m * se_rel,
            "se": se,
            "df": np.full(np.shape(t), np.inf),
            "t": z,
            "p_value": always_valid_p(z, t, rho2),
            "mde": mde,
            "relative_mde": mde / np.abs(mc),
            "n_control": nc,
            "n_variant": nt,
        }
