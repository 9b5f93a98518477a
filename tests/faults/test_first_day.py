"""`clipflow run` over a landing whose first day has no engagement exits 0 (#16, case 9):
no clip existed before that day, so an empty engagement table is expected, not an error.
On the old check ("row count > 0" for engagement every day) the day failed and the run
exited 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _clipflow(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPFLOW_HOME", "DAGSTER_HOME")}
    env.pop("CLIPFLOW_REDIS", None)  # the embedded online store: this is about ingestion
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip


def test_a_first_day_without_engagement_runs_green(tmp_path):
    landing, home = tmp_path / "landing", tmp_path / "home"
    r = _clipflow("generate", "--out", str(landing), "--days", "1", "--start", "2026-01-01",
                  "--clips-per-day", "150", "--users", "100", "--seed", "5", "--bad-row-rate", "0.05")  # fmt: skip
    assert r.returncode == 0, r.stderr
    shutil.rmtree(landing / "engagement" / "2026-01-01")
    r = _clipflow("run", "--landing", str(landing), "--home", str(home))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1/1 days succeeded" in r.stdout
    landed = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{landing}/clips/2026-01-01/*.parquet')"
    ).fetchall()[0][0]
    kept = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{home}/warehouse/clips/**/*.parquet')"
    ).fetchall()[0][0]
    quarantined = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{home}/warehouse/quarantine/**/*.parquet') "
        "WHERE table_name = 'clips'"
    ).fetchall()[0][0]
    assert kept > 0 and quarantined > 0 and kept + quarantined == landed  # nothing lost
