"""Benchmarks of the Feast feature store: `online_write`, `online_read`, `training_set`.

The data: synthetic rows of the warehouse table `clip_features` (`models.features.clip_features`: clip_id,
creator_id, created_at, event_timestamp as UTC microseconds, then the 32 features with
their exact types and realistic ranges; `creator_label_mean` and `creator_mean_early_views`
have nulls), made vectorised with numpy/pyarrow in a spawned process (so its memory does
not count in the benchmark's peak RSS) and handed over as Parquet. A clip's moments are its
creation and the ends of its first 7 UTC days (8 rows), as `build_clip_features` makes them.

Every benchmark runs on a fresh clipflow home (`CLIPFLOW_HOME` under the scratch dir, set
before `feature_repo` is imported) with the repo applied. The online benchmarks start
their own throwaway `redis-server` on a free loopback port (no persistence) and stop it at
the end, or use `CLIPFLOW_REDIS` when it is set (then only this run's keys, which carry a
unique clip_id prefix, are deleted, never the whole database).

* `online_write`: the latest row of 1,000,000 clips (times `scale`) into Redis with
  `feature_repo.online_write.write_online` (the fast path on Redis), keys/s, best of 2. Floor: a
  bare redis-py pipelined `HSET` (pipelines of 5,000) of as many keys, with the same key
  bytes, the same 33 hash fields and values of the same sizes (Feast's own serialized
  values), best of 2, interleaved with the fast path on an emptied store. For reference,
  Feast's stock `write_to_online_store` on a 100,000-clip subset (times `scale`). Before
  timing, a sample written by `write_online` must read back through
  `store.get_online_features` with the written values (and after each timed write too).
  The fast path's records report the peak RSS before the stock write, the stock one after.
* `online_read`: `store.get_online_features(features=<clip_quality_v1>, entity_rows=[...])
  .to_dict()` latency, p50 and p99, for 1, 10 and 100 random existing clips, 2,000 calls
  each after a warm-up (times `scale`, at least 20), over the written 1,000,000 clips;
  floor: bare redis-py `HMGET` of the same keys and hash fields Feast reads (pipelined for
  10 and 100), timed call by call alternately with Feast.
* `training_set`: 1,000,000 entity rows (125,000 clips x 8 moments with a quality_score,
  times `scale`) against the 1,000,000 rows of `clip_features` (Hive-partitioned by ds).
  Floor: a bare DuckDB `ASOF LEFT JOIN` of the entity table against `read_parquet` of the
  feature files into an Arrow table. Measured: `training_set_duckdb` (best of 2,
  interleaved with the floor) and Feast's `training_set_feast` once; when Feast would take
  over ~60 s on all rows (judged from a 200,000-row run), its figure is that of the first
  200,000 rows, against the floor on the same rows, and the metric names say so. A sample
  of 10,000 rows must agree between the two (`compare`), or the benchmark fails.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import Record, Timer, log, peak_rss_mb, ratio_to_floor
from models.core.contract import ASPECT_RATIOS
from models.core.names import FEATURE_SERVICE
from models.core.names import FEATURES_VIEW as FEATURE_VIEW
from models.core.warehouse import Warehouse, connect, sql_str
from models.features.clip_features import (
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    RESOLUTIONS,
    VERTICAL_ASPECTS,
)

REPEATS = 2
THREADS, MEMORY_LIMIT = 2, "4GB"  # assets.resources.ClipflowWarehouse defaults

# online_write
WRITE_CLIPS = 1_000_000
STOCK_CLIPS = 100_000
PIPELINE = 5_000  # keys per pipeline, as feature_repo.online_write.DEFAULT_CHUNK
MIN_KEYS = 100
GATE_SAMPLE = 1_000  # rows written and read back before timing
CHECK_SAMPLE = 200  # rows read back after each timed write
WRITE_MAX_RATIO = 2.0

# online_read
READ_CLIPS = 1_000_000
CALLS = 2_000
MIN_CALLS = 20
ENTITY_COUNTS = (1, 10, 100)
STOCK_P99_MS = {1: 0.62, 10: 1.35, 100: 10.4}  # Feast stock get_online_features
READ_TARGET = "<= Feast stock (p99 0.62 / 1.35 / 10.4 ms at 1/10/100)"

# training_set
TRAINING_CLIPS = 125_000  # x 8 moments = 1,000,000 entity rows and feature rows
FEAST_SUBSET_ROWS = 200_000
FEAST_BUDGET_S = 60.0
COMPARE_SAMPLE = 10_000
MIN_CLIPS = 13  # >= 100 rows
TRAINING_MAX_RATIO = 3.0

# -- the data ----------------------------------------------------------------------------
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
    n_clips: int, *, all_moments: bool, seed: int = 0, prefix: str = "c"
) -> tuple[pa.Table, np.ndarray]:
    """Rows of `clip_features` (key columns, then FEATURE_COLUMNS; no ds) and the latent
    quality z of each row's clip.

    `all_moments`: every clip's 8 rows, sorted by clip_id and event_timestamp; else one row
    per clip at a random one of its moments (what the online store holds: its latest row).
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


def _in_subprocess(fn: Callable, *args):
    """`fn(*args)` in a spawned process (its memory stays out of this one's peak RSS)."""
    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- Redis and Feast ---------------------------------------------------------------------
@dataclass
class RedisServer:
    connection_string: str
    owned: bool  # started here: may be flushed; else only our keys are deleted

    def client(self):
        import redis
        from feast.infra.online_stores.redis import RedisOnlineStore

        nodes, kwargs = RedisOnlineStore._parse_connection_string(self.connection_string)
        return redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)

    def clear(self, prefix: str) -> None:
        """Empty the store (ours) or delete the keys of this run's clips (a shared one)."""
        with self.client() as client:
            if self.owned:
                client.flushall()
                return
            batch = []
            for key in client.scan_iter(match=f"*{prefix}*".encode(), count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(scratch: Path) -> Iterator[RedisServer]:
    """`CLIPFLOW_REDIS` when set, else a throwaway `redis-server` on a free loopback port."""
    configured = os.environ.get("CLIPFLOW_REDIS")
    if configured:
        yield RedisServer(configured, owned=False)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install Redis or set CLIPFLOW_REDIS")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--daemonize", "no", "--logfile", "", "--dir", str(scratch)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = RedisServer(f"127.0.0.1:{port}", owned=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with server.client() as client:
                    client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"could not start redis-server on port {port}") from None
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _feast_store(home: Path, redis: RedisServer | None):
    """The applied Feast store of a fresh home (the environment is set before the repo's
    modules are imported: data sources read the home at import)."""
    from models.core.settings import quiet_telemetry

    quiet_telemetry()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["CLIPFLOW_HOME"] = str(home)
    if redis is not None:
        os.environ["CLIPFLOW_REDIS"] = redis.connection_string
    else:
        os.environ.pop("CLIPFLOW_REDIS", None)
    from feature_repo import config

    store = config.feature_store()
    config.apply(store)
    return store


@dataclass(frozen=True)
class _Hash:
    """Where Feast keeps a clip's features in Redis: key bytes and hash fields."""

    keys: list[bytes]  # per clip, in table order
    fields: list[bytes]  # mmh3 of `<view>:<feature>` in feature order, then `_ts:<view>`
    names: list[str]  # the features, in the order of `fields`


def _feast_hash(store, ids: pa.Array) -> _Hash:
    """Feast's Redis layout of the clips `ids` (keys as `feature_repo.online_write` writes them,
    checked on a sample against Feast's own `serialize_entity_key`)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from feature_repo.online_write import _Layout

    fv = store.get_feature_view(FEATURE_VIEW)
    keys = _Layout.of(store, fv).redis_keys(ids)
    project = store.config.project.encode()
    version = store.config.entity_key_serialization_version
    for i in sorted({0, len(keys) // 2, len(keys) - 1}):
        ek = EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=ids[i].as_py())])
        if serialize_entity_key(ek, entity_key_serialization_version=version) + project != keys[i]:
            raise RuntimeError(f"Redis key of {ids[i]} differs from Feast's")
    names = [f.name for f in fv.features]
    fields = [_mmh3(f"{fv.name}:{n}") for n in names] + [f"_ts:{fv.name}".encode()]
    return _Hash(keys, fields, names)


def _check_served(store, rows: pa.Table) -> None:
    """`rows` (latest per clip) read back through the Feast SDK with exactly their values."""
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    ids = rows.column("clip_id").to_pylist()
    got = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE),
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()
    want = rows.select(["clip_id", *CLIP_FEATURE_NAMES]).to_pydict()
    for name, values in want.items():
        served = got.get(name) or [None] * len(ids)
        if served != values:
            i = next((j for j, v in enumerate(values) if j >= len(served) or served[j] != v), 0)
            raise RuntimeError(
                f"online store serves other values than written: {name} of {ids[i]}: "
                f"{served[i] if i < len(served) else None!r} != {values[i]!r}"
            )


def _sample(rng: np.random.Generator, n: int, k: int) -> pa.Array:
    return pa.array(np.sort(rng.choice(n, min(n, k), replace=False)))


# -- online_write ------------------------------------------------------------------------
def _hset_values(store, rows: pa.Table, hashes: _Hash) -> list[dict[bytes, bytes]]:
    """Per row, the hash Feast stores (field -> serialized value), via Feast's own encoder:
    the floor writes values of the same sizes as the real ones."""
    from feast.type_map import python_values_to_proto_values
    from google.protobuf.timestamp_pb2 import Timestamp

    fv = store.get_feature_view(FEATURE_VIEW)
    columns = []
    for f in fv.features:
        values = rows.column(f.name).to_pylist()
        protos = python_values_to_proto_values(values, f.dtype.to_value_type())
        columns.append([p.SerializeToString() for p in protos])
    micros = rows.column("event_timestamp").cast(pa.int64()).to_numpy()
    stamps = [
        Timestamp(seconds=int(s), nanos=int(u) * 1000).SerializeToString()
        for s, u in zip(*np.divmod(micros, 1_000_000), strict=True)
    ]
    columns.append(stamps)
    return [dict(zip(hashes.fields, vals, strict=True)) for vals in zip(*columns, strict=True)]


def _floor_hset(client, keys: list[bytes], pool: list[dict[bytes, bytes]]) -> Timer:
    """Bare redis-py: pipelined HSET key mapping, PIPELINE keys per round trip."""
    n, size = len(keys), len(pool)
    with Timer() as t:
        for lo in range(0, n, PIPELINE):
            with client.pipeline(transaction=False) as pipe:
                for i in range(lo, min(lo + PIPELINE, n)):
                    pipe.hset(keys[i], mapping=pool[i % size])
                pipe.execute()
    return t


def online_write(scale: float, tmp: Path) -> list[Record]:
    from feature_repo.online_write import write_online, write_stock

    n = max(MIN_KEYS, round(WRITE_CLIPS * scale))
    n_stock = min(n, max(MIN_KEYS, round(STOCK_CLIPS * scale)))
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    log(f"online_write: making the latest rows of {n:,} clips ...")
    with Timer() as t:
        _in_subprocess(write_online_rows, str(tmp / "rows.parquet"), n, prefix)
    table = pq.read_table(tmp / "rows.parquet")
    log(f"online_write: {table.num_rows:,} rows x {table.num_columns} columns in {t.seconds:.1f} s")
    rng = np.random.default_rng(7)

    with redis_server(tmp) as server:
        store = _feast_store(tmp / "home", server)
        ids = table.column("clip_id").combine_chunks()
        hashes = _feast_hash(store, ids)
        pool = _hset_values(store, table.slice(0, min(n, 1_000)), hashes)
        log(
            f"online_write: Redis {server.connection_string} ({'own' if server.owned else 'shared'}),"
            f" {len(hashes.fields)} hash fields, key {len(hashes.keys[0])} bytes"
        )
        try:
            # the gate: what write_online writes, Feast reads back
            gate = table.take(_sample(rng, n, GATE_SAMPLE))
            res = write_online(store, gate)
            if res.method != "fast" or res.written != gate.num_rows:
                raise RuntimeError(f"write_online of the gate sample: {res}")
            _check_served(store, gate)
            server.clear(prefix)
            log(f"online_write: gate passed ({gate.num_rows:,} rows read back through Feast)")

            floors, fasts = [], []
            with server.client() as client:
                for rep in range(REPEATS):  # interleaved, on an emptied store each time
                    floors.append(_floor_hset(client, hashes.keys, pool))
                    server.clear(prefix)
                    with Timer() as t:
                        res = write_online(store, table)
                    fasts.append(t)
                    if res.written != n or res.method != "fast":
                        raise RuntimeError(f"write_online wrote {res}, expected {n} keys (fast)")
                    _check_served(store, table.take(_sample(rng, n, CHECK_SAMPLE)))
                    used = client.info("memory")["used_memory"] / 1e6
                    server.clear(prefix)
                    log(
                        f"online_write: rep {rep + 1}: floor HSET {n / floors[-1].seconds:,.0f} keys/s"
                        f" ({floors[-1].seconds:.2f} s, {floors[-1].cpu:.2f} s CPU), write_online"
                        f" {n / t.seconds:,.0f} keys/s ({t.seconds:.2f} s, {t.cpu:.2f} s CPU),"
                        f" Redis {used:,.0f} MB"
                    )

            # the fast path's records report the peak RSS up to here: Feast's stock write
            # (protos of every value) comes on top of it
            peak_fast = peak_rss_mb()
            subset = table.slice(0, n_stock)
            df = subset.to_pandas()
            with Timer() as stock:
                res = write_stock(store, df)
            _check_served(store, subset.take(_sample(rng, n_stock, CHECK_SAMPLE)))
            log(
                f"online_write: Feast stock {n_stock / stock.seconds:,.0f} keys/s"
                f" ({stock.seconds:.2f} s); peak RSS {peak_fast:,.0f} MB before it,"
                f" {peak_rss_mb():,.0f} MB after"
            )
            del df
        finally:
            server.clear(prefix)

    floor_s = min(t.seconds for t in floors)
    fast_s = min(t.seconds for t in fasts)
    floor_rate, fast_rate, stock_rate = n / floor_s, n / fast_s, n_stock / stock.seconds
    common = {"benchmark": "online_write", "peak_rss_mb": peak_fast, "scale": scale}
    target = f"<= {WRITE_MAX_RATIO:g}x floor"
    records = []
    for metric, value, unit, floor_metric, floor, rate in (
        ("write_online_keys_per_s", fast_rate, "keys/s", "redis_py_hset_keys_per_s", floor_rate, True),
        ("write_online_seconds", fast_s, "s", "redis_py_hset_seconds", floor_s, False),
        ("write_online_cpu_seconds", min(t.cpu for t in fasts), "s",
         "redis_py_hset_cpu_seconds", min(t.cpu for t in floors), False),
    ):  # fmt: skip
        ratio = ratio_to_floor(value, floor, higher_is_better=rate)
        records.append(
            Record(
                metric=metric,
                value=round(value, 4),
                unit=unit,
                floor_metric=floor_metric,
                floor_value=round(floor, 4),
                ratio=round(ratio, 3),
                target=target,
                met=ratio <= WRITE_MAX_RATIO,
                rows=n,
                **common,
            )  # fmt: skip
        )
    ratio = ratio_to_floor(stock_rate, floor_rate, higher_is_better=True)
    records.append(
        Record(
            metric=f"feast_stock_write_keys_per_s_{_k(n_stock)}",
            value=round(stock_rate, 1),
            unit="keys/s",
            floor_metric="redis_py_hset_keys_per_s",
            floor_value=round(floor_rate, 1),
            ratio=round(ratio, 3),
            target="reference, no target (met: write_online is faster)",
            met=fast_rate > stock_rate,
            rows=n_stock,
            **{**common, "peak_rss_mb": peak_rss_mb()},
        )
    )
    return records


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# -- online_read -------------------------------------------------------------------------
def online_read(scale: float, tmp: Path) -> list[Record]:
    from feature_repo.online_write import write_online

    n = max(MIN_KEYS, round(READ_CLIPS * scale))
    calls = max(MIN_CALLS, round(CALLS * min(1.0, scale)))
    warmup = max(5, calls // 10)
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    log(f"online_read: making the latest rows of {n:,} clips ...")
    _in_subprocess(write_online_rows, str(tmp / "rows.parquet"), n, prefix)
    table = pq.read_table(tmp / "rows.parquet")
    rng = np.random.default_rng(11)

    samples: dict[tuple[str, int], np.ndarray] = {}
    with redis_server(tmp) as server:
        store = _feast_store(tmp / "home", server)
        try:
            with Timer() as t:
                res = write_online(store, table)
            if res.written != n:
                raise RuntimeError(f"write_online wrote {res}, expected {n} keys")
            _check_served(store, table.take(_sample(rng, n, GATE_SAMPLE)))
            log(f"online_read: {n:,} clips written in {t.seconds:.1f} s and checked through Feast")
            ids = table.column("clip_id").combine_chunks()
            hashes = _feast_hash(store, ids)
            id_list = ids.to_pylist()
            del table
            with server.client() as client:
                for k in ENTITY_COUNTS:
                    feast_ms, floor_ms = _read_latencies(
                        store, client, hashes, id_list, k, calls, warmup, rng
                    )
                    samples[("feast", k)], samples[("hmget", k)] = feast_ms, floor_ms
                    log(
                        f"online_read: {k} entities, {calls} calls: Feast p50"
                        f" {np.percentile(feast_ms, 50):.3f} p99 {np.percentile(feast_ms, 99):.3f}"
                        f" ms; HMGET p50 {np.percentile(floor_ms, 50):.3f}"
                        f" p99 {np.percentile(floor_ms, 99):.3f} ms"
                    )
            worst = max(ENTITY_COUNTS)
            if np.percentile(samples[("feast", worst)], 99) > STOCK_P99_MS[worst]:
                log(f"online_read: p99 at {worst} entities misses its target; where one call"
                    f" goes:\n{profile_read(store, id_list, worst, top=15)}")  # fmt: skip
        finally:
            server.clear(prefix)

    peak = peak_rss_mb()
    records = []
    for k in ENTITY_COUNTS:
        for pct in (50, 99):
            value = float(np.percentile(samples[("feast", k)], pct))
            floor = float(np.percentile(samples[("hmget", k)], pct))
            records.append(
                Record(
                    benchmark="online_read",
                    metric=f"feast_p{pct}_ms_{k}",
                    value=round(value, 4),
                    unit="ms",
                    floor_metric=f"hmget_p{pct}_ms_{k}",
                    floor_value=round(floor, 4),
                    ratio=round(ratio_to_floor(value, floor), 3),
                    target=READ_TARGET,
                    met=value <= STOCK_P99_MS[k],
                    rows=calls,
                    peak_rss_mb=peak,
                    scale=scale,
                )
            )
    return records


def _read_latencies(
    store, client, hashes: _Hash, ids: list[str], k: int, calls: int, warmup: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds per call of the Feast SDK read and of bare HMGETs of the same keys,
    alternately (which goes first alternates too), after `warmup` untimed calls of each."""
    fields = hashes.fields
    feast_ms, floor_ms = [], []
    clock = time.perf_counter_ns
    # As a serving app does (README): resolve the feature service once, not per request
    # (`get_feature_service` reloads the registry from disk each call, ~6 ms), and freeze
    # the start-up objects out of the garbage collector's full passes (~130 ms each).
    service = store.get_feature_service(FEATURE_SERVICE, allow_cache=True)

    def feast_call(entity_rows):
        t0 = clock()
        store.get_online_features(features=service, entity_rows=entity_rows).to_dict()
        return (clock() - t0) / 1e6

    def floor_call(keys):
        t0 = clock()
        if len(keys) == 1:
            replies = [client.hmget(keys[0], fields)]
        else:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, fields)
                replies = pipe.execute()
        ms = (clock() - t0) / 1e6
        if any(None in r for r in replies):  # every field of an existing clip is stored
            raise RuntimeError("HMGET of an existing clip returned a missing field")
        return ms

    for i in range(warmup + calls):
        if i == warmup:
            gc.collect()
            gc.freeze()
        picks = rng.integers(0, len(ids), k).tolist()
        entity_rows = [{"clip_id": ids[j]} for j in picks]
        keys = [hashes.keys[j] for j in picks]
        if i % 2:
            a, b = feast_call(entity_rows), floor_call(keys)
        else:
            b, a = floor_call(keys), feast_call(entity_rows)
        if i >= warmup:
            feast_ms.append(a)
            floor_ms.append(b)
    return np.array(feast_ms), np.array(floor_ms)


def profile_read(store, ids: list[str], k: int = 100, top: int = 25) -> str:
    """cProfile of one `get_online_features` call of `k` clips (for a person reading why
    the read misses its target); the top functions by cumulative and by own time."""
    import cProfile
    import io
    import pstats

    rows = [{"clip_id": c} for c in ids[:k]]
    service = store.get_feature_service(FEATURE_SERVICE)
    store.get_online_features(features=service, entity_rows=rows).to_dict()  # warm
    prof = cProfile.Profile()
    prof.enable()
    store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE), entity_rows=rows
    ).to_dict()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- training_set ------------------------------------------------------------------------
def _floor_asof(con, glob: str, entity: pa.Table) -> tuple[Timer, int]:
    """Bare DuckDB: ASOF LEFT JOIN of the entity rows against read_parquet of the feature
    files (the same feature columns), into an in-memory Arrow table."""
    cols = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    con.register("_floor_entity", entity)
    try:
        with Timer() as t:
            out = con.sql(
                f"SELECT e.*, {cols} FROM _floor_entity e "
                f"ASOF LEFT JOIN read_parquet({sql_str(glob)}) f "
                "ON e.clip_id = f.clip_id AND e.event_timestamp >= f.event_timestamp"
            ).to_arrow_table()
    finally:
        con.unregister("_floor_entity")
    return t, out.num_rows


def training_set(scale: float, tmp: Path) -> list[Record]:
    from models.features.training_set import compare, training_set_duckdb, training_set_feast

    n_clips = max(MIN_CLIPS, round(TRAINING_CLIPS * scale))
    home = tmp / "home"
    home.mkdir()
    log(f"training_set: making {n_clips:,} clips x {MOMENTS} moments ...")
    with Timer() as t:
        made = _in_subprocess(write_warehouse, str(home), n_clips)
    log(f"training_set: {made['rows']:,} feature rows in {made['partitions']} partitions,"
        f" in {t.seconds:.1f} s")  # fmt: skip
    entity = pq.read_table(home / "entity.parquet")
    n = entity.num_rows
    store = _feast_store(home, None)
    wh = Warehouse(home)
    glob = wh.glob("clip_features")
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)

    # the gate: DuckDB and Feast agree on a sample
    sample = entity.take(_sample(np.random.default_rng(5), n, COMPARE_SAMPLE))
    with Timer() as t:
        via_feast = training_set_feast(store, sample)
    via_duckdb = training_set_duckdb(con, wh, sample, FEATURE_COLUMNS)
    problems = compare(via_feast, via_duckdb)
    if problems or via_duckdb.num_rows != sample.num_rows:
        raise RuntimeError(f"Feast and DuckDB training sets differ: {problems[:5]}")
    if via_duckdb.column("duration_s").null_count:
        raise RuntimeError("entity rows without features: the sample matched nothing")
    log(f"training_set: {sample.num_rows:,} sample rows agree (Feast took {t.seconds:.2f} s)")
    del via_feast, via_duckdb

    floors, duckdbs = [], []
    for rep in range(REPEATS):  # interleaved, so a noisy moment hits both sides alike
        floor, rows = _floor_asof(con, glob, entity)
        with Timer() as t:
            out = training_set_duckdb(con, wh, entity, FEATURE_COLUMNS)
        if rows != n or out.num_rows != n:
            raise RuntimeError(f"{rows} floor rows, {out.num_rows} DuckDB rows of {n}")
        del out
        floors.append(floor)
        duckdbs.append(t)
        log(f"training_set: rep {rep + 1}: floor ASOF {floor.seconds:.2f} s ({floor.cpu:.2f} s CPU),"
            f" training_set_duckdb {t.seconds:.2f} s ({t.cpu:.2f} s CPU)")  # fmt: skip

    # Feast: on every row, unless a 200k-row run says that would take over FEAST_BUDGET_S
    feast_rows, feast_floor = n, min(f.seconds for f in floors)
    feast_t = None
    if n > FEAST_SUBSET_ROWS:
        part = entity.slice(0, FEAST_SUBSET_ROWS)
        with Timer() as t:
            out = training_set_feast(store, part)
        if out.num_rows != part.num_rows:
            raise RuntimeError(f"Feast returned {out.num_rows} rows of {part.num_rows}")
        del out
        estimate = t.seconds * n / FEAST_SUBSET_ROWS
        log(f"training_set: Feast on {FEAST_SUBSET_ROWS:,} rows: {t.seconds:.1f} s"
            f" ({t.cpu:.1f} s CPU); all {n:,} rows estimated {estimate:.0f} s")  # fmt: skip
        if estimate > FEAST_BUDGET_S:
            feast_t, feast_rows = t, FEAST_SUBSET_ROWS
            feast_floor = min(_floor_asof(con, glob, part)[0].seconds for _ in range(REPEATS))
    if feast_t is None:
        with Timer() as feast_t:
            out = training_set_feast(store, entity)
        if out.num_rows != n:
            raise RuntimeError(f"Feast returned {out.num_rows} rows of {n}")
        del out
        log(f"training_set: Feast on all {n:,} rows: {feast_t.seconds:.1f} s")
    con.close()

    peak = peak_rss_mb()
    common = {"benchmark": "training_set", "peak_rss_mb": peak, "scale": scale}
    target = f"<= {TRAINING_MAX_RATIO:g}x floor"
    suffix = "" if feast_rows == n else f"_{_k(feast_rows)}"
    records = []
    for metric, value, floor_metric, floor, rows, tgt in (
        ("duckdb_training_set_seconds", min(t.seconds for t in duckdbs),
         "asof_join_seconds", min(f.seconds for f in floors), n, target),
        ("duckdb_training_set_cpu_seconds", min(t.cpu for t in duckdbs),
         "asof_join_cpu_seconds", min(f.cpu for f in floors), n, target),
        (f"feast_training_set_seconds{suffix}", feast_t.seconds, f"asof_join_seconds{suffix}",
         feast_floor, feast_rows,
         f"{target} (expected to miss: the pipeline uses the DuckDB path, checked on a "
         "sample against Feast)"),
    ):  # fmt: skip
        ratio = ratio_to_floor(value, floor)
        records.append(
            Record(
                metric=metric,
                value=round(value, 4),
                unit="s",
                floor_metric=floor_metric,
                floor_value=round(floor, 4),
                ratio=round(ratio, 3),
                target=tgt,
                met=ratio <= TRAINING_MAX_RATIO,
                rows=rows,
                **common,
            )  # fmt: skip
        )
    return records


BENCHMARKS = {
    "online_write": online_write,
    "online_read": online_read,
    "training_set": training_set,
}
