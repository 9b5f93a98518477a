"""A full disk while writing a partition (#16): a real full file system, not an injected
error. The warehouse (`<home>/warehouse`) is a small tmpfs mounted for the test (we run as
root; where `mount` is refused the tests skip, and fail under CI=true); the rest of the home
(the Dagster run log, MLflow, Feast) stays on the ordinary disk, as when the warehouse has
its own volume.

The write fails with an error naming the table and partition, the partition in place stays
whole (same bytes), nothing half-written is visible or left in `_tmp`, and once space
returns a re-run succeeds. Before this, the error named only a scratch file
(`_tmp/<id>/part-0.parquet: No space left on device`) and the half-written scratch folder
stayed until the next run."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faults.fault_support import (
    IN_CI,
    RUN_S,
    checksums,
    clipflow,
    clipflow_env,
    generate,
    leftovers,
    partition_files,
)

from models.core.warehouse import PartitionWriteError, Warehouse
from models.core.writer_lock import writer_lock

DS = "2026-01-01"


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted as the warehouse of the home `tmp_path/home`, unmounted after."""
    mnt = tmp_path / "home" / "warehouse"
    mnt.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    if r.returncode != 0:
        why = f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root with CAP_SYS_ADMIN"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30, check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the file system is full; returns it. Unbuffered: a
    buffered file keeps the bytes a full disk refused and fails again on close."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return ballast


def test_a_write_that_fills_the_disk_names_the_partition_and_keeps_the_old_one(small_disk):
    wh = Warehouse(small_disk.parent)
    wh.write("clip_scores", DS, pa.table({"score": [0.25, 0.5]}))
    before = checksums(wh.home)
    big = pa.table({"score": np.random.default_rng(0).random(400_000)})  # ~3 MiB > the disk
    with pytest.raises(PartitionWriteError) as err:
        wh.write("clip_scores", DS, big)
    assert err.value.errno == errno.ENOSPC
    assert f"partition ds={DS} of table clip_scores" in str(err.value)
    assert "disk is full" in str(err.value) and "unchanged" in str(err.value)
    assert checksums(wh.home) == before  # the old partition, whole
    assert wh.read("clip_scores", DS).column("score").to_pylist() == [0.25, 0.5]
    assert leftovers(wh.home) == []  # the half-written scratch file is gone at once
    wh.write("clip_scores", DS, big.slice(0, 1000))  # room again: a write succeeds
    assert wh.read("clip_scores", DS).num_rows == 1000


def test_the_next_lock_holder_removes_a_manifest_write_cut_short(tmp_path):
    root = tmp_path / "warehouse"
    partial = root / "_manifest" / "clips" / ".0123abcd.tmp"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"PAR1 half")
    kept = partial.with_name("0123abcd.parquet")
    kept.write_bytes(b"a whole file")
    with writer_lock(root, "next run") as done:
        pass
    assert not partial.exists() and kept.exists()
    assert done == ["removed unfinished manifest write clips/.0123abcd.tmp"]


@pytest.mark.slow
@pytest.mark.timeout(4 * RUN_S)
def test_clipflow_run_on_a_full_disk_fails_naming_the_partition_then_reruns(small_disk, tmp_path):
    landing, home = tmp_path / "landing", small_disk.parent
    generate(landing, days=1, start=DS)
    env = clipflow_env(home)
    r = clipflow("run", "--landing", str(landing), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    before = checksums(home)
    assert len(before) >= 8
    rejected = {k: pq.read_table(p) for k, p in partition_files(home).items()
                if k.startswith("quarantine/")}  # fmt: skip

    ballast = fill(small_disk)
    r = clipflow("run", "--landing", str(landing), env=env)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    failed = [line for line in r.stdout.splitlines() if " FAILED " in line and "s  " in line]
    assert failed, r.stdout[-3000:]
    assert all(f"could not write partition ds={DS} of table " in line for line in failed), failed
    assert all("no space left on device (the disk is full" in line for line in failed), failed
    assert checksums(home) == before  # every partition whole, none half-written
    assert leftovers(home) == []

    ballast.unlink()
    r = clipflow("run", "--landing", str(landing), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert leftovers(home) == []
    after = checksums(home)
    assert after.keys() == before.keys()
    changed = [k for k in after if after[k] != before[k]]
    # quarantine: detected_at only (when the run rejected the row); everything else, the
    # A/B results' floats included (exact sums: see test_kill_rerun.py), byte for byte
    assert all(k.startswith("quarantine/") for k in changed), changed
    for k in changed:
        again = pq.read_table(home / "warehouse" / k)
        assert again.drop(["detected_at"]).equals(rejected[k].drop(["detected_at"])), k
