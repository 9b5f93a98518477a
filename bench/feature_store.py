"""Benchmarks of the Feast feature store: `online_write`, `online_read`, `training_set`.

The data: synthetic rows of the warehouse table `clip_features` (`bench.feature_data`,
made in a spawned process and handed over as Parquet). Every benchmark runs on a fresh
clipflow home with the repo applied; the online ones on their own throwaway `redis-server`
or on `CLIPFLOW_REDIS` (`bench.feast_env`). The cases are in `bench.feature_write`
(`online_write`), `bench.feature_read` (`online_read`) and here (`training_set`); this
module registers all three.

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

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import Record, Timer, floor_record, log, peak_rss_mb
from bench.feast_env import feast_store
from bench.feature_data import (
    MOMENTS,
    TOPICS,
    count_label,
    in_subprocess,
    make_clip_features,
    sample_rows,
    write_warehouse,
)
from bench.feature_read import online_read
from bench.feature_write import online_write
from models.core.warehouse import Warehouse, connect, sql_str
from models.features.clip_features import FEATURE_COLUMNS

# the data names bench.model, bench.drift and tests/models/monitoring import from here
__all__ = ["BENCHMARKS", "MOMENTS", "TOPICS", "make_clip_features", "training_set"]

REPEATS = 2
THREADS, MEMORY_LIMIT = 2, "4GB"  # assets.resources.ClipflowWarehouse defaults

TRAINING_CLIPS = 125_000  # x 8 moments = 1,000,000 entity rows and feature rows
FEAST_SUBSET_ROWS = 200_000
FEAST_BUDGET_S = 60.0
COMPARE_SAMPLE = 10_000
MIN_CLIPS = 13  # >= 100 rows
TRAINING_MAX_RATIO = 3.0


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
        made = in_subprocess(write_warehouse, str(home), n_clips)
    log(f"training_set: {made['rows']:,} feature rows in {made['partitions']} partitions,"
        f" in {t.seconds:.1f} s")  # fmt: skip
    entity = pq.read_table(home / "entity.parquet")
    n = entity.num_rows
    store = feast_store(home, None)
    wh = Warehouse(home)
    glob = wh.glob("clip_features")
    con = connect(threads=THREADS, memory_limit=MEMORY_LIMIT)

    # the gate: DuckDB and Feast agree on a sample
    sample = entity.take(sample_rows(np.random.default_rng(5), n, COMPARE_SAMPLE))
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
    suffix = "" if feast_rows == n else f"_{count_label(feast_rows)}"
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
        records.append(
            floor_record(metric, value, "s", floor_metric, floor, target=tgt,
                         limit=TRAINING_MAX_RATIO, rows=rows, **common)
        )  # fmt: skip
    return records


BENCHMARKS = {
    "online_write": online_write,
    "online_read": online_read,
    "training_set": training_set,
}
