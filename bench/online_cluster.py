"""The `online_cluster` benchmark (#21): the online store on a 3-node Redis Cluster.

A throwaway cluster of three `redis-server` primaries on loopback (`feast_env.redis_cluster`,
`CLIPFLOW_REDIS=redis-cluster://...`), the latest rows of 500,000 clips (times `scale`):

* write: `write_online` (clipflow's fast writer: each batch split by node, one pipelined
  write per node, all nodes at once) into an empty cluster, best of 2, against the floor, a
  bare redis-py `ClusterPipeline` of `HSET key mapping` of the same keys, fields and value
  sizes (redis-py groups a pipeline's commands by node and writes to every node before it
  reads), `PIPELINE` keys per round; target <= 2x the floor;
* read: p50/p99 of `get_online_features(...).to_dict()` of 1/10/100 clips through
  clipflow's store (HMGETs grouped by node) and through Feast's stock store on the same
  cluster (`CLIPFLOW_FEAST_STOCK_READ=1`), beside bare pipelined `HMGET`s; target: p99 no
  worse than stock.

Every timed write is followed by a read-back of a sample through Feast (values checked).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import Record, Timer, floor_record, log, peak_rss_mb
from bench.feast_env import RedisServer, check_served, feast_hash, feast_store, redis_cluster
from bench.feature_data import in_subprocess, sample_rows, write_online_rows
from bench.feature_read import ENTITY_COUNTS, _read_latencies
from bench.feature_write import _floor_hset, _hset_values

REPEATS = 2
CLIPS = 500_000
MIN_KEYS = 100
CALLS = 1_000
MIN_CALLS = 20
CHECK_SAMPLE = 200
WRITE_MAX_RATIO = 2.0


def run(scale: float, tmp: Path) -> list[Record]:
    from feature_repo.online_write import write_online

    n = max(MIN_KEYS, round(CLIPS * scale))
    calls = max(MIN_CALLS, round(CALLS * min(1.0, scale)))
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    log(f"online_cluster: making the latest rows of {n:,} clips ...")
    in_subprocess(write_online_rows, str(tmp / "rows.parquet"), n, prefix)
    table = pq.read_table(tmp / "rows.parquet")
    rng = np.random.default_rng(5)
    floors, fasts = [], []
    with redis_cluster(tmp) as ports:
        server = RedisServer(
            "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports), owned=True
        )
        store = feast_store(tmp / "home", server)
        if store.config.online_store.redis_type != "redis_cluster":
            raise RuntimeError("the store is not on the cluster")
        ids = table.column("clip_id").combine_chunks()
        hashes = feast_hash(store, ids)
        pool = _hset_values(store, table.slice(0, min(n, 1_000)), hashes)
        with server.client() as client:
            for rep in range(REPEATS):  # interleaved, on an emptied cluster each time
                # bare redis-py: the same pipelined HSETs, on a ClusterPipeline
                floors.append(_floor_hset(client, hashes.keys, pool))
                client.flushall()
                with Timer() as t:
                    res = write_online(store, table)
                fasts.append(t)
                if res.written != n or res.method != "fast":
                    raise RuntimeError(f"write_online wrote {res}, expected {n} keys (fast)")
                check_served(store, table.take(sample_rows(rng, n, CHECK_SAMPLE)))
                keys = sum(node.redis_connection.dbsize() for node in client.get_primaries())
                if keys != n:
                    raise RuntimeError(f"the cluster holds {keys} keys, {n} written")
                log(f"online_cluster: rep {rep + 1}: floor ClusterPipeline HSET "
                    f"{floors[-1].seconds:.2f} s, write_online {t.seconds:.2f} s "
                    f"({t.cpu:.2f} s CPU)")  # fmt: skip
                if rep < REPEATS - 1:
                    client.flushall()
            os.environ["CLIPFLOW_FEAST_STOCK_READ"] = "1"
            try:
                stock = feast_store(tmp / "home", server)
            finally:
                os.environ.pop("CLIPFLOW_FEAST_STOCK_READ")
            if stock.config.online_store.type != "redis":
                raise RuntimeError("the stock twin is not Feast's RedisOnlineStore")
            id_list = ids.to_pylist()
            latencies = {}
            for k in ENTITY_COUNTS:
                for name, s in (("clipflow", store), ("stock", stock)):
                    ms, floor_ms = _read_latencies(s, client, hashes, id_list, k, calls,
                                                   max(5, calls // 10), rng)  # fmt: skip
                    latencies[(name, k)] = ms
                    latencies[("hmget", k)] = floor_ms
                log(f"online_cluster: {k} clips: p99 clipflow "
                    f"{np.percentile(latencies[('clipflow', k)], 99):.3f} ms, stock "
                    f"{np.percentile(latencies[('stock', k)], 99):.3f} ms, HMGET "
                    f"{np.percentile(latencies[('hmget', k)], 99):.3f} ms")  # fmt: skip
    peak = peak_rss_mb()
    common = {"benchmark": "online_cluster", "peak_rss_mb": peak, "scale": scale}
    floor_s, fast_s = min(t.seconds for t in floors), min(t.seconds for t in fasts)
    records = [
        floor_record("cluster_write_seconds", fast_s, "s", "cluster_pipeline_hset_seconds",
                     floor_s, target=f"<= {WRITE_MAX_RATIO:g}x floor", limit=WRITE_MAX_RATIO,
                     rows=n, **common),
        floor_record("cluster_write_keys_per_s", n / fast_s, "keys/s",
                     "cluster_pipeline_hset_keys_per_s", n / floor_s,
                     target=f"<= {WRITE_MAX_RATIO:g}x floor", limit=WRITE_MAX_RATIO,
                     higher_is_better=True, rows=n, **common),
    ]  # fmt: skip
    for k in ENTITY_COUNTS:
        ours = float(np.percentile(latencies[("clipflow", k)], 99))
        stock_p99 = float(np.percentile(latencies[("stock", k)], 99))
        records.append(
            floor_record(f"cluster_read_p99_ms_{k}", ours, "ms", f"stock_cluster_p99_ms_{k}",
                         stock_p99, target="p99 <= Feast's stock cluster store", limit=1.0,
                         rows=calls, **common)  # fmt: skip
        )
        records.append(
            floor_record(f"cluster_hmget_p99_ms_{k}", float(np.percentile(
                latencies[("hmget", k)], 99)), "ms", f"cluster_hmget_p99_ms_{k}",
                float(np.percentile(latencies[("hmget", k)], 99)),
                target="reference (bare pipelined HMGET)", rows=calls, **common)  # fmt: skip
        )
    return records


BENCHMARKS = {"online_cluster": run}
