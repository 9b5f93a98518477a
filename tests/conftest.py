"""Shared fixtures: a real Redis, temp clipflow homes, and landing-file writers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support import Landing, free_port

from models.core.settings import quiet_telemetry

quiet_telemetry()

IN_CI = os.environ.get("CI", "").lower() == "true"


def _ping(host: str, port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=host, port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server():
    """A real Redis: `CLIPFLOW_REDIS` if set, else a throwaway `redis-server` on a free
    loopback port. Outside CI a missing Redis skips; under CI=true it fails."""
    configured = os.environ.get("CLIPFLOW_REDIS")
    if configured:  # either form, TLS included (models/core/redis_url.py)
        import redis

        from models.core.redis_url import parse, redis_client

        target = parse(configured)
        try:
            with redis_client(configured, socket_timeout=2, socket_connect_timeout=2) as c:
                c.ping()
        except (redis.RedisError, OSError) as e:
            pytest.fail(f"CLIPFLOW_REDIS is set but does not answer PING ({type(e).__name__})")
        yield {"host": target.host, "port": target.port, "connection_string": configured,
               "owned": False, "cluster": target.cluster,
               "client": lambda **kw: redis_client(configured, **kw)}  # fmt: skip
        return
    binary = shutil.which("redis-server")
    if binary is None:
        msg = (
            "redis-server not found: install Redis (apt-get install redis-server) "
            "or set CLIPFLOW_REDIS=host:port"
        )
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _ping("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"could not start redis-server on port {port}")
        time.sleep(0.05)
    yield {
        "host": "127.0.0.1",
        "port": port,
        "connection_string": f"127.0.0.1:{port}",
        "owned": True,
        "cluster": False,
        "client": lambda **kw: redis.Redis(host="127.0.0.1", port=port, **kw),
    }
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real 3-node Redis Cluster (no replicas) of throwaway `redis-server`s on loopback,
    created with `redis-cli --cluster create` (`bench.feast_env.redis_cluster`); once per
    test session (per xdist worker). Outside CI a missing redis-server skips; under CI=true
    it fails."""
    from redis.cluster import ClusterNode, RedisCluster

    from bench.feast_env import redis_cluster as start_cluster

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        msg = "redis-server/redis-cli not found: install Redis (apt-get install redis-server)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    with start_cluster(tmp_path_factory.mktemp("redis-cluster")) as ports:
        nodes = ",".join(f"127.0.0.1:{p}" for p in ports)

        def client(**kw):
            return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports],
                                socket_timeout=5, **kw)  # fmt: skip

        yield {"host": "127.0.0.1", "port": ports[0], "ports": ports, "cluster": True,
               "connection_string": f"redis-cluster://{nodes}", "client": client}  # fmt: skip


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh clipflow home, exported as CLIPFLOW_HOME (and DAGSTER_HOME under it)."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("CLIPFLOW_HOME", str(h))
    monkeypatch.setenv("DAGSTER_HOME", str(h / "dagster"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (h / "dagster").mkdir()
    (h / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return h


@pytest.fixture
def landing(tmp_path) -> Landing:
    root = tmp_path / "landing"
    root.mkdir()
    return Landing(root)


# The longest files first (measured: each runs several `clipflow` processes or a browser),
# then the other `slow` files, then the rest: `-n 2 --dist loadfile --no-loadscope-reorder`
# hands files out in this order (without the flag xdist orders files by their test count,
# which sent the one-test fault files last), so the short files fill in at the end and
# neither worker is left alone with a long one (a hint only; every test runs either way).
LONGEST = ("test_ui_browser.py", "test_bench_smoke.py", "test_cli.py", "test_cluster_run.py",
           "test_redis_killed.py",
           "test_postgres_restart.py", "test_kill_rerun.py", "test_full_disk.py",
           "test_monitoring_assets.py", "test_production_instance.py", "test_bad_numbers.py")  # fmt: skip


def pytest_collection_modifyitems(session, config, items) -> None:
    slow = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        name = item.path.name
        if name in LONGEST:
            return (0, LONGEST.index(name))
        return (1, 0) if item.path in slow else (2, 0)

    items.sort(key=rank)  # stable: a file's tests stay together, in their order
