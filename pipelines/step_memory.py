"""Each step's own peak RSS, for `clipflow run`'s step lines and the runs in the UI (#20).

Linux keeps a process's peak RSS (`VmHWM`) and lets the process start it afresh (`5` to
`/proc/self/clear_refs`). The jobs' hooks (`pipelines.jobs.STEP_PEAK_HOOKS`) log at the end
of each step the peak since the previous step ended (`step peak RSS 1234 MB`), then start it
afresh. Kept free of Dagster (`clipflow run` imports it before Dagster loads). Steps run
one at a time in a run's process (the in-process executor), so each figure is that step's
own; under a multiprocess executor each step has its process, and the figure is that
process's. Where the OS cannot say, the hooks log nothing: a peak is never made up.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
from pathlib import Path

PEAK_LOG = "step peak RSS {mb:.0f} MB"
_PEAK = re.compile(r"^step peak RSS (\d+) MB$")


def reset_peak_rss() -> bool:
    """Start this process's peak RSS afresh (Linux: `5` to /proc/self/clear_refs resets
    VmHWM), so that the next figure is its own; False where the OS does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    """This process's peak RSS since the last reset (VmHWM), in MB; None when unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def logged_peak(message: str | None) -> float | None:
    """The MB of a `PEAK_LOG` line; None for any other message."""
    m = _PEAK.match(message or "")
    return float(m.group(1)) if m else None


def release_memory() -> None:
    """Hand memory a finished step freed back to the OS: Python's cycles collected, then
    Arrow's pool (mimalloc keeps freed pages for reuse) and glibc's heap trimmed. In one
    process the next step would otherwise start above what it needs (measured at 1M
    clips a day: 2.6 GB held after the engagement contract, 1.5 GB after this)."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
