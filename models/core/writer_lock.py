"""One writer per home: an exclusive lock on `<home>/warehouse/.writer.lock`, and the
recovery of a partition swap that a crash interrupted.

Every run that writes the warehouse holds the lock for its whole length (the Dagster
resource takes it when a run starts: `clipflow run`, the UI, the daemon's runs alike), so
two runs on one home never race in a partition swap. A second run waits up to its
`wait_s`, saying who holds the lock, then fails with a message naming the holder (pid,
host, label, since when). The lock is the kernel's (`flock`): it goes when its process
dies, `kill -9` included, so a crash never leaves a stale lock.

On the Iceberg warehouse (models/core/iceberg.py) the catalog's commits are atomic and
safe among concurrent writers, so runs take the lock shared (`shared=True`): several runs
write at once (a backfill's lanes, #21), a local-warehouse run still waits for all of
them, and recovery runs only in a run that found the lock free (it holds it exclusively
while it recovers, then shares it), so no run deletes the scratch files of another.

Partition swaps (models/core/warehouse.py) rename the old partition to
`_tmp/old-<id>` and write `_tmp/old-<id>.target` (the partition's path) first, then rename
the new one into place. Whoever next takes the lock finishes what a crash left: an old
partition whose target is missing is put back (the day is as it was before the
interrupted write, and a re-run writes it again); one whose target exists is deleted;
scratch folders of unfinished writes, and manifest files whose write was cut short
(`_manifest/<table>/.<id>.tmp`), are deleted. So no reader ever finds a partition
missing after a crash, and no leftovers pile up.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".writer.lock"


class WriterBusy(RuntimeError):
    """Another run holds the home's writer lock (the message names it)."""


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"pid {h.get('pid')} on {h.get('host')} ({h.get('label')}, since {h.get('since')})"


@contextmanager
def writer_lock(
    root: Path,
    label: str,
    wait_s: float = 0.0,
    say: Callable[[str], None] = lambda m: None,
    shared: bool = False,
) -> Iterator[list[str]]:
    """Hold the writer lock of warehouse `root` (created if missing); yields what the
    recovery did. Waits up to `wait_s` (telling `say` every 10 s), then WriterBusy.

    `shared`: for a warehouse whose commits are safe among concurrent writers (Iceberg):
    runs hold the lock together, and only one that finds itself alone recovers (then
    lets the others in), so no run deletes another's scratch files."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, told, alone = time.monotonic() + wait_s, 0.0, True
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if shared and _try_shared(fd):
                    alone = False
                    break
                now = time.monotonic()
                if now >= deadline:
                    raise WriterBusy(
                        f"the warehouse {root} is being written by {_holder(path)}: one writer "
                        "per home; wait for that run to end (or stop it) and run again"
                    ) from None
                if now - told >= 10:
                    say(f"waiting for the warehouse writer lock held by {_holder(path)}")
                    told = now
                time.sleep(min(0.2, max(0.0, deadline - now)))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "label": label,
                "since": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        _record_holder(fd, json.dumps(info).encode(), say)
        done = recover(root) if alone else []
        if shared and alone:
            fcntl.flock(fd, fcntl.LOCK_SH)  # recovered: other writers may join now
        yield done
    finally:
        os.close(fd)  # releases the flock


def _try_shared(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # an exclusive holder: a local run, or one recovering
    return True


def _record_holder(fd: int, info: bytes, say: Callable[[str], None]) -> None:
    """Write who holds the lock (for a waiting run's message): over the old text, then cut
    to length, so a full disk rarely refuses it; if it does, the lock still holds."""
    try:
        os.pwrite(fd, info, 0)
        os.ftruncate(fd, len(info))
    except OSError as e:
        say(f"holding the writer lock without recording the holder: {e}")


def recover(root: Path) -> list[str]:
    """Finish or undo the swaps a crash interrupted and delete scratch leftovers (call only
    while holding the writer lock); one line per thing done."""
    tmp, done = root / "_tmp", []
    for partial in sorted(root.glob("_manifest/*/.*.tmp")):  # a manifest append cut short
        partial.unlink(missing_ok=True)
        done.append(f"removed unfinished manifest write {partial.parent.name}/{partial.name}")
    if not tmp.is_dir():
        return done
    for marker in sorted(tmp.glob("old-*.target")):
        old = marker.with_suffix("")
        target = Path(marker.read_text())
        if old.is_dir() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, target)
            done.append(f"restored {target} (its swap was interrupted)")
        elif old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            done.append(f"removed the replaced copy of {target}")
        marker.unlink(missing_ok=True)
    for leftover in tmp.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
            done.append(f"removed unfinished write {leftover.name}")
    return done
