"""Benchmark `online_night`: the night's online write against Redis's own fastest path (#20).

7,000,000 clips (times `scale`: a steady-state night's clips of the last 7 days), each
with its features (`clip_features`, 32 values and a time) and its champion score
(`clip_scores`, 5 values and a time), into an empty throwaway Redis:

* floor: `redis-cli --pipe` (Redis's documented mass insertion) of pre-encoded `HSET`s of
  exactly the bytes Feast stores, one command per clip holding both views' fields, the
  encoding not timed;
* `write_views_fast`, both views in one call per key (what the nightly's `online_store`
  step runs), from the rows in memory: encoding, the never-older check and the replies
  included;
* for reference, the same rows as two writes (features, then scores: one view each);
* the next night over the store the first left: the same clips a day later, both sides
  (`redis-cli --pipe` of the later rows' `HSET`s; `write_views_fast`, whose check now
  reads a stored time for every clip). This is the nightly's steady state.

Best of `REPEATS`, interleaved, Redis flushed before each. After each of ours a sample is
read back through the Feast SDK.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import Record, Timer, floor_record, log, peak_rss_mb
from bench.feast_env import check_served, feast_store, redis_server
from bench.feature_data import in_subprocess, sample_rows, write_online_rows
from models.core.names import FEATURES_VIEW, SCORES_VIEW

CLIPS = 7_000_000
MIN_CLIPS = 1_000
REPEATS = 2
TARGET = 1.3  # x the redis-cli --pipe floor
CHUNK = 50_000
SCORE_TS = "score_timestamp"
VIEWS = [(FEATURES_VIEW, {}), (SCORES_VIEW, {"event_timestamp": SCORE_TS})]


def night_rows(features: pa.Table, seed: int = 1) -> pa.Table:
    """The clips' features plus a champion score each (same time), as the night joins them."""
    rng = np.random.default_rng(seed)
    n = features.num_rows
    score = np.round(rng.uniform(0, 100, n), 3)
    return (
        features.append_column("score", pa.array(score))
        .append_column("model_version", pa.array(["12"] * n))
        .append_column("score_low", pa.array(score - 4.5))
        .append_column("score_high", pa.array(score + 4.5))
        .append_column("interval_level", pa.array(np.full(n, 0.8)))
        .append_column(SCORE_TS, features.column("event_timestamp"))
    )


def next_night(rows: pa.Table) -> pa.Table:
    """The same clips' rows one day later (both views' times), as the next night writes."""
    day = pa.scalar(86_400_000_000, pa.duration("us"))
    for name in ("event_timestamp", SCORE_TS):
        i = rows.schema.get_field_index(name)
        rows = rows.set_column(i, name, pc.add(rows.column(name), day))
    return rows


def hset_commands(store, rows: pa.Table) -> bytes:
    """One `HSET key (ts_field ts (field value)*)*` per row, both views, Feast's bytes: the
    writer's own prepared commands (`Encoder.hsets`), whose bytes the writes read back
    through Feast check."""
    from feature_repo.online_batch import Encoder
    from feature_repo.online_write import view_plan

    plans = [view_plan(store, store.get_feature_view(v), r) for v, r in VIEWS]
    hsets = Encoder("clip_id", plans, store.config, None).prepare(rows).hsets
    start, end = np.frombuffer(hsets.buffers()[1], dtype=np.int32)[[0, len(hsets)]]
    return hsets.buffers()[2].to_pybytes()[start:end]


def _pipe(server, path: Path) -> Timer:
    host, port = server.connection_string.split(":")
    with Timer() as t, path.open("rb") as f:
        out = subprocess.run(
            ["redis-cli", "-h", host, "-p", port, "--pipe"],
            stdin=f, capture_output=True, text=True, timeout=3600, check=True,
        )  # fmt: skip
    if "errors: 0" not in out.stdout:
        raise RuntimeError(f"redis-cli --pipe: {out.stdout.strip()[-200:]}")
    return t


def _timed_write(store, rows: pa.Table, rng) -> Timer:
    """`write_views_fast` of `rows` in `CHUNK`s, timed; every clip must be written in both
    views, and a sample must read back through Feast."""
    from feature_repo.online_write import write_views_fast

    n = rows.num_rows
    with Timer() as t:
        res = write_views_fast(store, (rows.slice(o, CHUNK) for o in range(0, n, CHUNK)), VIEWS)
    if [r.written for r in res.values()] != [n, n]:
        raise RuntimeError(f"write_views_fast wrote {res}, expected {n} clips")
    check_served(store, rows.take(sample_rows(rng, n, 200)))
    return t


def online_night(scale: float, tmp: Path) -> list[Record]:
    from feature_repo.online_write import write_views_fast

    n = max(MIN_CLIPS, round(CLIPS * scale))
    os.environ.pop("CLIPFLOW_REDIS", None)  # the floor needs a server of our own to flush
    prefix = f"n{uuid.uuid4().hex[:6]}-"
    log(f"online_night: making {n:,} clips' rows ...")
    in_subprocess(write_online_rows, str(tmp / "rows.parquet"), n, prefix)
    rows = night_rows(pq.read_table(tmp / "rows.parquet"))
    rng = np.random.default_rng(3)
    with redis_server(tmp) as server:
        store = feast_store(tmp / "home", server)
        later = next_night(rows)
        floor_file, next_file = tmp / "hset.resp", tmp / "hset-next.resp"
        with Timer() as enc, floor_file.open("wb") as f, next_file.open("wb") as g:
            for lo in range(0, n, 500_000):
                f.write(hset_commands(store, rows.slice(lo, 500_000)))
                g.write(hset_commands(store, later.slice(lo, 500_000)))
        size_mb = floor_file.stat().st_size / 1e6
        log(f"online_night: floor commands 2 x {size_mb:,.0f} MB encoded in {enc.seconds:.1f} s")
        floors, ours, twos, next_floors, nexts = [], [], [], [], []
        with server.client() as client:
            for rep in range(REPEATS):
                client.flushall()
                floors.append(_pipe(server, floor_file))
                used = client.info("memory")["used_memory"] / 1e6
                next_floors.append(_pipe(server, next_file))
                client.flushall()
                ours.append(t := _timed_write(store, rows, rng))
                nexts.append(t3 := _timed_write(store, later, rng))  # over the first's store
                client.flushall()
                with Timer() as t2:
                    for view in VIEWS:
                        batches = (rows.slice(o, CHUNK) for o in range(0, n, CHUNK))
                        write_views_fast(store, batches, [view])
                twos.append(t2)
                log(
                    f"online_night: rep {rep + 1}: redis-cli --pipe {floors[-1].seconds:.2f} s"
                    f" (Redis {used:,.0f} MB), one call for both views {t.seconds:.2f} s"
                    f" ({t.cpu:.2f} s CPU), two writes {t2.seconds:.2f} s; next night:"
                    f" redis-cli --pipe {next_floors[-1].seconds:.2f} s, ours {t3.seconds:.2f} s"
                )
    floor_s = min(t.seconds for t in floors)
    ours_s = min(t.seconds for t in ours)
    twos_s = min(t.seconds for t in twos)
    next_floor_s, next_s = (min(t.seconds for t in ts) for ts in (next_floors, nexts))
    common = {"benchmark": "online_night", "rows": n, "scale": scale, "peak_rss_mb": peak_rss_mb()}
    target = f"<= {TARGET:g}x floor"
    return [
        floor_record("online_night_seconds", ours_s, "s", "redis_cli_pipe_seconds", floor_s,
                     target=target, limit=TARGET, **common),
        floor_record("online_night_keys_per_s", n / ours_s, "keys/s", "redis_cli_pipe_keys_per_s",
                     n / floor_s, target=target, limit=TARGET, higher_is_better=True, **common),
        floor_record("online_night_two_writes_seconds", twos_s, "s", "redis_cli_pipe_seconds",
                     floor_s, target="reference (the views as two writes)", limit=None, **common),
        floor_record("online_next_night_seconds", next_s, "s", "redis_cli_pipe_next_seconds",
                     next_floor_s, target=target, limit=TARGET, **common),
    ]  # fmt: skip


BENCHMARKS = {"online_night": online_night}
