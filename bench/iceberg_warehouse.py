"""Benchmark `iceberg_warehouse` (#21): ingestion and `clip_features` of one day on the
Iceberg warehouse (Iceberg tables on S3, models/core/iceberg.py) beside the local Parquet
warehouse, in the same run, on the same data.

The storage: SeaweedFS's S3 server on loopback (`bench.s3_env.seaweedfs`, the server the
tests use), the Iceberg SQL catalog in a throwaway PostgreSQL database (`CLIPFLOW_TEST_POSTGRES`,
default the machine's 127.0.0.1:5432) or, when none answers, a SQLite file (said in the
log). The S3 server shares this machine's two cores with the benchmark: on a real object
store the upload and reads would run elsewhere.

* ingestion: the `ingest` benchmark's landing day (1M clips and 5M engagement rows, times
  `scale`), `ingest_day` of clips then engagement into a fresh local home and into a fresh
  Iceberg catalog, best of 2, interleaved.
* clip_features: `HISTORY_DAYS + 1` days of the `clip_features` benchmark's data (1M clips
  a day, times `scale`) in a local home and copied into the Iceberg tables (not timed); the
  creator state built the pipeline's way on each (not timed), then `build_clip_features` of
  the last day on each, best of 2, interleaved. Both must write the same rows (checksums).

Reads go through the warehouse's local file cache (`CLIPFLOW_ICEBERG_CACHE_GB`, default):
the files copied in were written by this process, so they are cached as on a machine that
ran the days before; a fresh worker downloads each file once first (not measured here).

Target (#21): each within 1.5x of the local backend in the same run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import clip_features as cf
from bench import ingest as ing
from bench.common import Record, Timer, floor_record, log, peak_rss_mb
from bench.s3_env import POSTGRES, postgres_database, seaweedfs
from models.core.contract import CLIPS, ENGAGEMENT
from models.core.iceberg import IcebergWarehouse
from models.core.warehouse import Warehouse
from models.features import creator_state
from models.features.clip_features import HISTORY_DAYS, build_clip_features
from models.ingest.day import ingest_day

MAX_RATIO = 1.5
LIMITS = {"threads": cf.THREADS, "memory_limit": cf.MEMORY_LIMIT}  # the pipeline's resource
TARGET = f"<= {MAX_RATIO:g}x the local warehouse"
REPEATS = 2


@contextmanager
def catalog_db(tmp: Path) -> Iterator[str]:
    """A fresh catalog database: PostgreSQL when it answers, else a SQLite file."""
    import psycopg2

    try:
        database = postgres_database("clipflow_bench_iceberg")
        url = database.__enter__()
    except psycopg2.OperationalError as e:
        log(f"iceberg_warehouse: PostgreSQL at {POSTGRES} does not answer ({e}): SQLite catalog")
        yield f"sqlite:///{tmp / f'catalog-{uuid.uuid4().hex}.db'}"
        return
    try:
        yield url
    finally:
        database.__exit__(None, None, None)


def _ingest(wh: Warehouse, landing: Path) -> Timer:
    con = wh.connect()
    with Timer() as t:
        for table in (CLIPS, ENGAGEMENT):
            res = ingest_day(con, wh, table, landing, ing.DAY, datetime.now(UTC))
            if res.rows_quarantined or res.files_quarantined:
                raise RuntimeError(f"{table.warehouse}: rows quarantined: {res.reasons}")
    return t


def _features(wh: Warehouse, day) -> tuple[float, tuple]:
    con = wh.connect()
    with Timer() as t:
        build_clip_features(con, wh, day)
    digest = con.execute(
        f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM {wh.partition_scan('clip_features', day)}"
    ).fetchall()[0]
    return t.seconds, digest


def _copy_in(local: Warehouse, ice: Warehouse, tables=("clips", "engagement", "labels")) -> None:
    con = ice.connect()
    for table in tables:
        for d in local.partitions(table):
            ice.write_partition(con, table, d, f"SELECT * FROM {local.partition_scan(table, d)}")


def run(scale: float, tmp: Path) -> list[Record]:
    n_clips = max(100, round(ing.CLIPS_AT_SCALE_1 * scale))
    per_day = max(cf.MIN_CLIPS, round(cf.CLIPS_PER_DAY * scale))
    days = HISTORY_DAYS + 1
    last = cf.FIRST + timedelta(days=days - 1)
    landing = tmp / "landing"
    files = cf.spawn(ing.make_landing, str(landing), n_clips, small=n_clips < 20_000)
    cf.spawn(cf.make_data, str(tmp / "fdata"), per_day, days, small=per_day < 20_000)
    log(f"iceberg_warehouse: landing of {n_clips:,} clips ({len(files['engagement'])} "
        f"engagement files), {days} days of {per_day:,} clips for the features")  # fmt: skip
    with seaweedfs(tmp / "s3") as s3:
        os.environ.update(s3.env() | {"AWS_ENDPOINT_URL_S3": s3.endpoint})
        ingest: dict[str, list[float]] = {"local": [], "iceberg": []}
        for rep in range(REPEATS):
            ingest["local"].append(
                _ingest(Warehouse(tmp / f"home-{rep}", **LIMITS), landing).seconds
            )
            with catalog_db(tmp) as uri:
                ice = IcebergWarehouse(tmp / f"ihome-{rep}", f"s3://{s3.bucket}/ingest-{rep}",
                                       catalog_uri=uri, **LIMITS)  # fmt: skip
                ingest["iceberg"].append(_ingest(ice, landing).seconds)
            log(f"iceberg_warehouse: rep {rep + 1} ingestion local {ingest['local'][-1]:.2f} s, "
                f"iceberg {ingest['iceberg'][-1]:.2f} s")  # fmt: skip
        local = Warehouse(tmp / "fdata", **LIMITS)
        with catalog_db(tmp) as uri:
            ice = IcebergWarehouse(tmp / "ifeat", f"s3://{s3.bucket}/features", catalog_uri=uri,
                                   **LIMITS)  # fmt: skip
            with Timer() as t_copy:
                _copy_in(local, ice)
            log(f"iceberg_warehouse: {days} days copied into Iceberg in {t_copy.seconds:.1f} s")
            for wh in (local, ice):
                creator_state.ensure(wh.connect(), wh, last - timedelta(days=1))
            feats: dict[str, list] = {"local": [], "iceberg": []}
            for rep in range(REPEATS):
                for name, wh in (("local", local), ("iceberg", ice)):
                    feats[name].append(_features(wh, last))
                log(f"iceberg_warehouse: rep {rep + 1} clip_features local "
                    f"{feats['local'][-1][0]:.2f} s, iceberg {feats['iceberg'][-1][0]:.2f} s")  # fmt: skip
            if feats["local"][-1][1] != feats["iceberg"][-1][1]:
                raise RuntimeError("clip_features differ between the local and Iceberg warehouses")
    peak, rows_f = peak_rss_mb(), int(feats["local"][-1][1][0])

    def record(metric, value, floor_metric, floor, rows) -> Record:
        return floor_record(metric, value, "s", floor_metric, floor, target=TARGET,
                            limit=MAX_RATIO, benchmark="iceberg_warehouse", rows=rows,
                            peak_rss_mb=peak, scale=scale)  # fmt: skip

    return [
        record("iceberg_ingest_seconds", min(ingest["iceberg"]), "local_ingest_seconds",
               min(ingest["local"]), n_clips * (1 + len(ing.WINDOWS_H))),
        record("iceberg_clip_features_seconds", min(r[0] for r in feats["iceberg"]),
               "local_clip_features_seconds", min(r[0] for r in feats["local"]), rows_f),
    ]  # fmt: skip


BENCHMARKS = {"iceberg_warehouse": run}
