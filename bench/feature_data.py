"""The feature-store benchmarks' data: synthetic rows of the warehouse table `clip_features`.

`make_clip_features` makes the rows of `models.features.clip_features` (clip_id,
creator_id, created_at, event_timestamp as UTC microseconds, then the 32 features with
their exact types and realistic ranges; `creator_label_mean` and `creator_mean_early_views`
have nulls), vectorised with numpy/pyarrow. A clip's moments are its creation and the ends
of its first 7 UTC days (8 rows), as `build_clip_features` makes them. The benchmarks make
them in a spawned process (`in_subprocess`, so that their memory does not count in the
benchmark's peak RSS) and hand them over as Parquet. The model, drift and API benchmarks
use the same rows.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.core.contract import ASPECT_RATIOS
from models.features.clip_features import (
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    RESOLUTIONS,
    VERTICAL_ASPECTS,
)

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
START = date(2026, 1, 1)
CREATED_OVER_DAYS = 14
MOMENTS = 8  # creation + the ends of the first 7 days
LANGUAGES = ("en", "es", "pt", "de", "fr", "ja", "hi", "ko")
LANGUAGE_P = (0.55, 0.12, 0.08, 0.06, 0.06, 0.05, 0.05, 0.03)
TOPICS = ("gaming", "podcast", "cooking", "sports", "music", "comedy", "education", "news",
          "beauty", "travel")  # fmt: skip
RESOLUTION_P = (0.08, 0.22, 0.55, 0.08, 0.07)
RESOLUTION_KBPS = np.array([1000.0, 2500.0, 5000.0, 9000.0, 16000.0])
ASPECT_P = (0.72, 0.08, 0.08, 0.12)
TS = pa.timestamp("us", tz="UTC")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.cast(pa.array(numbers.astype(np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width, "0"), "")


def _names(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pa.array(values).take(pa.array(index))


def make_clip_features(
    n_clips: int,
    *,
    all_moments: bool,
    seed: int = 0,
    prefix: str = "c",
    moments: np.ndarray | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """Rows of `clip_features` (key columns, then FEATURE_COLUMNS; no ds) and the latent
    quality z of each row's clip.

    `all_moments`: every clip's 8 rows, sorted by clip_id and event_timestamp; else one row
    per clip at a random one of its moments (what the online store holds: its latest row),
    or at `moments[i]` (0: creation, k: the end of its k-th day) when given.
    """
    rng = np.random.default_rng(seed)
    n = n_clips
    start_us = (START - date(1970, 1, 1)).days * DAY_US
    created = start_us + rng.integers(0, CREATED_OVER_DAYS * DAY_US, n)
    z = rng.normal(size=n)
    res = rng.choice(len(RESOLUTIONS), n, p=RESOLUTION_P)
    rank = np.array([v[0] for v in RESOLUTIONS.values()], dtype=np.int64)[res]
    pixels = np.array([v[1] * v[2] for v in RESOLUTIONS.values()], dtype=np.float64)[res]
    fps = np.array([24.0, 25.0, 30.0, 60.0])[rng.choice(4, n, p=(0.1, 0.1, 0.6, 0.2))]
    duration = np.round(np.clip(np.exp(rng.normal(np.log(32.0), 0.65, n)), 3, 600), 3)
    bitrate = np.round(RESOLUTION_KBPS[res] * np.sqrt(fps / 30) * np.exp(rng.normal(0, 0.25, n)), 1)
    aspect = rng.choice(len(ASPECT_RATIOS), n, p=ASPECT_P)
    vertical = np.array([a in VERTICAL_ASPECTS for a in ASPECT_RATIOS], dtype=np.int64)[aspect]
    speech = np.round(rng.beta(3.0, 3.0, n), 4)
    creators = rng.integers(0, max(50, n // 40), n)
    lam = np.exp(np.log(250.0) + 0.7 * z)  # expected 7-day views
    completion = _sigmoid(-0.3 + 0.8 * z)
    interaction = _sigmoid(-2.8 + 0.6 * z)
    history = rng.integers(0, 400, n)  # the creator's clips before this one
    labelled = rng.uniform(0.3, 0.9, n)
    label_mean = np.round(rng.uniform(15.0, 90.0, n), 4)
    early_views = np.round(np.exp(rng.normal(np.log(250.0), 0.5, n)), 4)

    if all_moments:
        ci, m = np.repeat(np.arange(n), MOMENTS), np.tile(np.arange(MOMENTS), n)
    else:
        ci, m = np.arange(n), rng.integers(0, MOMENTS, n)
        if moments is not None:
            m = np.asarray(moments, dtype=np.int64)
    rows = len(ci)
    c = created[ci]
    event = np.where(m == 0, c, c // DAY_US * DAY_US + m * DAY_US - 1)  # day-end of day m-1
    age_h = (event - c) / HOUR_US
    data: dict[str, Any] = {
        "clip_id": _ids(prefix, np.arange(n), 9).take(pa.array(ci)),
        "creator_id": _ids("cr", creators, 6).take(pa.array(ci)),
        "created_at": pa.array(c, TS),
        "event_timestamp": pa.array(event, TS),
        "duration_s": duration[ci],
        "resolution": _names(tuple(RESOLUTIONS), res[ci]),
        "bitrate_kbps": bitrate[ci],
        "fps": fps[ci],
        "aspect_ratio": _names(ASPECT_RATIOS, aspect[ci]),
        "has_captions": (rng.random(n) < 0.2 + 0.5 * speech)[ci],
        "speech_ratio": speech[ci],
        "scene_cuts_per_min": np.round(rng.gamma(2.0, 6.0, n), 2)[ci],
        "hook_strength": np.round(_sigmoid(0.5 * z + rng.normal(0, 1.1, n)), 4)[ci],
        "language": _names(LANGUAGES, rng.choice(len(LANGUAGES), n, p=LANGUAGE_P)[ci]),
        "topic": _names(TOPICS, rng.choice(len(TOPICS), n)[ci]),
        "duration_min": duration[ci] / 60.0,
        "resolution_rank": rank[ci],
        "bitrate_per_pixel": bitrate[ci] * 1000.0 / (pixels[ci] * fps[ci]),
        "is_vertical": vertical[ci],
        "clip_age_hours": age_h,
    }
    for k in (1, 3, 7):
        share = (1 - np.exp(-np.minimum(age_h, 24.0 * k) / 24.0)) / (1 - np.exp(-7.0))
        views = np.floor(lam[ci] * share).astype(np.int64)
        seen = views > 0
        rate = np.clip(completion[ci] + rng.normal(0, 0.02, rows), 0, 1)
        data[f"views_{k}d"] = views
        data[f"completion_rate_{k}d"] = np.where(seen, rate, 0.0)
        data[f"engagement_rate_{k}d"] = np.where(
            seen, interaction[ci] * rng.uniform(0.8, 1.2, rows), 0.0
        )
        data[f"watch_ratio_{k}d"] = np.where(seen, np.clip(0.25 + 0.7 * rate, 0, 1), 0.0)
    clip_count = history[ci] + m
    label_count = np.floor(clip_count * labelled[ci]).astype(np.int64)
    data["creator_clip_count"] = clip_count.astype(np.int64)
    data["creator_label_count"] = label_count
    data["creator_label_mean"] = pa.array(label_mean[ci], mask=label_count == 0)
    data["creator_mean_early_views"] = pa.array(
        early_views[ci], mask=(clip_count == 0) | (rng.random(rows) < 0.05)
    )
    table = pa.table(data).select([*KEY_COLUMNS, *FEATURE_COLUMNS])
    return table, z[ci]


def write_online_rows(path: str, n_clips: int, prefix: str, seed: int = 0) -> int:
    """One row per clip (a random moment of it) as one Parquet file; the row count."""
    table, _ = make_clip_features(n_clips, all_moments=False, seed=seed, prefix=prefix)
    pq.write_table(table, path)
    return table.num_rows


def write_warehouse(home: str, n_clips: int, seed: int = 0) -> dict[str, int]:
    """Every moment of `n_clips` clips as the Hive-partitioned warehouse table clip_features
    (`ds=YYYY-MM-DD/part-0.parquet` with a ds column, as `Warehouse.write_partition`), and
    the entity rows (the same moments with a quality_score) as `<home>/entity.parquet`."""
    table, z = make_clip_features(n_clips, all_moments=True, seed=seed)
    rng = np.random.default_rng(seed + 1)
    score = np.round(np.clip(55 + 15 * z + rng.normal(0, 6, len(z)), 0, 100), 2)
    entity = table.select(["clip_id", "event_timestamp", "created_at", "creator_id"])
    pq.write_table(entity.append_column("quality_score", pa.array(score)), f"{home}/entity.parquet")
    days = table.column("event_timestamp").cast(pa.int64()).to_numpy() // DAY_US
    order = np.argsort(days, kind="stable")
    table = table.take(pa.array(order)).append_column(
        "ds", pa.array(days[order].astype(np.int32), pa.date32())
    )
    days = days[order]
    bounds = np.flatnonzero(np.diff(days)) + 1
    parts = 0
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(days)], strict=True):
        ds = date.fromordinal(date(1970, 1, 1).toordinal() + int(days[lo]))
        out = Path(home) / "warehouse" / "clip_features" / f"ds={ds.isoformat()}"
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), out / "part-0.parquet", row_group_size=122_880)
        parts += 1
    return {"rows": table.num_rows, "partitions": parts}


def in_subprocess(fn: Callable, *args):
    """`fn(*args)` in a spawned process (its memory stays out of this one's peak RSS)."""
    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def sample_rows(rng: np.random.Generator, n: int, k: int) -> pa.Array:
    """`k` (at most `n`) distinct row indices of `n`, sorted."""
    return pa.array(np.sort(rng.choice(n, min(n, k), replace=False)))


def count_label(n: int) -> str:
    """`n` as a metric name says it: 100000 -> "100k"."""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)
