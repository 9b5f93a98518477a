"""The synthetic world behind the landing data (`models.synthetic.landing` writes it).

All vectorised numpy; the same generators give the same data:

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
  (quality + N(0, 2.5)) 6h-4d later. Only rows with labeled_at < end are made.
- Drift (only with drift_start; a = min(drift_strength, 1)): clips created on or after
  drift_start have duration_s x 1.6**drift_strength, speech_ratio x 0.65**drift_strength,
  and resolution (toward 4K), aspect_ratio (toward 16:9) and language (toward `pt`) drawn
  from (1 - a) * base + a * drifted probabilities. bitrate_kbps (via resolution),
  has_captions (via speech_ratio), quality and engagement follow as consequences.
"""

from __future__ import annotations

import numpy as np

from models.synthetic.experiments import DAY_US

HOUR_US = DAY_US // 24
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


def _categorical(u, probs, drift_probs, drifted, strength) -> np.ndarray:
    """Inverse-CDF draw from `probs`, mixed toward `drift_probs` on drifted rows."""
    idx = np.searchsorted(np.cumsum(probs), u, side="right")
    if drift_probs is not None and drifted.any():
        a = min(max(strength, 0.0), 1.0)
        mixed = (1 - a) * np.asarray(probs) + a * np.asarray(drift_probs)
        idx[drifted] = np.searchsorted(np.cumsum(mixed), u[drifted], side="right")
    return np.minimum(idx, len(probs) - 1)


def creators(rng: np.random.Generator, n: int) -> dict:
    log_reach = rng.normal(np.log(250.0), 1.0, n)
    weight = np.exp(0.7 * (log_reach - np.log(250.0)) + 0.7 * rng.normal(size=n))
    return {
        "quality": rng.normal(size=n),
        "log_reach": log_reach,
        "p": weight / weight.sum(),
        "topic": rng.choice(len(TOPIC_NAMES), n, p=TOPIC_P),
    }


def clips(rng, cr, start_us, days, per_day, drift_us, strength) -> dict:
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


def engagement(rng, c: dict, log_reach: np.ndarray, end_us: int) -> dict:
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


def labels(rng, c: dict, end_us: int) -> dict:
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
