"""An app reads clip_quality_v1 over HTTP from `feast serve`, started by `clipflow feast`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from support import clip_feature_rows, free_port

from feature_repo.online_write import latest_per_entity, write_online

pytestmark = pytest.mark.slow


def test_feast_serve_over_http_returns_the_online_values(sqlite_store, home, prefix):
    rows = clip_feature_rows(3, prefix)
    write_online(sqlite_store, rows)
    newest = {r["clip_id"]: r for r in latest_per_entity(rows).to_pylist()}
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "feast",
            "--home",
            str(home),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={**os.environ},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = json.dumps(
            {"feature_service": "clip_quality_v1", "entities": {"clip_id": sorted(newest)}}
        ).encode()
        deadline, reply = time.monotonic() + 90, None
        while reply is None and time.monotonic() < deadline:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/get-online-features",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    reply = json.loads(r.read())
            except OSError:
                time.sleep(1)
        assert reply is not None, "feast serve did not answer"
        names = reply["metadata"]["feature_names"]
        by_name = dict(zip(names, reply["results"], strict=True))
        for i, clip in enumerate(sorted(newest)):
            for feature in ["duration_s", "views_7d", "creator_label_mean"]:
                want = newest[clip][feature]
                got = by_name[feature]["values"][i]
                assert got == pytest.approx(want) if want is not None else got is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
