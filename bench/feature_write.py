"""The `online_write` benchmark (registered in `bench.feature_store`, which describes it).

The latest row of 1,000,000 clips (times `scale`) into Redis with
`feature_repo.online_write.write_online`, keys/s, best of 2, against a bare redis-py
pipelined `HSET` of the same keys, hash fields and value sizes; Feast's stock
`write_to_online_store` on a 100,000-clip subset for reference.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import Record, Timer, floor_record, log, peak_rss_mb, ratio_to_floor
from bench.feast_env import FeastHash, check_served, feast_hash, feast_store, redis_server
from bench.feature_data import count_label, in_subprocess, sample_rows, write_online_rows
from models.core.names import FEATURES_VIEW as FEATURE_VIEW

REPEATS = 2
WRITE_CLIPS = 1_000_000
STOCK_CLIPS = 100_000
PIPELINE = 5_000  # keys per pipeline, as feature_repo.online_write.DEFAULT_CHUNK
MIN_KEYS = 100
GATE_SAMPLE = 1_000  # rows written and read back before timing
CHECK_SAMPLE = 200  # rows read back after each timed write
WRITE_MAX_RATIO = 2.0


def _hset_values(store, rows: pa.Table, hashes: FeastHash) -> list[dict[bytes, bytes]]:
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
        in_subprocess(write_online_rows, str(tmp / "rows.parquet"), n, prefix)
    table = pq.read_table(tmp / "rows.parquet")
    log(f"online_write: {table.num_rows:,} rows x {table.num_columns} columns in {t.seconds:.1f} s")
    rng = np.random.default_rng(7)

    with redis_server(tmp) as server:
        store = feast_store(tmp / "home", server)
        ids = table.column("clip_id").combine_chunks()
        hashes = feast_hash(store, ids)
        pool = _hset_values(store, table.slice(0, min(n, 1_000)), hashes)
        log(
            f"online_write: Redis {server.connection_string} ({'own' if server.owned else 'shared'}),"
            f" {len(hashes.fields)} hash fields, key {len(hashes.keys[0])} bytes"
        )
        try:
            # the gate: what write_online writes, Feast reads back
            gate = table.take(sample_rows(rng, n, GATE_SAMPLE))
            res = write_online(store, gate)
            if res.method != "fast" or res.written != gate.num_rows:
                raise RuntimeError(f"write_online of the gate sample: {res}")
            check_served(store, gate)
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
                    check_served(store, table.take(sample_rows(rng, n, CHECK_SAMPLE)))
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
            check_served(store, subset.take(sample_rows(rng, n_stock, CHECK_SAMPLE)))
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
        records.append(
            floor_record(metric, value, unit, floor_metric, floor, target=target,
                         limit=WRITE_MAX_RATIO, higher_is_better=rate, rows=n, **common)
        )  # fmt: skip
    ratio = ratio_to_floor(stock_rate, floor_rate, higher_is_better=True)
    records.append(
        Record(
            metric=f"feast_stock_write_keys_per_s_{count_label(n_stock)}",
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
