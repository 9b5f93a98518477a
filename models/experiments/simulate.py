"""Simulated experiments looked at every day, through the analysis code the pipeline runs
(`stats.compare` on per-arm moments, `decision.decide`, a final decision standing), many
runs at once (numpy arrays): the error rate of repeated looks and the days a lift takes to
be found, per method. `python -m models.experiments.simulate` prints the README's table.

Each run: `users_per_day` new users per arm each day for `days` days; a user's outcome is a
watch time, lognormal around 180 s with a per-user activity (sd 0.8 on the log scale) that
also drives the pre-period (so CUPED has work: correlation about 0.6); a treatment user's
outcome is `lift` (relative) higher. Every look uses everything since the start.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from models.experiments import decision as d
from models.experiments.stats import Moments, compare, cuped_theta, pool


@dataclass(frozen=True)
class Outcome:
    shipped: np.ndarray  # per run: shipped on some look
    decided_day: np.ndarray  # per run: the day of the final decision (0: none)
    decision: np.ndarray  # per run: the final decision, or the last look's
    ship_day: np.ndarray  # per run: the day it shipped (0: never)

    @property
    def ship_rate(self) -> float:
        return float(self.shipped.mean())

    def mean_ship_day(self) -> float:
        days = self.ship_day[self.ship_day > 0]
        return float(days.mean()) if days.size else float("nan")


def _draw(rng, runs: int, users: int, lift: float):
    activity = rng.normal(0.0, 0.8, size=(runs, users))
    y = 180.0 * np.exp(activity + rng.normal(0.0, 0.5, size=(runs, users))) * (1.0 + lift)
    x = 180.0 * np.exp(activity + rng.normal(0.0, 0.5, size=(runs, users)))
    return y, x


def simulate(method: str, *, runs: int = 2000, days: int = 14, users_per_day: int = 200,
             lift: float = 0.0, cuped: bool = True, confidence: float = 0.95,
             min_runtime_days: int = 7, tuning_n: int | None = None, seed: int = 0,
             interval: str = "method") -> Outcome:  # fmt: skip
    """`runs` two-arm experiments (control, treatment) looked at daily under `method`;
    `interval="welch"` uses Welch's interval whatever the method (the peeking problem)."""
    rng = np.random.default_rng(seed)
    tuning_n = tuning_n or 2 * users_per_day * days  # the planned size, as the config's default
    sums = {arm: np.zeros((6, runs)) for arm in ("control", "treatment")}  # n y yy x xx xy
    shipped = np.zeros(runs, dtype=bool)
    decided_day, ship_day = np.zeros(runs, dtype=int), np.zeros(runs, dtype=int)
    final = np.full(runs, "", dtype=object)
    last = final
    for day in range(1, days + 1):
        arms = {}
        for arm, arm_lift in (("control", 0.0), ("treatment", lift)):
            y, x = _draw(rng, runs, users_per_day, arm_lift)
            x = x if cuped else np.zeros_like(x)
            s = sums[arm]
            s += np.stack([np.full(runs, users_per_day), y.sum(1), (y * y).sum(1),
                           x.sum(1), (x * x).sum(1), (x * y).sum(1)])  # fmt: skip
            n = s[0]
            my, mx = s[1] / n, s[3] / n
            arms[arm] = Moments(n, my, (s[2] - n * my * my) / (n - 1), mx,
                                (s[4] - n * mx * mx) / (n - 1), (s[5] - n * mx * my) / (n - 1))  # fmt: skip
        c, t = arms["control"], arms["treatment"]
        theta = cuped_theta([c, t]) if cuped else 0.0
        r = compare(c, t, confidence, theta, pool([c, t]).mean_x, cuped,
                    tuning_n if method == d.SEQUENTIAL and interval != "welch" else None)  # fmt: skip
        alpha = 1.0 - confidence
        sig = r["p_value"] < alpha
        ended = day == days
        decision, _ = d.decide(
            method, srm_detected=False, runtime_reached=day >= min_runtime_days,
            horizon_reached=ended, ended=ended, sample_reached=True,
            informative=np.isfinite(r["se"]) & (r["se"] > 0), up=sig & (r["lift"] > 0),
            guardrail_down=False, all_down=sig & (r["lift"] < 0),
        )  # fmt: skip
        new = d.is_final(method, decision, ended) & (decided_day == 0)
        decided_day[new], final[new] = day, decision[new]
        first_ship = new & (decision == "ship")
        shipped |= first_ship
        ship_day[first_ship] = day
        last = np.where(decided_day > 0, final, decision)
    return Outcome(shipped, decided_day, last, ship_day)


def table(runs: int = 2000, lifts=(0.0, 0.10, 0.20), seed: int = 0) -> list[dict]:
    """The README's table: per method, lift and CUPED, the ship rate and mean ship day."""
    out = []
    for method in (d.SEQUENTIAL, d.FIXED_HORIZON):
        for lift in lifts:
            for cuped in (False, True):
                o = simulate(method, runs=runs, lift=lift, cuped=cuped, seed=seed)
                out.append({"method": method, "lift": lift, "cuped": cuped,
                            "ship_rate": o.ship_rate, "mean_ship_day": o.mean_ship_day()})  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2000)
    args = p.parse_args()
    print("| method | lift | CUPED | shipped | mean day of the ship |")
    print("|---|---|---|---|---|")
    for r in table(args.runs):
        print(f"| {r['method']} | {r['lift']:+.0%} | {'yes' if r['cuped'] else 'no'} | "
              f"{r['ship_rate']:.1%} | {r['mean_ship_day']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
