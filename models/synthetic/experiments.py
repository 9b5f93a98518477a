"""The A/B-test part of the synthetic landing data (see `models.synthetic.landing` for the world).

Users `u000001...` each have a latent activity level a ~ N(0, 1). On each day of the range a
user is active with probability sigmoid(a - 0.2); an active day yields one event time and
three `user_metrics` rows at it: `sessions`, `clips_viewed` and `watch_time_s`, all rising
with a, so a user's pre-period mean predicts the post-period mean (Pearson ~0.6).

Experiment `exp_ranker_v2` runs from `start + min(3, days // 3)` days to the end of the range.
90% of users arrive during it (assigned_at uniform in [start, end)); the variant is the one
serving would pick (`models.experiments.config.assign_variants`, a hash bucket). `srm` drops
that share of the treatment users' assignment rows (as a lossy logger would); those users
stay untreated in the data.
After `assigned_at`, a treatment user's `watch_time_s` is multiplied by 1 + `ab_lift`;
the secondary metrics do not move.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.experiments.config import assign_variants

DAY_US = 86_400_000_000
EXPERIMENT_ID = "exp_ranker_v2"
VARIANTS = {"control": 0.5, "treatment": 0.5}
METRICS = ("sessions", "clips_viewed", "watch_time_s")
ARRIVAL_SHARE = 0.9


def _iso(us: int) -> str:
    return np.datetime64(us, "us").astype("datetime64[s]").item().isoformat() + "Z"


def experiment_spec(start_us: int, end_us: int, days: int) -> dict:
    """The one experiment of the synthetic world, as it goes into experiments.yaml."""
    return {
        "experiment_id": EXPERIMENT_ID,
        "name": "Ranker v2 (challenger) vs champion",
        "variants": dict(VARIANTS),
        "model_aliases": {"control": "champion", "treatment": "challenger"},
        "start": _iso(start_us + min(3, days // 3) * DAY_US),
        "end": _iso(end_us),
        "primary_metric": "watch_time_s",
        "secondary_metrics": ["sessions", "clips_viewed"],
        "min_sample_size": 200,
        "confidence_level": 0.95,
    }


def user_ids(users: int) -> pa.Array:
    """u000001, u000002, ... (wider when there are more users)."""
    width = max(6, len(str(users)))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, users + 1)), pa.string()), width, "0")
    return pc.binary_join_element_wise("u", digits, "")


def generate_experiments(
    rng: np.random.Generator,
    *,
    start_us: int,
    end_us: int,
    days: int,
    users: int,
    ab_lift: float,
    srm: float,
) -> tuple[dict, dict, dict]:
    """(spec, assignments columns, user_metrics columns); timestamps are int64 us since epoch."""
    spec = experiment_spec(start_us, end_us, days)
    exp_start = start_us + min(3, days // 3) * DAY_US
    ids = user_ids(users)
    activity = rng.normal(size=users)
    arrives = rng.random(users) < ARRIVAL_SHARE
    assigned_at = exp_start + rng.integers(0, end_us - exp_start, size=users)
    variant = assign_variants(spec, ids.to_pylist())
    treated = variant == "treatment"
    dropped = treated & (rng.random(users) < srm)
    keep = np.flatnonzero(arrives & ~dropped)
    assignments = {
        "experiment_id": pa.array(np.full(len(keep), EXPERIMENT_ID, dtype=object), pa.string()),
        "user_id": ids.take(pa.array(keep)),
        "variant": pa.array(variant[keep], pa.string()),
        "assigned_at": assigned_at[keep],
    }

    p_active = 1.0 / (1.0 + np.exp(-(activity - 0.2)))
    ui, di = np.nonzero(rng.random((users, days)) < p_active[:, None])
    ts = start_us + di.astype(np.int64) * DAY_US + rng.integers(0, DAY_US, size=len(ui))
    a = activity[ui]
    sessions = 1 + rng.poisson(np.exp(0.2 + 0.6 * a))
    clips_viewed = rng.poisson(sessions * np.exp(1.8 + 0.3 * a + rng.normal(0, 0.3, len(ui))))
    watch = clips_viewed * np.exp(np.log(24.0) + 0.1 * a + rng.normal(0, 0.35, len(ui)))
    in_treatment = np.zeros(users, dtype=bool)
    in_treatment[keep] = treated[keep]
    lifted = in_treatment[ui] & (ts >= assigned_at[ui])
    watch = np.round(np.where(lifted, watch * (1.0 + ab_lift), watch), 1)

    n = len(ui)
    user_metrics = {
        "user_id": ids.take(pa.array(np.tile(ui, 3))),
        "event_timestamp": np.tile(ts, 3),
        "metric": pc.take(pa.array(METRICS), pa.array(np.repeat(np.arange(3), n))),
        "value": np.concatenate([sessions, clips_viewed, watch]).astype(np.float64),
    }
    return spec, assignments, user_metrics
