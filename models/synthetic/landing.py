"""A seeded synthetic landing directory (CONTRACT section 1) for demos and tests.

World model (all vectorised numpy; same arguments give the same data):

- Creators: max(50, clips // 40) of them, each with a latent quality ~ N(0, 1), a reach
  (lognormal, median ~250 lifetime views a clip), a main topic and a posting weight that
  rises with reach (popular creators post more).
- Videos: a creator's long video yields 1 + Poisson(2) consecutive clips.
- Clips: created_at uniform within the day. duration_s lognormal (median 32 s, clipped to
  [3, 600]); resolution 1080p-heavy; bitrate_kbps by resolution and fps; fps in {24, 25,
  30, 60}; aspect_ratio mostly 9:16; speech_ratio ~ Beta around the topic's mean;
  has_captions more likely with speech; scene_cuts_per_min ~ Gamma around the topic's
  rate; hook_strength in (0, 1), a little higher for good creators; 8 languages; 10 topics.
- Hidden quality_score in [0, 100] = 54 + 7 x creator quality + a convex hook_strength term
  (the strongest) + a duration sweet spot near 30 s + captions that help when speech_ratio
  is high (and hurt a little when missing) + vertical formats up, 16:9 down + low
  resolution down + a scene-cut sweet spot + a topic offset + N(0, 7) noise. The signal's
  std (~15.5) is about twice the noise's.
- engagement: windows ending 1h, 6h, 24h, 2d, 3d, 5d, 7d after created_at, each with
  that window's counts only. A clip's appeal = 0.6 z + N(0, 0.8), z = (quality - 50) / 15,
  drives it all: views ~ Poisson(reach * exp(0.8 appeal + N(0, 0.5)) * window share), the
  shares following 1 - exp(-t / 24h); completions, likes, shares and comments are binomial
  in views with per-clip rates rising with appeal (completions falling with duration);
  watch_time_s = duration * (completions + other views * a partial share rising with
  appeal). So early engagement carries signal (first-24h completion rate vs quality:
  r ~ 0.55) without giving the label away: XGBoost on the attributes reaches holdout R^2
  ~0.65, ~0.76 with the creator's past labels, ~0.78 adding first-24h engagement.
- labels: the quality_score at created_at + U(2, 7) days; 10% of clips get a revised score
  (quality + N(0, 2.5)) 6h-4d later. Rows are only written when labeled_at < end.
- experiments: see `models.synthetic.experiments`.
- Drift (only with drift_start; a = min(drift_strength, 1)): clips created on or after
  drift_start have duration_s x 1.6**drift_strength, speech_ratio x 0.65**drift_strength,
  and resolution (toward 4K), aspect_ratio (toward 16:9) and language (toward `pt`) drawn
  from (1 - a) * base + a * drifted probabilities. bitrate_kbps (via resolution),
  has_captions (via speech_ratio), quality and engagement follow as consequences.
- Bad rows (bad_row_rate, from their own seed stream, so the valid rows stay the same): each
  breaks one rule, kinds in `BAD_KINDS`. Bad clips are extra rows (a copy of a clip of that
  day under a new clip_id with no engagement or labels, or for `duplicate_clip_id` an earlier
  day's clip again), so each is exactly one quarantined row; bad engagement and label rows
  are real rows altered in place (`unknown_clip_id` points at `ghost000000`, ...).

Layout: `<table>/<YYYY-MM-DD>/part-NNN.{parquet,csv}` by the day of each row's own
timestamp, at most 500k rows a file; experiments/experiments.yaml. Every csv_every-th day
is CSV (ISO 8601 timestamps, alternately with `Z` and `+00:00`); Parquet days alternate
between ns and us UTC timestamps. Nothing is at or after start + days. Files with the same
name in `out` are overwritten, other files are left alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from models.core.contract import ASSIGNMENTS, CLIPS, ENGAGEMENT, LABELS, USER_METRICS, Table
from models.synthetic.experiments import (
    DAY_US,
    assign_bucket,
    assign_variant,
    assign_variants,
    generate_experiments,
)

__all__ = ["BAD_KINDS", "assign_bucket", "assign_variant", "assign_variants", "generate_landing"]

HOUR_US = DAY_US // 24
MAX_ROWS_PER_FILE = 500_000
RESOLUTIONS = ("480p", "720p", "1080p", "1440p", "4K", "8K")  # 8K only in bad rows
RES_P, RES_P_DRIFT = (0.08, 0.22, 0.55, 0.08, 0.07), (0.03, 0.12, 0.40, 0.10, 0.35)
RES_KBPS = np.array([1000.0, 2500.0, 5000.0, 9000.0, 16000.0])
RES_EFFECT = np.array([-8.0, -3.0, 0.0, 0.5, 1.0])
ASPECTS = ("9:16", "1:1", "4:5", "16:9")
ASPECT_P, ASPECT_P_DRIFT = (0.72, 0.08, 0.08, 0.12), (0.40, 0.07, 0.08, 0.45)
ASPECT_EFFECT = np.array([4.0, -1.0, 1.0, -5.0])
LANGUAGES = ("en", "es", "pt", "de", "fr", "ja", "hi", "ko", "ENG")  # ENG only in bad rows
LANG_P = (0.55, 0.12, 0.08, 0.06, 0.06, 0.05, 0.05, 0.03)
LANG_P_DRIFT = (0.40, 0.10, 0.30, 0.05, 0.05, 0.04, 0.04, 0.02)
FPS, FPS_P = np.array([24.0, 25.0, 30.0, 60.0]), (0.10, 0.10, 0.60, 0.20)
# fmt: off
TOPICS = {  # name: (share, mean speech_ratio, mean scene cuts per minute, quality offset)
    "gaming": (0.16, 0.45, 14.0, 1.0),     "podcast": (0.12, 0.90, 4.0, -2.0),
    "cooking": (0.09, 0.60, 10.0, 1.5),    "sports": (0.11, 0.40, 18.0, 0.5),
    "music": (0.10, 0.15, 20.0, 2.0),      "comedy": (0.12, 0.70, 12.0, 3.0),
    "education": (0.09, 0.85, 6.0, -1.0),  "news": (0.07, 0.85, 8.0, -3.0),
    "beauty": (0.08, 0.65, 10.0, 0.0),     "travel": (0.06, 0.40, 12.0, 1.0),
}
BAD_KINDS = {
    "clips": ("negative_duration", "resolution_8k", "fps_zero", "speech_ratio_gt_1",
              "language_not_iso", "empty_creator_id", "duplicate_clip_id"),
    "engagement": ("completions_gt_views", "negative_views", "unknown_clip_id"),
    "labels": ("quality_score_gt_100",),
}
# fmt: on
TOPIC_NAMES = tuple(TOPICS)
TOPIC_P, TOPIC_SPEECH, TOPIC_CUTS, TOPIC_EFFECT = (
    np.array(v) for v in zip(*TOPICS.values(), strict=True)
)
WINDOWS_H = np.array([1, 6, 24, 48, 72, 120, 168])
VIEW_DECAY_H = 24.0
APPEAL_NOISE = 0.8  # how much of engagement is not quality


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + the zero-padded numbers 0 .. n-1, e.g. c000000042."""
    digits = pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width, "0"), "")


def _categorical(u, probs, drift_probs, drifted, strength) -> np.ndarray:
    """Inverse-CDF draw from `probs`, mixed toward `drift_probs` on drifted rows."""
    idx = np.searchsorted(np.cumsum(probs), u, side="right")
    if drift_probs is not None and drifted.any():
        a = min(max(strength, 0.0), 1.0)
        mixed = (1 - a) * np.asarray(probs) + a * np.asarray(drift_probs)
        idx[drifted] = np.searchsorted(np.cumsum(mixed), u[drifted], side="right")
    return np.minimum(idx, len(probs) - 1)


def _creators(rng: np.random.Generator, n: int) -> dict:
    log_reach = rng.normal(np.log(250.0), 1.0, n)
    weight = np.exp(0.7 * (log_reach - np.log(250.0)) + 0.7 * rng.normal(size=n))
    return {
        "quality": rng.normal(size=n),
        "log_reach": log_reach,
        "p": weight / weight.sum(),
        "topic": rng.choice(len(TOPIC_NAMES), n, p=TOPIC_P),
    }


def _clips(rng, cr, start_us, days, per_day, drift_us, strength) -> dict:
    n = per_day * days
    offsets = np.sort(rng.integers(0, DAY_US, (days, per_day)), axis=1).ravel()
    created = start_us + np.repeat(np.arange(days, dtype=np.int64), per_day) * DAY_US + offsets
    drifted = created >= drift_us if drift_us is not None else np.zeros(n, dtype=bool)
    s = np.where(drifted, strength, 0.0)
    clips_per_video = 1 + rng.poisson(2.0, n // 2 + 16)
    video = np.repeat(np.arange(len(clips_per_video)), clips_per_video)
    video = np.concatenate([video, np.arange(n) + len(clips_per_video)])[:n]  # never short
    creator = rng.choice(len(cr["p"]), video[-1] + 1, p=cr["p"])[video]
    topic = np.where(
        rng.random(n) < 0.7, cr["topic"][creator], rng.choice(len(TOPIC_NAMES), n, p=TOPIC_P)
    )
    duration = np.exp(rng.normal(np.log(32.0), 0.65, n)) * 1.6**s
    resolution = _categorical(rng.random(n), RES_P, RES_P_DRIFT, drifted, strength)
    fps = FPS[_categorical(rng.random(n), FPS_P, None, drifted, strength)]
    bitrate = RES_KBPS[resolution] * np.sqrt(fps / 30.0) * np.exp(rng.normal(0, 0.25, n))
    aspect = _categorical(rng.random(n), ASPECT_P, ASPECT_P_DRIFT, drifted, strength)
    m = TOPIC_SPEECH[topic]
    speech = rng.beta(6 * m, 6 * (1 - m)) * 0.65**s
    captions = rng.random(n) < 0.2 + 0.5 * speech
    cuts = rng.gamma(2.0, TOPIC_CUTS[topic] / 2.0)
    hook = _sigmoid(0.35 * cr["quality"][creator] + rng.normal(0, 1.1, n))
    language = _categorical(rng.random(n), LANG_P, LANG_P_DRIFT, drifted, strength)
    c = {
        "created_at": created,
        "video": video,
        "creator": creator,
        "topic": topic,
        "duration_s": np.round(np.clip(duration, 3.0, 600.0), 3),
        "resolution": resolution,
        "bitrate_kbps": np.round(bitrate, 1),
        "fps": fps,
        "aspect_ratio": aspect,
        "has_captions": captions,
        "speech_ratio": np.round(speech, 4),
        "scene_cuts_per_min": np.round(cuts, 2),
        "hook_strength": np.round(hook, 4),
        "language": language,
    }
    c["quality"] = _quality(c, cr["quality"], rng.normal(0, 7.0, n))
    return c


def _quality(c: dict, creator_quality: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The hidden target: nonlinear in the attributes, plus the creator and noise."""
    d_term = np.minimum((np.log(c["duration_s"] / 30.0) / 0.6) ** 2, 5.0)
    speech = c["speech_ratio"]
    signal = (
        7.0 * creator_quality[c["creator"]]
        + 40.0 * (c["hook_strength"] ** 2 - 0.3)
        - 4.0 * d_term
        + np.where(c["has_captions"], 9.0 * speech, -5.0 * speech)
        + ASPECT_EFFECT[c["aspect_ratio"]]
        + RES_EFFECT[c["resolution"]]
        - 4.0 * np.abs(np.log1p(c["scene_cuts_per_min"]) - np.log(11.0))
        + TOPIC_EFFECT[c["topic"]]
    )
    return np.clip(54.0 + signal + noise, 0.0, 100.0)


def _engagement(rng, c: dict, log_reach: np.ndarray, end_us: int) -> dict:
    """Windowed counts driven by the clip's appeal: its quality and how it lands with viewers."""
    n = len(c["quality"])
    appeal = 0.6 * (c["quality"] - 50.0) / 15.0 + rng.normal(0, APPEAL_NOISE, n)
    lam = np.exp(log_reach[c["creator"]] + 0.8 * appeal + rng.normal(0, 0.5, n))
    rates = {  # per clip, each with a noise of its own
        "completions": -0.3 + appeal - 0.7 * np.log(c["duration_s"] / 30.0),
        "likes": -3.0 + 0.6 * appeal,
        "shares": -4.8 + 0.6 * appeal,
        "comments": -5.0 + 0.5 * appeal,
    }
    rates = {k: _sigmoid(v + rng.normal(0, 0.3, n)) for k, v in rates.items()}
    partial = 0.1 + 0.3 * _sigmoid(appeal + rng.normal(0, 0.5, n))  # share of a clip watched
    cdf = 1.0 - np.exp(-np.concatenate([[0.0], WINDOWS_H]) / VIEW_DECAY_H)
    ends = c["created_at"][:, None] + WINDOWS_H[None, :] * HOUR_US
    ci, wi = np.nonzero(ends < end_us)
    views = rng.poisson(lam[ci] * np.diff(cdf)[wi])
    counts = {k: rng.binomial(views, p[ci]) for k, p in rates.items()}
    done = counts["completions"]
    watch = c["duration_s"][ci] * (done + (views - done) * partial[ci])
    watch *= np.exp(rng.normal(0, 0.05, len(ci)))
    return {"clip": ci, "event_timestamp": ends[ci, wi], "views": views, **counts,
            "watch_time_s": np.round(watch, 1)}  # fmt: skip


def _labels(rng, c: dict, end_us: int) -> dict:
    n = len(c["quality"])
    first = c["created_at"] + rng.integers(2 * DAY_US, 7 * DAY_US, n)
    revised = first + rng.integers(6 * HOUR_US, 4 * DAY_US, n)
    revised_score = np.clip(c["quality"] + rng.normal(0, 2.5, n), 0.0, 100.0)
    has_revision = (rng.random(n) < 0.10) & (revised < end_us)
    i1, i2 = np.flatnonzero(first < end_us), np.flatnonzero(has_revision)
    return {
        "clip": np.concatenate([i1, i2]),
        "labeled_at": np.concatenate([first[i1], revised[i2]]),
        "quality_score": np.round(np.concatenate([c["quality"][i1], revised_score[i2]]), 2),
    }


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


ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _column(values, kind: str, unit: str) -> pa.Array:
    if kind == "timestamp":
        scale = 1000 if unit == "ns" else 1
        return pa.array(np.asarray(values) * scale, pa.timestamp(unit, tz="UTC"))
    if isinstance(values, pa.Array):
        return values.cast(ARROW_TYPES[kind])
    return pa.array(values, ARROW_TYPES[kind])


def _csv_text(data: pa.Table, table: Table, offset: str) -> pa.Table:
    """Timestamps as ISO 8601 with `offset`; floats always with a decimal point."""
    cols = []
    for f in table.fields:
        col = data[f.name].combine_chunks()
        if f.type == "timestamp":
            col = pc.binary_join_element_wise(pc.strftime(col, "%Y-%m-%dT%H:%M:%S"), offset, "")
        elif f.type == "float":
            text = pc.cast(col, pa.string())
            plain = pc.invert(pc.match_substring_regex(text, "[.eEn]"))
            col = pc.if_else(plain, pc.binary_join_element_wise(text, ".0", ""), text)
        cols.append(col)
    return pa.table(cols, names=table.columns)


def _write_daily(
    out: Path, table: Table, cols: dict, start_us: int, days: int, csv_every: int
) -> list[str]:
    """Write rows by the UTC day of their timestamp; returns the paths written, relative to out."""
    ts = np.asarray(cols[table.partition_by])
    order = np.argsort(ts, kind="stable")
    bounds = np.searchsorted(ts[order], start_us + np.arange(days + 1) * DAY_US)
    is_csv = [csv_every > 0 and d % csv_every == csv_every - 1 for d in range(days)]
    written = []
    for d in range(days):
        rank = sum(1 for x in is_csv[:d] if x == is_csv[d])  # alternates ns/us and Z/+00:00
        unit = "ns" if rank % 2 == 0 and not is_csv[d] else "us"
        day = (dt.date(1970, 1, 1) + dt.timedelta(days=start_us // DAY_US + d)).isoformat()
        for part, lo in enumerate(range(bounds[d], bounds[d + 1], MAX_ROWS_PER_FILE)):
            idx = order[lo : min(lo + MAX_ROWS_PER_FILE, bounds[d + 1])]
            arrays = []
            for f in table.fields:
                v = cols[f.name]
                v = v.take(pa.array(idx)) if isinstance(v, pa.Array) else np.asarray(v)[idx]
                arrays.append(_column(v, f.type, unit))
            data = pa.table(arrays, names=table.columns)
            rel = Path(table.name) / day / f"part-{part:03d}.{'csv' if is_csv[d] else 'parquet'}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            if is_csv[d]:
                text = _csv_text(data, table, "Z" if rank % 2 == 0 else "+00:00")
                pacsv.write_csv(text, out / rel, pacsv.WriteOptions(quoting_style="none"))
            else:
                pq.write_table(data, out / rel)
            written.append(rel.as_posix())
    return written


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
    cr = _creators(rngs[0], n_creators)
    c = _clips(rngs[1], cr, start_us, days, clips_per_day, drift_us, drift_strength)
    eng = _engagement(rngs[2], c, cr["log_reach"], end_us)
    lab = _labels(rngs[3], c, end_us)
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
        files += _write_daily(out, table, cols, start_us, days, csv_every)
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
