"""Process helpers of the fault suite: `clipflow` as a subprocess, a throwaway
`redis-server` and PostgreSQL cluster that a test may kill and restart, the Dagster run log
of a home (to kill a run when a step starts), and checksums of every warehouse partition."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# an upper bound on one `clipflow run` of these small landings (a minute on 2 idle cores;
# far longer on a loaded machine): a limit against hanging, never a timed assertion
RUN_S = 1800
SLOW = [pytest.mark.slow, pytest.mark.timeout(4 * RUN_S)]


def clipflow_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a `clipflow` subprocess: none of the caller's CLIPFLOW_*, DAGSTER_*
    or MLflow settings (the embedded online store unless `CLIPFLOW_REDIS` is given)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLIPFLOW_", "DAGSTER_", "MLFLOW_"))}  # fmt: skip
    if home is not None:
        env |= {"CLIPFLOW_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    return env | extra


def clipflow(
    *args: str, env: dict[str, str], timeout: float = RUN_S
) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_clipflow(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`clipflow ARGS` in the background, its output in `log`."""
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def generate(landing: Path, days: int, start: str, clips: int = 150, users: int = 100) -> None:
    r = clipflow("generate", "--out", str(landing), "--days", str(days), "--start", start,
                 "--clips-per-day", str(clips), "--users", str(users), "--seed", "5",
                 "--bad-row-rate", "0.05", env=clipflow_env())  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]


def partition_files(home: Path) -> dict[str, Path]:
    """Every file of every partition of the warehouse, by its path under `warehouse/`."""
    root = home / "warehouse"
    return {str(p.relative_to(root)): p for p in sorted(root.glob("*/ds=*/*")) if p.is_file()}


def checksums(home: Path) -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in partition_files(home).items()}


def newest_rows(
    home: Path, table: str, columns: list[str], where: str = "", warehouse=None
) -> dict[str, dict]:
    """Each clip's newest row of a warehouse table (read straight from its files, not through
    clipflow; with `warehouse`, an Iceberg one, its scan), {clip_id: {column: value}};
    `where` is a constant SQL filter of the test's."""
    import duckdb

    source = f"read_parquet('{home}/warehouse/{table}/*/*.parquet')"
    con = duckdb.connect()
    if warehouse is not None:
        source, con = warehouse.scan(table), warehouse.connect()
    cols = ", ".join(f'"{c}"' for c in columns)
    rows = con.sql(
        f"SELECT clip_id, {cols} FROM {source} {where} "
        "QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY event_timestamp DESC) = 1"
    ).fetchall()
    return {r[0]: dict(zip(columns, r[1:], strict=True)) for r in rows}


def leftovers(home: Path) -> list[str]:
    """What unfinished or replaced writes left in the warehouse (`_tmp`)."""
    tmp = home / "warehouse" / "_tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def started_steps(instance, day: str) -> list[str]:
    """The steps of the run of partition `day` that have started (the Dagster run log)."""
    import dagster as dg

    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": day}))
    steps = []
    for run in runs:
        logs = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        steps += [e.dagster_event.step_key for e in logs]
    return steps


def wait_for_step(home: Path, day: str, step: str, proc: subprocess.Popen, timeout: float) -> bool:
    """Block until the run log of `home` shows `step` of `day` started (True), or `proc`
    ended or `timeout` passed (False)."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    while not (home / "dagster" / "storage").is_dir():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if step in started_steps(instance, day):
                return True
            time.sleep(0.05)
        return False
    finally:
        instance.dispose()


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def need(binary: str | Path) -> str:
    """The path of `binary`; skipped where missing, failed under CI=true."""
    found = shutil.which(str(binary))
    if found is None:
        if IN_CI:
            pytest.fail(f"{binary} not found")
        pytest.skip(f"{binary} not found")
    return found


class RedisProcess:
    """A throwaway `redis-server` on one loopback port, which a test may kill -9 and start
    again on the same port (no persistence: a restart is an empty store)."""

    def __init__(self) -> None:
        self.binary = need("redis-server")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except Exception:  # not up yet
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill9(self.proc)


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster (initdb + pg_ctl, run as the `postgres` user) on a
    free loopback port, with trust auth, in its own temporary folder (pytest's are private
    to root): a test may stop and start it; `remove` stops it and deletes the folder."""

    def __init__(self) -> None:
        need(PG_BIN / "initdb")
        self.root = Path(tempfile.mkdtemp(prefix="clipflow-pg-"))
        self.port, self.data = free_port(), self.root / "data"
        shutil.chown(self.root, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _pg(self, tool: str, *args: str) -> None:
        r = subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, f"{tool}: {r.stdout[-2000:]} {r.stderr[-2000:]}"

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                 "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2
        from psycopg2 import sql

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname="postgres", connect_timeout=5)  # fmt: skip
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        con.close()
        return self.url(name)

    def query(self, database: str, text: str) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                              connect_timeout=5) as con, con.cursor() as cur:  # fmt: skip
            cur.execute(text)
            return cur.fetchall()
