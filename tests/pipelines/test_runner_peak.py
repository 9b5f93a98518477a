"""`clipflow run`'s per-day peak RSS (#20): each day's figure is its own, not the process's
peak so far."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pipelines.runner import _mb, peak_rss_mb, reset_peak_rss

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="VmHWM and clear_refs: Linux")


def test_a_reset_starts_the_peak_afresh():
    assert reset_peak_rss()
    base = peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MB, every page touched
    high = peak_rss_mb()
    assert base is not None and high is not None and high >= base + 280
    del block
    assert reset_peak_rss()
    after = peak_rss_mb()
    assert after is not None and after < high - 250  # the 300 MB are no longer the peak


def test_an_unknown_peak_says_so():
    assert _mb(None) == "unknown" and _mb(1234.4) == "1,234 MB"
