"""Smoke test of the benchmark harness: `python -m bench` runs and writes sane records.

It checks the plumbing only (exit status, record keys and types). It never looks at the
figures or at `met`: those depend on the machine and are for people, not for CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"benchmark", "metric", "value", "unit", "floor_metric", "floor_value", "ratio",
        "target", "met", "rows", "peak_rss_mb"}  # fmt: skip


def test_bench_ingest_smoke(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "ingest", "--scale", "0.001", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    files = sorted(out.glob("ingest-*.jsonl"))
    assert len(files) == 1, list(out.iterdir())
    records = [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]
    assert records
    assert "ingest_seconds" in {r["metric"] for r in records}
    for r in records:
        missing = KEYS - r.keys()
        assert not missing, (missing, r)
        assert r["benchmark"] == "ingest"
        for k in ("metric", "unit", "floor_metric", "target"):
            assert isinstance(r[k], str) and r[k], (k, r)
        for k in ("value", "floor_value", "ratio", "peak_rss_mb"):
            assert isinstance(r[k], int | float) and not isinstance(r[k], bool), (k, r)
        assert r["value"] > 0 and r["floor_value"] > 0 and r["ratio"] > 0, r
        assert r["peak_rss_mb"] > 0, r
        assert isinstance(r["rows"], int) and r["rows"] > 0, r
        assert isinstance(r["met"], bool), r
    assert "ingest_seconds" in proc.stdout  # the printed table
