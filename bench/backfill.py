"""Benchmark `backfill` (#21): 14 generated days through `clipflow backfill` with 2 run slots
(day D+1's data lane beside day D's model lane) against the same 14 days one by one through
`clipflow run`, both on the Iceberg profile (SeaweedFS on loopback, the catalog in a
throwaway PostgreSQL database, or a SQLite file when none answers; a throwaway Redis as
the online store, or `CLIPFLOW_REDIS`), each in a fresh home.

`DAYS` days of `CLIPS_PER_DAY` clips (times `scale`; the smoke scale runs 2 days), the
generator's defaults otherwise. Reported: both wall times and their ratio (the speed-up is
its inverse), the summed wall time of each lane's runs in the backfill (the longer lane
bounds the backfill from below), and what the backfill's runs cost beyond their steps.
Peak RSS: the largest of the processes this one waited for (a run, or `clipflow` itself).
Both must end with the same registry (versions, aliases, metrics) and the same rows in
every warehouse table (row counts and checksums), else the benchmark fails.

Target (#21): none; report the speed-up on 2 cores and say what limits it.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import Record, floor_record, log
from bench.feast_env import redis_server
from bench.iceberg_warehouse import catalog_db
from bench.s3_env import seaweedfs

DAYS, CLIPS_PER_DAY, USERS = 14, 20_000, 5_000
START = date(2026, 3, 1)
ROOT = Path(__file__).resolve().parent.parent
RUN_LINE = re.compile(
    r"^(\S+)\s+(data_job|model_job|training_job)\s+ok\s+([\d.]+)s\.\.\s*([\d.]+)s"
)


def _clipflow(args: list[str], env: dict[str, str], log_path: Path) -> float:
    t0 = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=7200)  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"clipflow {args[0]} failed: {log_path.read_text()[-3000:]}")
    return seconds


def _env(home: Path, s3, bucket_prefix: str, catalog: str, redis: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLIPFLOW_", "DAGSTER_", "MLFLOW_"))}  # fmt: skip
    return (
        env
        | s3.env()
        | {
            "AWS_ENDPOINT_URL_S3": s3.endpoint,
            "CLIPFLOW_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "CLIPFLOW_WAREHOUSE": f"s3://{s3.bucket}/{bucket_prefix}",
            "CLIPFLOW_ICEBERG_CATALOG": catalog,
            "CLIPFLOW_RUN_SLOTS": "2",
            "CLIPFLOW_REDIS": redis,
        }
    )


def _tables(env: dict[str, str]) -> dict[str, dict[str, float | int]]:
    """Per table and column of the profile's warehouse (read in a child process with its
    environment): the row count, and per column a checksum of its values (an order-free
    xor of hashes) or, for a floating-point column, its sum (DuckDB's parallel sums may add
    in another order: compared to 1e-9; in a nested column, its text with decimals cut to 6
    places). Wall-time columns are left out."""
    code = (
        "import json\n"
        "from models.core import settings\n"
        "from models.core.iceberg import warehouse_for\n"
        "wh = warehouse_for(settings.current())\n"
        "con = wh.connect()\n"
        "out = {}\n"
        "for t in sorted(wh.catalog.list_tables('clipflow')):\n"
        "    scan = wh.scan(t[-1])\n"
        "    cols = con.sql(f'DESCRIBE SELECT * FROM {scan}').fetchall()\n"
        "    def part(c, k):\n"
        "        if k.startswith(('DOUBLE', 'FLOAT')):\n"
        "            return f'sum(\"{c}\")'\n"
        "        if 'DOUBLE' in k or 'FLOAT' in k:  # nested: decimals cut to 6 places\n"
        "            return (f'bit_xor(hash(regexp_replace(CAST(\"{c}\" AS VARCHAR), '\n"
        "                    f\"'(\\\\d+[.]\\\\d{{6}})\\\\d*', '\\\\1', 'g')))\")\n"
        "        return f'bit_xor(hash(\"{c}\"))'\n"
        "    parts = ['count(*)'] + [\n"
        "        part(c, k) for c, k, *_ in cols if c not in ('detected_at', 'fetched_at')]\n"
        "    names = ['rows'] + [c for c, *_ in cols if c not in ('detected_at', 'fetched_at')]\n"
        "    got = con.sql(f'SELECT {\", \".join(parts)} FROM {scan}').fetchall()[0]\n"
        "    out[t[-1]] = dict(zip(names, got))\n"
        "print(json.dumps(out))\n"
    )
    return _child_json(code, env)


def _differences(a: dict, b: dict) -> list[str]:
    """`table.column` of every figure of `_tables` that differs (floats beyond 1e-9)."""
    out = sorted(set(a) ^ set(b))
    for table in sorted(set(a) & set(b)):
        for col in sorted(set(a[table]) | set(b[table])):
            x, y = a[table].get(col), b[table].get(col)
            if isinstance(x, float) and isinstance(y, float):
                same = math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) or (x != x and y != y)
            else:
                same = x == y
            if not same:
                out.append(f"{table}.{col}")
    return out


def _registry(env: dict[str, str]) -> list:
    code = (
        "import json\n"
        "from mlflow import MlflowClient\n"
        "from models.core import settings\n"
        "from models.core.names import MODEL_NAME\n"
        "uri = settings.current().mlflow_uri\n"
        "c = MlflowClient(tracking_uri=uri, registry_uri=uri)\n"
        "aliases = c.get_registered_model(MODEL_NAME).aliases\n"
        "out = sorted([int(v.version), sorted(a for a, x in aliases.items() if str(x) == v.version),\n"
        "              round(c.get_run(v.run_id).data.metrics['rmse'], 9)]\n"
        "             for v in c.search_model_versions(f\"name = '{MODEL_NAME}'\"))\n"
        "print(json.dumps(out))\n"
    )
    return _child_json(code, env)


def _child_json(code: str, env: dict[str, str]):
    """What `code`, run by a child Python with the profile's environment, prints last (JSON)."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=True)  # fmt: skip
    return json.loads(proc.stdout.splitlines()[-1])


def run(scale: float, tmp: Path) -> list[Record]:
    days = DAYS if scale >= 0.1 else 2
    clips = max(300, round(CLIPS_PER_DAY * scale))
    users = max(200, round(USERS * scale))
    landing = tmp / "landing"
    end = START + timedelta(days=days - 1)
    subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--out", str(landing),
                    "--days", str(days), "--start", START.isoformat(), "--clips-per-day",
                    str(clips), "--users", str(users), "--seed", "11"], cwd=ROOT,
                   check=True, capture_output=True, timeout=3600)  # fmt: skip
    log(f"backfill: {days} days of {clips:,} clips generated")
    span = ["--landing", str(landing), "--start", START.isoformat(), "--end", end.isoformat()]
    (tmp / "redis-a").mkdir()
    (tmp / "redis-b").mkdir()
    with (
        seaweedfs(tmp / "s3") as s3,
        catalog_db(tmp) as cat_a,
        catalog_db(tmp) as cat_b,
        redis_server(tmp / "redis-a") as redis_a,
        redis_server(tmp / "redis-b") as redis_b,
    ):
        seq_env = _env(tmp / "seq", s3, "seq", cat_a, redis_a.connection_string)
        par_env = _env(tmp / "par", s3, "par", cat_b, redis_b.connection_string)
        seq = _clipflow(["run", *span], seq_env, tmp / "seq.log")
        log(f"backfill: {days} sequential days (clipflow run) in {seq:.1f} s")
        par = _clipflow(["backfill", *span], par_env, tmp / "par.log")
        log(f"backfill: the same days as clipflow backfill (2 slots) in {par:.1f} s")
        lanes: dict[str, float] = {}
        for line in (tmp / "par.log").read_text().splitlines():
            m = RUN_LINE.match(line)
            if m:
                lanes[m[2]] = lanes.get(m[2], 0.0) + float(m[4]) - float(m[3])
        log(f"backfill: summed run time per lane {lanes}; {(tmp / 'par.log').read_text()[-400:]}")
        if _registry(seq_env) != _registry(par_env):
            raise RuntimeError("the backfill's registry differs from the sequential days'")
        differ = _differences(_tables(seq_env), _tables(par_env))
        if differ:
            raise RuntimeError(f"the backfill's tables differ from the sequential days': {differ}")
    longest = max(lanes.values(), default=par)
    peak = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)  # any run

    def record(metric, value, floor_metric, floor, target) -> Record:
        return floor_record(metric, value, "s", floor_metric, floor, target=target,
                            benchmark="backfill", rows=clips * days, peak_rss_mb=peak,
                            scale=scale)  # fmt: skip

    return [
        record("backfill_2_slots_seconds", par, "sequential_days_seconds", seq,
               f"report the speed-up ({days} days, 2 cores)"),
        record("backfill_longest_lane_seconds", longest, "backfill_2_slots_seconds", par,
               "the longer lane's summed runs: the bound on the backfill's wall time"),
    ]  # fmt: skip


BENCHMARKS = {"backfill": run}
