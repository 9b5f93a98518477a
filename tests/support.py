"""Helpers shared by tests: good rows of each table and a landing-file writer."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.core.contract import ASPECT_RATIOS, RESOLUTIONS, TABLES
from models.features.clip_features import CATEGORICAL_FEATURES, FEATURE_COLUMNS

# Arrow type of each contract field type (for hand-made warehouse and landing rows)
ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


GOOD_CLIP = {
    "clip_id": "c1",
    "video_id": "v1",
    "creator_id": "k1",
    "created_at": ts("2026-01-01T10:00:00Z"),
    "duration_s": 30.0,
    "resolution": "1080p",
    "bitrate_kbps": 4000.0,
    "fps": 30.0,
    "aspect_ratio": "9:16",
    "has_captions": True,
    "speech_ratio": 0.4,
    "scene_cuts_per_min": 6.0,
    "hook_strength": 0.7,
    "language": "en",
    "topic": "gaming",
}
GOOD_ENGAGEMENT = {
    "clip_id": "c1",
    "event_timestamp": ts("2026-01-01T11:00:00Z"),
    "views": 100,
    "likes": 10,
    "shares": 2,
    "comments": 3,
    "completions": 40,
    "watch_time_s": 1500.0,
}
GOOD_LABEL = {"clip_id": "c1", "labeled_at": ts("2026-01-01T20:00:00Z"), "quality_score": 71.5}


class Landing:
    """Writes landing files of the contract's tables (Parquet, ns timestamps, or CSV)."""

    def __init__(self, root: Path):
        self.root = root

    def write(
        self,
        table: str,
        rows: list[dict],
        name: str = "part-0",
        fmt: str = "parquet",
        ts_unit: str = "ns",
    ) -> Path:
        spec = TABLES[table]
        folder = self.root / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            cols = list(rows[0].keys()) if rows else spec.columns
            lines = [",".join(cols)]
            for r in rows:
                vals = []
                for c in cols:
                    v = r.get(c)
                    if isinstance(v, datetime):
                        v = v.isoformat().replace("+00:00", "Z")
                    elif isinstance(v, bool):
                        v = "true" if v else "false"
                    vals.append("" if v is None else str(v))
                lines.append(",".join(vals))
            path.write_text("\n".join(lines) + "\n")
            return path
        types = {
            "string": pa.string(),
            "timestamp": pa.timestamp(ts_unit, tz="UTC"),
            "float": pa.float64(),
            "int": pa.int64(),
            "bool": pa.bool_(),
        }
        fields = (
            [pa.field(f.name, types[f.type]) for f in spec.fields if f.name in rows[0]]
            if rows
            else [pa.field(f.name, types[f.type]) for f in spec.fields]
        )
        extra = [c for c in (rows[0] if rows else {}) if c not in spec.columns]
        schema = pa.schema(fields + [pa.field(c, pa.string()) for c in extra])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return path


def clip_feature_rows(n_clips: int, prefix: str, seed: int = 0) -> pa.Table:
    """Rows shaped like the warehouse table clip_features: per clip a creation row and 7
    day-end rows, every feature random, about 10% nulls."""
    from feast.types import Bool, Float64, Int64

    from feature_repo.feature_views import CLIP_FEATURE_FIELDS

    rng = np.random.default_rng(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    ids, created, moments = [], [], []
    for i in range(n_clips):
        c = start + timedelta(seconds=int(rng.integers(0, 86400)), microseconds=i)
        day_ends = [
            datetime.combine((c + timedelta(days=d)).date(), datetime.max.time(), UTC)
            for d in range(7)
        ]
        for m in [c, *day_ends]:
            ids.append(f"{prefix}{i:04d}")
            created.append(c)
            moments.append(m)
    n = len(ids)
    ts = pa.timestamp("us", tz="UTC")
    cols = {
        "clip_id": pa.array(ids),
        "creator_id": pa.array([f"creator{i % 3}" for i in range(n)]),
        "created_at": pa.array(created, ts),
        "event_timestamp": pa.array(moments, ts),
        "ds": pa.array([m.date() for m in moments], pa.date32()),
    }
    for f in CLIP_FEATURE_FIELDS:
        null = rng.random(n) < 0.1
        if f.dtype == Float64:
            cols[f.name] = pa.array(rng.normal(size=n) * 1e3, mask=null)
        elif f.dtype == Int64:
            cols[f.name] = pa.array(rng.integers(-(2**40), 2**40, n), mask=null)
        elif f.dtype == Bool:
            cols[f.name] = pa.array(rng.random(n) < 0.5, mask=null)
        else:
            cols[f.name] = pa.array(rng.choice(["", "en", "gaming", "日本語"], n), mask=null)
    # shuffled, so that the newest row of a clip is not simply its last one
    return pa.table(cols).take(rng.permutation(n))


def newest_per_clip(rows: pa.Table) -> dict[str, dict]:
    """The newest row (by event_timestamp) of each clip_id, computed independently of the
    code under test (a plain loop over the rows)."""
    out: dict[str, dict] = {}
    for row in rows.to_pylist():
        held = out.get(row["clip_id"])
        if held is None or row["event_timestamp"] > held["event_timestamp"]:
            out[row["clip_id"]] = row
    return out


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_training_set(n_clips: int = 600, seed: int = 0) -> pd.DataFrame:
    """Clips over 30 days, 3 scoring moments each; target = a nonlinear signal + noise."""
    rng = np.random.default_rng(seed)
    c = {n: rng.normal(size=n_clips) for n in FEATURE_COLUMNS if n not in CATEGORICAL_FEATURES}
    c |= {
        "resolution": rng.choice(RESOLUTIONS, n_clips),
        "aspect_ratio": rng.choice(ASPECT_RATIOS, n_clips),
        "language": rng.choice(["en", "es"], n_clips),
        "topic": rng.choice(["gaming", "music", "news"], n_clips),
        "hook_strength": rng.random(n_clips),
    }
    df = pd.DataFrame(c)
    df["quality_score"] = np.clip(
        30
        + 40 * df["hook_strength"] ** 2
        + 10 * (df["topic"] == "music")
        + 8 * np.tanh(df["duration_s"])
        + rng.normal(0, 4, n_clips),
        0,
        100,
    )
    df["clip_id"] = [f"c{i:05d}" for i in range(n_clips)]
    df["creator_id"] = "k1"
    df["created_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        rng.uniform(0, 30 * 86400, n_clips), unit="s"
    )
    df = df.loc[df.index.repeat(3)].reset_index(drop=True)
    df["event_timestamp"] = df["created_at"] + pd.to_timedelta(np.tile([0, 1, 2], n_clips), "D")
    return df
