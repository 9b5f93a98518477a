"""A seeded synthetic landing directory (docs/contract.md §1) for demos and tests.

The same arguments give the same data:

- World (creators, clips, their hidden quality, engagement, labels, drift):
  `models.synthetic.world`.
- Experiments (users, assignments, user_metrics): `models.synthetic.experiments`.
- Bad rows (bad_row_rate, from their own seed stream, so the valid rows stay the same): each
  breaks one rule, kinds in `BAD_KINDS`. Bad clips are extra rows (a copy of a clip of that
  day under a new clip_id with no engagement or labels, or for `duplicate_clip_id` an earlier
  day's clip again), so each is exactly one quarantined row; bad engagement and label rows
  are real rows altered in place (`unknown_clip_id` points at `ghost000000`, ...).

Layout (`models.synthetic.files`): `<table>/<YYYY-MM-DD>/part-NNN.{parquet,csv}` by the
day of each row's own timestamp; experiments/experiments.yaml. Nothing is at or after
start + days. Files with the same name in `out` are overwritten, other files are left alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from models.core.contract import ASSIGNMENTS, CLIPS, ENGAGEMENT, LABELS, USER_METRICS
from models.synthetic import world
from models.synthetic.experiments import DAY_US, generate_experiments
from models.synthetic.files import write_daily
from models.synthetic.world import ASPECTS, LANGUAGES, RESOLUTIONS, TOPIC_NAMES

# fmt: off
BAD_KINDS = {
    "clips": ("negative_duration", "resolution_8k", "fps_zero", "speech_ratio_gt_1",
              "language_not_iso", "empty_creator_id", "duplicate_clip_id"),
    "engagement": ("completions_gt_views", "negative_views", "unknown_clip_id"),
    "labels": ("quality_score_gt_100",),
}
# fmt: on


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + the zero-padded numbers 0 .. n-1, e.g. c000000042."""
    digits = pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width, "0"), "")


def _pick_bad(rng, n: int, rate: float, table: str) -> dict[str, np.ndarray]:
    rows = rng.choice(n, rng.binomial(n, rate), replace=False) if rate > 0 and n else []
    kinds = rng.integers(0, len(BAD_KINDS[table]), len(rows))
    return {
        k: np.sort(np.asarray(rows, dtype=np.int64)[kinds == i])
        for i, k in enumerate(BAD_KINDS[table])
    }


def _clips_table(rng, c: dict, rate: float, n_creators: int, per_day: int) -> tuple[dict, dict]:
    """The clips columns plus the bad rows, all extra rows in the day of the clip they copy:
    a new clip_id with one rule broken, or (duplicate_clip_id) an earlier day's clip again."""
    n = len(c["created_at"])
    bad = _pick_bad(rng, n, rate, "clips")
    dup = bad["duplicate_clip_id"]
    bad["negative_duration"] = np.concatenate([bad["negative_duration"], dup[dup < per_day]])
    bad["duplicate_clip_id"] = dup = dup[dup >= per_day]  # day 0 has nothing earlier
    rows = np.concatenate([bad[k] for k in BAD_KINDS["clips"]])
    ends = n + np.cumsum([len(bad[k]) for k in BAD_KINDS["clips"]])
    at = {k: np.arange(e - len(bad[k]), e) for k, e in zip(BAD_KINDS["clips"], ends, strict=True)}
    take = np.concatenate([np.arange(n), rows])
    take[at["duplicate_clip_id"]] = (rng.random(len(dup)) * (dup // per_day * per_day)).astype(int)
    ids = np.arange(n + len(rows))
    ids[at["duplicate_clip_id"]] = take[at["duplicate_clip_id"]]
    cols = {k: c[k][take] for k in CLIPS.columns if k in c}
    cols["created_at"] = np.concatenate([c["created_at"], c["created_at"][rows]])
    cols["duration_s"][at["negative_duration"]] *= -1.0
    cols["resolution"][at["resolution_8k"]] = RESOLUTIONS.index("8K")
    cols["fps"][at["fps_zero"]] = 0.0
    cols["speech_ratio"][at["speech_ratio_gt_1"]] = 1.5
    cols["language"][at["language_not_iso"]] = LANGUAGES.index("ENG")
    creator = c["creator"][take]
    creator[at["empty_creator_id"]] = n_creators  # the "" entry
    cols["clip_id"] = _ids("c", len(ids), 9).take(pa.array(ids))
    cols["video_id"] = _ids("v", int(c["video"].max()) + 1, 8).take(pa.array(c["video"][take]))
    creators = pa.concat_arrays([_ids("cr", n_creators, 6), pa.array([""])])
    cols["creator_id"] = creators.take(pa.array(creator))
    for name, cats in (
        ("resolution", RESOLUTIONS),
        ("aspect_ratio", ASPECTS),
        ("language", LANGUAGES),
        ("topic", TOPIC_NAMES),
    ):
        cols[name] = pa.array(cats).take(pa.array(cols[name]))
    return cols, {k: len(v) for k, v in bad.items()}


def _engagement_table(rng, e: dict, clip_ids: pa.Array, rate: float) -> tuple[dict, dict]:
    bad = _pick_bad(rng, len(e["clip"]), rate, "engagement")
    cols = {k: v for k, v in e.items() if k != "clip"}
    cols["completions"][bad["completions_gt_views"]] = (
        cols["views"][bad["completions_gt_views"]]
        + 1
        + rng.poisson(3, len(bad["completions_gt_views"]))
    )
    cols["views"][bad["negative_views"]] = -1 - cols["views"][bad["negative_views"]]
    ids = clip_ids.take(pa.array(e["clip"]))
    unknown = bad["unknown_clip_id"]
    if len(unknown):
        mask = np.zeros(len(ids), dtype=bool)
        mask[unknown] = True
        ids = pc.replace_with_mask(ids, pa.array(mask), _ids("ghost", len(unknown), 6))
    cols["clip_id"] = ids
    return cols, {k: len(v) for k, v in bad.items()}


def _labels_table(rng, lab: dict, clip_ids: pa.Array, rate: float) -> tuple[dict, dict]:
    bad = _pick_bad(rng, len(lab["clip"]), rate, "labels")
    cols = {
        "clip_id": clip_ids.take(pa.array(lab["clip"])),
        "labeled_at": lab["labeled_at"],
        "quality_score": lab["quality_score"],
    }
    cols["quality_score"][bad["quality_score_gt_100"]] = 120.0
    return cols, {k: len(v) for k, v in bad.items()}


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def generate_landing(
    out: str | Path,
    *,
    days: int = 14,
    start: dt.date = dt.date(2026, 1, 1),
    clips_per_day: int = 2000,
    users: int = 5000,
    seed: int = 0,
    drift_start: dt.date | None = None,
    drift_strength: float = 1.0,
    ab_lift: float = 0.03,
    srm: float = 0.0,
    bad_row_rate: float = 0.002,
    csv_every: int = 3,
) -> dict:
    """Write a seeded landing directory covering [start, start + days) UTC; return a summary."""
    if days < 1 or clips_per_day < 1 or users < 1 or csv_every < 0:
        raise ValueError("days, clips_per_day and users must be >= 1, csv_every >= 0")
    if not (0.0 <= srm <= 1.0 and 0.0 <= bad_row_rate < 1.0):
        raise ValueError("srm must be in [0, 1] and bad_row_rate in [0, 1)")
    out = Path(out)
    start = _as_date(start)
    start_us = (start - dt.date(1970, 1, 1)).days * DAY_US
    end_us = start_us + days * DAY_US
    drift_us = None
    if drift_start is not None:
        drift_us = (_as_date(drift_start) - dt.date(1970, 1, 1)).days * DAY_US
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]

    n_creators = max(50, clips_per_day * days // 40)
    cr = world.creators(rngs[0], n_creators)
    c = world.clips(rngs[1], cr, start_us, days, clips_per_day, drift_us, drift_strength)
    eng = world.engagement(rngs[2], c, cr["log_reach"], end_us)
    lab = world.labels(rngs[3], c, end_us)
    spec, assignments, metrics = generate_experiments(
        rngs[4], start_us=start_us, end_us=end_us, days=days, users=users, ab_lift=ab_lift, srm=srm
    )

    clip_ids = _ids("c", len(c["created_at"]), 9)
    clips, bad_clips = _clips_table(rngs[5], c, bad_row_rate, n_creators, clips_per_day)
    eng, bad_eng = _engagement_table(rngs[5], eng, clip_ids, bad_row_rate)
    lab, bad_lab = _labels_table(rngs[5], lab, clip_ids, bad_row_rate)

    tables = [(CLIPS, clips), (ENGAGEMENT, eng), (LABELS, lab), (ASSIGNMENTS, assignments),
              (USER_METRICS, metrics)]  # fmt: skip
    files = []
    for table, cols in tables:
        files += write_daily(out, table, cols, start_us, days, csv_every)
    (out / "experiments").mkdir(parents=True, exist_ok=True)
    (out / "experiments" / "experiments.yaml").write_text(
        yaml.safe_dump({"experiments": [spec]}, sort_keys=False)
    )
    files.append("experiments/experiments.yaml")
    return {
        "out": str(out),
        "start": start.isoformat(),
        "end": (start + dt.timedelta(days=days)).isoformat(),
        "days": days,
        "seed": seed,
        "rows": {t.warehouse: len(cols[t.partition_by]) for t, cols in tables},
        "bad_rows": {"clips": bad_clips, "engagement": bad_eng, "labels": bad_lab},
        "files": files,
        "experiments": [spec["experiment_id"]],
        "drift_start": _as_date(drift_start).isoformat() if drift_start is not None else None,
    }
