"""`clipflow ui` serves the Dagster UI on the home, and SIGTERM leaves nothing running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import free_port

from pipelines.cli import ui_landing


def _processes_using(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if marker.encode() in (d / "environ").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def test_ui_after_make_demo_runs_on_the_demo_landing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLIPFLOW_LANDING_DIR", raising=False)
    monkeypatch.delenv("CLIPFLOW_HOME", raising=False)
    home = tmp_path / ".clipflow"
    assert ui_landing(None, None) is None  # no demo yet: the settings' default
    (home / "demo" / "landing").mkdir(parents=True)
    assert ui_landing(None, None) == home / "demo" / "landing"
    assert ui_landing(None, tmp_path / "mine") == tmp_path / "mine"  # asked for wins
    (tmp_path / "data" / "landing").mkdir(parents=True)
    assert ui_landing(None, None) is None  # a real landing dir in the default place wins
    monkeypatch.setenv("CLIPFLOW_LANDING_DIR", str(tmp_path / "env"))
    assert ui_landing(home, None) is None  # so does the environment


@pytest.mark.slow
def test_ui_serves_and_stops_its_whole_process_tree(tmp_path):
    home = tmp_path / "uihome"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPFLOW_HOME", "DAGSTER_HOME")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ui", "--home", str(home), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(1)
        assert body is not None and "dagster_webserver_version" in body
        assert len(_processes_using(str(home))) >= 2  # clipflow ui + dagster dev (+ children)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _processes_using(str(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_using(str(home)) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
