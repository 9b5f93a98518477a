"""Where the feature-store benchmarks run: Redis, and the Feast store of a fresh home.

Every benchmark runs on a fresh clipflow home (`CLIPFLOW_HOME` under the scratch dir, set
before `feature_repo` is imported) with the repo applied (`feast_store`). The online
benchmarks start their own throwaway `redis-server` on a free loopback port (no
persistence) and stop it at the end, or use `CLIPFLOW_REDIS` when it is set (then only this
run's keys, which carry a unique clip_id prefix, are deleted, never the whole database).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from models.core.names import FEATURE_SERVICE
from models.core.names import FEATURES_VIEW as FEATURE_VIEW
from models.core.redis_url import redis_client


@dataclass
class RedisServer:
    connection_string: str
    owned: bool  # started here: may be flushed; else only our keys are deleted

    def client(self):
        return redis_client(self.connection_string)

    def clear(self, prefix: str) -> None:
        """Empty the store (ours) or delete the keys of this run's clips (a shared one)."""
        with self.client() as client:
            if self.owned:
                client.flushall()
                return
            batch = []
            for key in client.scan_iter(match=f"*{prefix}*".encode(), count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)


def stop_process(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`; waits for the end either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(scratch: Path) -> Iterator[RedisServer]:
    """`CLIPFLOW_REDIS` when set, else a throwaway `redis-server` on a free loopback port."""
    configured = os.environ.get("CLIPFLOW_REDIS")
    if configured:
        yield RedisServer(configured, owned=False)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install Redis or set CLIPFLOW_REDIS")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--daemonize", "no", "--logfile", "", "--dir", str(scratch)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = RedisServer(f"127.0.0.1:{port}", owned=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with server.client() as client:
                    client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"could not start redis-server on port {port}") from None
                time.sleep(0.05)
        yield server
    finally:
        stop_process(proc)


def free_port_pair() -> int:
    """A free loopback port whose +10000 twin (a Redis Cluster bus, a gRPC port) is free too."""
    for _ in range(50):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@contextmanager
def redis_cluster(scratch: Path, nodes: int = 3) -> Iterator[list[int]]:
    """A throwaway Redis Cluster of `nodes` primaries (no replicas, no persistence) on
    loopback, created with `redis-cli --cluster create`; its ports. Ready when every node
    says `cluster_state:ok`; the nodes are stopped at the end."""
    import redis

    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise RuntimeError("redis-server/redis-cli not found: install Redis "
                           "(apt-get install redis-server)")  # fmt: skip
    ports = [free_port_pair() for _ in range(nodes)]
    procs = []
    try:
        for port in ports:
            (scratch / f"cluster-{port}").mkdir(parents=True)
            procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled",
                 "yes", "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly",
                 "no", "--daemonize", "no", "--logfile", ""],
                cwd=scratch / f"cluster-{port}", stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ))  # fmt: skip

        def states() -> list[bool]:
            out = []
            for port in ports:
                try:
                    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as c:
                        info = c.execute_command("CLUSTER", "INFO").decode()
                except redis.RedisError:
                    info = ""
                out.append("cluster_state:ok" in info.split())
            return out

        deadline = time.monotonic() + 10
        while not all(_answers(p) for p in ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"could not start Redis Cluster nodes on {ports}")
            time.sleep(0.05)
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if create.returncode:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout[-500:]}")
        deadline = time.monotonic() + 30
        while not all(states()):  # every node agrees that every slot is served
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster on {ports} did not become ok")
            time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            stop_process(proc)


def _answers(port: int) -> bool:
    import redis

    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as c:
            return bool(c.ping())
    except redis.RedisError:
        return False


def feast_store(home: Path, redis: RedisServer | None):
    """The applied Feast store of a fresh home (the environment is set before the repo's
    modules are imported: data sources read the home at import)."""
    from models.core.settings import quiet_telemetry

    quiet_telemetry()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["CLIPFLOW_HOME"] = str(home)
    if redis is not None:
        os.environ["CLIPFLOW_REDIS"] = redis.connection_string
    else:
        os.environ.pop("CLIPFLOW_REDIS", None)
    from feature_repo import config

    store = config.feature_store()
    config.apply(store)
    return store


@dataclass(frozen=True)
class FeastHash:
    """Where Feast keeps the clips' features in Redis (`feature_repo.redis_layout`)."""

    keys: list[bytes]  # per clip, in table order
    fields: list[bytes]  # mmh3 of `<view>:<feature>` in feature order, then `_ts:<view>`
    names: list[str]  # the features, in the order of `fields`


def feast_hash(store, ids: pa.Array) -> FeastHash:
    """The Redis layout of the clips `ids` (their keys as the writer and the reader build
    them, checked on a sample against Feast's own entity-key serialization)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from feature_repo.redis_layout import ViewFields, proto_keys, string_keys

    keys = string_keys("clip_id", ids.to_pylist(), store.config)
    for i in sorted({0, len(keys) // 2, len(keys) - 1}):
        ek = EntityKey(join_keys=["clip_id"], entity_values=[Value(string_val=ids[i].as_py())])
        if proto_keys([ek], store.config) != [keys[i]]:
            raise RuntimeError(f"Redis key of {ids[i]} differs from Feast's")
    layout = ViewFields.of(store.get_feature_view(FEATURE_VIEW), store.config)
    return FeastHash(keys, [*layout.fields, layout.ts_field], list(layout.features))


def check_served(store, rows: pa.Table) -> None:
    """`rows` (latest per clip) read back through the Feast SDK with exactly their values."""
    from feature_repo.feature_views import CLIP_FEATURE_NAMES

    ids = rows.column("clip_id").to_pylist()
    got = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE),
        entity_rows=[{"clip_id": c} for c in ids],
    ).to_dict()
    want = rows.select(["clip_id", *CLIP_FEATURE_NAMES]).to_pydict()
    for name, values in want.items():
        served = got.get(name) or [None] * len(ids)
        if served != values:
            i = next((j for j, v in enumerate(values) if j >= len(served) or served[j] != v), 0)
            raise RuntimeError(
                f"online store serves other values than written: {name} of {ids[i]}: "
                f"{served[i] if i < len(served) else None!r} != {values[i]!r}"
            )
