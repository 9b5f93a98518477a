"""End to end through the CLI: generate a landing dir, run it, continue later."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

TABLES = ["clips", "engagement", "labels", "assignments", "user_metrics", "quarantine"]


def clipflow(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("CLIPFLOW_HOME", None)
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def snapshot(home: Path) -> dict[str, list]:
    con = duckdb.connect()
    out = {}
    for t in TABLES:
        glob = f"{home}/warehouse/{t}/**/*.parquet"
        cols = "* EXCLUDE (detected_at)" if t == "quarantine" else "*"
        out[t] = con.execute(
            f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning=true, "
            "union_by_name=true) ORDER BY ALL"
        ).fetchall()
    return out


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    r = clipflow(
        "generate",
        "--out",
        str(out),
        "--days",
        "3",
        "--start",
        "2026-02-01",
        "--clips-per-day",
        "200",
        "--users",
        "150",
        "--seed",
        "11",
        "--bad-row-rate",
        "0.02",
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def one_run(landing, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """(home, result) of one `clipflow run` of the whole landing, a corrupt file included
    (shared by the tests below: a 3-day run is the slow part)."""
    (landing / "clips" / "zz-corrupt.parquet").write_bytes(b"not parquet at all")
    home = tmp_path_factory.mktemp("one") / "home"
    return home, clipflow("run", "--landing", str(landing), "--home", str(home))


def test_generate_then_run_end_to_end(one_run):
    home, r = one_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 day(s) 2026-02-01..2026-02-03" in r.stdout
    assert "3/3 days succeeded" in r.stdout
    for day in ["2026-02-01", "2026-02-02", "2026-02-03"]:
        # #20: each day's line says its wall time and its own peak RSS
        line = re.search(rf"^{day}  ok  \((\d+\.\d)s, peak RSS ([\d,]+) MB, run \w{{8}}\)$",
                         r.stdout, re.MULTILINE)  # fmt: skip
        assert line, r.stdout
        assert 100 < int(line.group(2).replace(",", "")) < 16_000
    snap = snapshot(home)
    assert len(snap["clips"]) > 500 and len(snap["engagement"]) > 500
    reasons = {row[2] for row in snap["quarantine"]}
    assert any(x.startswith("unreadable file") for x in reasons)
    assert any("must be" in x for x in reasons)
    # the runs are in the Dagster instance under the home, for `clipflow ui`
    assert (home / "dagster" / "dagster.yaml").exists()
    assert any((home / "dagster").rglob("*.db"))


def test_day_by_day_runs_end_in_the_same_state_as_one_backfill(landing, one_run, tmp_path):
    (one, r), many = one_run, tmp_path / "many"
    assert r.returncode == 0, r.stdout + r.stderr
    for day in ["2026-02-01", "2026-02-02", "2026-02-03"]:
        r = clipflow(
            "run", "--landing", str(landing), "--home", str(many), "--start", day, "--end", day
        )
        assert r.returncode == 0, r.stdout + r.stderr
    assert snapshot(one) == snapshot(many)


def test_run_reports_a_missing_landing_dir(tmp_path):
    r = clipflow("run", "--landing", str(tmp_path / "nope"), "--home", str(tmp_path / "h"))
    assert r.returncode == 2 and "landing directory not found" in r.stderr
