"""Benchmark `ingest`: one day of clips + engagement through `models.ingest.day.ingest_day`.

The data: one UTC day of 1,000,000 clips and 5,000,000 engagement rows (times `scale`),
written as landing Parquet the way `models.synthetic.landing.generate_landing` lays it out
(`<table>/<day>/part-NNN.parquet`, at most 500k rows a file, UTC timestamps). Clips are
created in the first 4 hours of the day; each clip has 5 engagement windows ending 1, 3, 6,
12 and 18 hours later, so every row belongs to that day. No bad rows: all rows must pass.
The data is made by a vectorised numpy/pyarrow maker here (the general generator spreads a
clip's windows over 7 days, so it cannot put 5 windows per clip in one day), in a spawned
process so its memory does not count in this process's peak RSS.

Measured in one process, best of 2 repetitions each (interleaved, fresh outputs each time),
with the DuckDB settings of the pipeline's warehouse resource (2 threads, 4GB):

* floor: a bare `COPY (SELECT * FROM read_parquet([...])) TO '...parquet'` of the clips
  files plus the same of the engagement files (the sum of the two times);
* clipflow: `ingest_day` of clips, then of engagement, for that day into a fresh home (the
  manifest probe, typed casts, every rule, the FK join to clips, dedup, quarantine write).
"""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import Record, Timer, floor_record, log, peak_rss_mb
from models.core.contract import ASPECT_RATIOS, CLIPS, ENGAGEMENT, RESOLUTIONS
from models.core.warehouse import Warehouse, connect, sql_str
from models.ingest.day import ingest_day

DAY = date(2026, 1, 1)
CLIPS_AT_SCALE_1 = 1_000_000
WINDOWS_H = np.array([1, 3, 6, 12, 18])  # engagement rows per clip = len(WINDOWS_H)
CREATED_WITHIN_H = 4  # clips are created in [00:00, 04:00) UTC; 4h + 18h < 24h
ROWS_PER_FILE = 500_000  # as models.synthetic.landing.MAX_ROWS_PER_FILE
REPEATS = 2
THREADS, MEMORY_LIMIT = 2, "4GB"  # assets.resources.ClipflowWarehouse defaults
MAX_RATIO, MAX_PEAK_MB = 3.0, 4096.0
TARGET = f"<= {MAX_RATIO:g}x floor, peak RSS < {MAX_PEAK_MB:.0f} MB"

HOUR_US = 3_600_000_000
LANGUAGES = ("en", "es", "pt", "de", "fr", "ja", "hi", "ko")
TOPICS = (
    "gaming",
    "podcast",
    "cooking",
    "sports",
    "music",
    "comedy",
    "education",
    "news",
    "beauty",
    "travel",
)


# -- the data ----------------------------------------------------------------------------
def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.cast(pa.array(numbers.astype(np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width, "0"), "")


def _pick(rng: np.random.Generator, values: tuple[str, ...], n: int, p=None) -> pa.Array:
    return pa.array(values).take(pa.array(rng.choice(len(values), n, p=p)))


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us, pa.timestamp("us", tz="UTC"))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_clips(n: int, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    """n valid clips of day DAY (sorted by created_at), and the latent quality z of each."""
    rng = np.random.default_rng(seed)
    day_us = (DAY - date(1970, 1, 1)).days * 24 * HOUR_US
    created = day_us + np.sort(rng.integers(0, CREATED_WITHIN_H * HOUR_US, n))
    video = np.sort(rng.integers(0, n // 3 + 1, n))
    creators = max(50, n // 40)
    creator = rng.integers(0, creators, n // 3 + 1)[video]
    z = rng.normal(size=n)
    fps = np.array([24.0, 25.0, 30.0, 60.0])[rng.choice(4, n, p=(0.1, 0.1, 0.6, 0.2))]
    res = rng.choice(len(RESOLUTIONS), n, p=(0.08, 0.22, 0.55, 0.08, 0.07))
    speech = rng.beta(3.0, 3.0, n)
    data = {
        "clip_id": _ids("c", np.arange(n), 9),
        "video_id": _ids("v", video, 8),
        "creator_id": _ids("cr", creator, 6),
        "created_at": _ts(created),
        "duration_s": np.round(np.clip(np.exp(rng.normal(np.log(32.0), 0.65, n)), 3, 600), 3),
        "resolution": pa.array(RESOLUTIONS).take(pa.array(res)),
        "bitrate_kbps": np.round(
            np.array([1000.0, 2500, 5000, 9000, 16000])[res]
            * np.sqrt(fps / 30)
            * np.exp(rng.normal(0, 0.25, n)),
            1,
        ),
        "fps": fps,
        "aspect_ratio": _pick(rng, ASPECT_RATIOS, n, (0.72, 0.08, 0.08, 0.12)),
        "has_captions": rng.random(n) < 0.2 + 0.5 * speech,
        "speech_ratio": np.round(speech, 4),
        "scene_cuts_per_min": np.round(rng.gamma(2.0, 6.0, n), 2),
        "hook_strength": np.round(_sigmoid(0.5 * z + rng.normal(0, 1.1, n)), 4),
        "language": _pick(rng, LANGUAGES, n, (0.55, 0.12, 0.08, 0.06, 0.06, 0.05, 0.05, 0.03)),
        "topic": _pick(rng, TOPICS, n),
    }
    return pa.table(data).select(CLIPS.columns), z


def make_engagement(clips: pa.Table, z: np.ndarray, seed: int = 1) -> pa.Table:
    """len(WINDOWS_H) windows per clip, all ending the same day, sorted by event_timestamp."""
    rng = np.random.default_rng(seed)
    n, w = clips.num_rows, len(WINDOWS_H)
    created = clips["created_at"].combine_chunks().cast(pa.int64()).to_numpy()
    ends = (created[:, None] + WINDOWS_H[None, :] * HOUR_US).ravel()
    order = np.argsort(ends, kind="stable")
    ci = np.repeat(np.arange(n), w)[order]
    zi = z[ci]
    share = np.diff(1.0 - np.exp(-np.concatenate([[0.0], WINDOWS_H]) / 24.0))
    lam = np.exp(np.log(250.0) + 0.7 * zi) * np.tile(share, n)[order]
    views = rng.poisson(lam)
    completions = rng.binomial(views, _sigmoid(-0.3 + 0.8 * zi))
    duration = clips["duration_s"].to_numpy()[ci]
    data = {
        "clip_id": clips["clip_id"].combine_chunks().take(pa.array(ci)),
        "event_timestamp": _ts(ends[order]),
        "views": views,
        "likes": rng.binomial(views, _sigmoid(-3.0 + 0.6 * zi)),
        "shares": rng.binomial(views, _sigmoid(-4.8 + 0.6 * zi)),
        "comments": rng.binomial(views, _sigmoid(-5.0 + 0.5 * zi)),
        "completions": completions,
        "watch_time_s": np.round(duration * (completions + (views - completions) * 0.25), 1),
    }
    return pa.table(data).select(ENGAGEMENT.columns)


def _write(landing: Path, folder: str, data: pa.Table) -> list[str]:
    out = landing / folder / DAY.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, lo in enumerate(range(0, max(data.num_rows, 1), ROWS_PER_FILE)):
        path = out / f"part-{part:03d}.parquet"
        pq.write_table(data.slice(lo, ROWS_PER_FILE), path)
        paths.append(str(path))
    return paths


def make_landing(landing: str, n_clips: int, seed: int = 0) -> dict[str, list[str]]:
    """Write the day's clips and engagement under `landing`; the files of each table."""
    clips, z = make_clips(n_clips, seed)
    engagement = make_engagement(clips, z, seed + 1)
    return {
        "clips": _write(Path(landing), CLIPS.name, clips),
        "engagement": _write(Path(landing), ENGAGEMENT.name, engagement),
    }


# -- the measurements --------------------------------------------------------------------
def _floor(files: dict[str, list[str]], out: Path) -> dict[str, Timer]:
    """Wall and CPU seconds of a bare DuckDB read + write of each table's landing files."""
    out.mkdir(parents=True)
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)
    times = {}
    for table, paths in files.items():
        listed = ", ".join(sql_str(p) for p in paths)
        with Timer() as t:
            con.execute(
                f"COPY (SELECT * FROM read_parquet([{listed}])) "
                f"TO {sql_str(out / f'{table}.parquet')} (FORMAT parquet)"
            )
        times[table] = t
    con.close()
    shutil.rmtree(out)
    return times


def _ingest(landing: Path, home: Path, n_clips: int, n_eng: int) -> dict[str, Timer]:
    """Wall and CPU seconds of clipflow's ingestion of the day, clips first, into a fresh home."""
    wh = Warehouse(home)
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)
    times = {}
    for table, expected in ((CLIPS, n_clips), (ENGAGEMENT, n_eng)):
        with Timer() as t:
            res = ingest_day(con, wh, table, landing, DAY, datetime.now(UTC))
        times[table.warehouse] = t
        log(
            f"  ingest_day({table.warehouse}): {t.seconds:.2f} s ({t.cpu:.2f} s CPU), rows_valid={res.rows_valid:,}"
            f" rows_quarantined={res.rows_quarantined:,} files_read={len(res.files_read)}"
        )
        # the timed data has no bad rows: anything quarantined or missing is a bug
        if res.rows_quarantined or res.files_quarantined or res.rows_valid != expected:
            raise RuntimeError(
                f"{table.warehouse}: {res.rows_valid} valid of {expected}, "
                f"quarantined {res.rows_quarantined} rows ({res.reasons}), "
                f"files {res.files_quarantined}"
            )
    con.close()
    shutil.rmtree(home)
    return times


def run(scale: float, tmp: Path) -> list[Record]:
    n_clips = max(100, round(CLIPS_AT_SCALE_1 * scale))
    n_eng = n_clips * len(WINDOWS_H)
    rows = n_clips + n_eng
    landing = tmp / "landing"
    log(f"ingest: making {n_clips:,} clips + {n_eng:,} engagement rows of {DAY} ...")
    with Timer() as t, ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        files = pool.submit(make_landing, str(landing), n_clips).result()
    size = sum(Path(p).stat().st_size for ps in files.values() for p in ps) / 1e6
    log(
        f"ingest: landing written in {t.seconds:.1f} s: "
        + ", ".join(f"{k} {len(v)} file(s)" for k, v in files.items())
        + f", {size:,.0f} MB"
    )

    floors, ingests = [], []
    for rep in range(REPEATS):  # interleaved, so a noisy moment hits both sides alike
        floors.append(_floor(files, tmp / f"floor-{rep}"))
        log(
            f"ingest: rep {rep + 1} floor (DuckDB COPY): "
            + ", ".join(f"{k} {v.seconds:.2f} s ({v.cpu:.2f} s CPU)" for k, v in floors[-1].items())
        )
        ingests.append(_ingest(landing, tmp / f"home-{rep}", n_clips, n_eng))

    def best(runs: list[dict[str, Timer]], tables=("clips", "engagement"), cpu=False) -> float:
        return min(sum(r[k].cpu if cpu else r[k].seconds for k in tables) for r in runs)

    peak = peak_rss_mb()
    common = {
        "benchmark": "ingest",
        "target": TARGET,
        "rows": rows,
        "peak_rss_mb": peak,
        "scale": scale,
    }

    def record(metric, value, unit, floor_metric, floor, rows=rows, rate=False) -> Record:
        return floor_record(metric, value, unit, floor_metric, floor, limit=MAX_RATIO,
                            higher_is_better=rate, also_met=peak < MAX_PEAK_MB,
                            **{**common, "rows": rows})  # fmt: skip

    value, floor = best(ingests), best(floors)
    records = [
        record("ingest_seconds", value, "s", "duckdb_copy_seconds", floor),
        record(
            "ingest_rows_per_s",
            round(rows / value),
            "rows/s",
            "duckdb_copy_rows_per_s",
            round(rows / floor),
            rate=True,
        ),
        # CPU seconds of this process (DuckDB's threads included): steadier than the wall
        # clock when other work shares the machine
        record(
            "ingest_cpu_seconds",
            best(ingests, cpu=True),
            "s",
            "duckdb_copy_cpu_seconds",
            best(floors, cpu=True),
        ),
    ]
    for table, n in (("clips", n_clips), ("engagement", n_eng)):  # the breakdown by table
        records.append(
            record(
                f"ingest_{table}_seconds",
                best(ingests, (table,)),
                "s",
                f"duckdb_copy_{table}_seconds",
                best(floors, (table,)),
                rows=n,
            )
        )
    return records


BENCHMARKS = {"ingest": run}
