"""One writer per home, and partition swaps that survive a crash (#16, case 8): real
processes hold the lock or die (os._exit) in the middle of a swap; the next writer finds
every partition whole and no leftovers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from assets.resources import WarehouseResource
from models.core.errors import root_cause
from models.core.warehouse import Warehouse
from models.core.writer_lock import LOCK_NAME, WriterBusy, recover, writer_lock

ROOT = Path(__file__).resolve().parents[2]
DS = "2026-03-01"


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _hold(home: Path, shared: bool = False) -> subprocess.Popen:
    """Another process holding the writer lock (shared: as an Iceberg run) until killed."""
    proc = _python(
        """
        import sys, time
        from pathlib import Path
        from models.core.writer_lock import writer_lock
        with writer_lock(Path(sys.argv[1]) / "warehouse", "holder", shared=sys.argv[2] == "1"):
            print("held", flush=True)
            time.sleep(600)
        """,
        str(home),
        "1" if shared else "0",
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def probe(warehouse: WarehouseResource) -> None:
    warehouse.get().write("clips_probe", DS, pa.table({"x": [1, 2, 3]}))


def test_a_second_writer_waits_then_refuses_naming_the_holder_and_a_dead_holder_frees_it(
    tmp_path,
):
    home = tmp_path / "home"
    holder = _hold(home)
    try:
        t0 = time.monotonic()
        result = dg.materialize([probe], partition_key=DS, raise_on_error=False,
                                resources={"warehouse": WarehouseResource(home=str(home), lock_wait_s=1.0)})  # fmt: skip
        waited = time.monotonic() - t0
        assert not result.success and waited >= 1.0
        errors = [e.event_specific_data.error for e in result.all_events
                  if getattr(e.event_specific_data, "error", None)]  # fmt: skip
        text = " ".join(root_cause(err) for err in errors)
        assert f"pid {holder.pid}" in text and "holder" in text and "one writer per home" in text
        assert not Warehouse(home).has("clips_probe", DS)  # nothing was written
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with the process
        holder.wait(10)
    result = dg.materialize([probe], partition_key=DS,
                            resources={"warehouse": WarehouseResource(home=str(home), lock_wait_s=5.0)})  # fmt: skip
    assert result.success and Warehouse(home).read("clips_probe", DS).column("x").to_pylist() == [
        1, 2, 3,
    ]  # fmt: skip


CRASH = """
    import os, shutil, sys
    from pathlib import Path
    import pyarrow as pa
    from models.core.warehouse import Warehouse
    real_replace, real_rmtree, replaced, where = os.replace, shutil.rmtree, [0], sys.argv[2]

    def replace(a, b):
        if where == f"rename {replaced[0] + 1}":
            os._exit(9)  # the process dies here, as under kill -9
        replaced[0] += 1
        real_replace(a, b)

    def rmtree(path, **kw):
        if where == "cleanup":
            os._exit(9)
        real_rmtree(path, **kw)

    os.replace, shutil.rmtree = replace, rmtree
    Warehouse(Path(sys.argv[1])).write("t", "2026-03-01", pa.table({"v": ["new", "new"]}))
"""


@pytest.mark.parametrize(
    ("where", "done", "expect"),
    [
        ("rename 1", ["removed unfinished write"], ["old"]),  # nothing moved yet
        ("rename 2", ["restored", "removed unfinished write"], ["old"]),  # partition missing
        ("cleanup", ["removed the replaced"], ["new", "new"]),  # the old copy left over
    ],
)
def test_a_crash_in_a_partition_swap_is_finished_by_the_next_writer(tmp_path, where, done, expect):
    home = tmp_path / "home"
    wh = Warehouse(home)
    wh.write("t", DS, pa.table({"v": ["old"]}))
    proc = _python(CRASH, str(home), where)
    proc.wait(60)
    assert proc.returncode == 9, proc.stderr.read()
    if where == "rename 2":
        assert not wh.has("t", DS)  # what readers saw before this fix, until a re-run
    with writer_lock(wh.root, "next run") as recovered:
        pass
    assert wh.read("t", DS).column("v").to_pylist() == expect
    assert [p.name for p in (wh.root / "_tmp").iterdir()] == []  # no leftovers
    assert len(recovered) == len(done), recovered
    assert all(line.startswith(d) for line, d in zip(recovered, done, strict=True)), recovered


def test_recover_without_the_lock_files_is_a_no_op(tmp_path):
    assert recover(tmp_path / "nothing") == []
    with (
        writer_lock(tmp_path / "wh", "a"),
        pytest.raises(WriterBusy, match="being written by pid"),
        writer_lock(tmp_path / "wh", "b", wait_s=0.0),
    ):
        pass
    assert (tmp_path / "wh" / LOCK_NAME).exists()


def test_shared_writers_hold_the_lock_together_and_only_one_alone_recovers(tmp_path):
    """Iceberg runs (shared=True) write at once: a second one gets the lock while the first
    holds it and leaves the scratch files alone (they may be the first one's); a local-style
    exclusive writer is refused meanwhile; a shared writer that finds the lock free
    recovers."""
    home = tmp_path / "home"
    root = home / "warehouse"
    scratch = root / "_tmp" / "write-of-the-other-run"
    holder = _hold(home, shared=True)
    try:
        scratch.mkdir(parents=True)
        with writer_lock(root, "second", shared=True) as done:
            assert done == [] and scratch.is_dir()
        with pytest.raises(WriterBusy, match="is being written by"), writer_lock(root, "x"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with writer_lock(root, "alone", shared=True) as done:
        assert done == ["removed unfinished write write-of-the-other-run"]
        assert not scratch.exists()
        other = _python(  # the lock is shared again once recovered
            """
            import sys
            from pathlib import Path
            from models.core.writer_lock import writer_lock
            with writer_lock(Path(sys.argv[1]), "joiner", shared=True):
                print("joined", flush=True)
            """,
            str(root),
        )
        out, err = other.communicate(timeout=60)
        assert out.strip() == "joined", err
