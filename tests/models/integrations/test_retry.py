"""Retry-After parsing and the full-jitter backoff shared by the metadata client and webhooks."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate

from models.integrations.retry import full_jitter, retry_after_s


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    at = now.timestamp()
    assert retry_after_s("3") == 3.0 and retry_after_s(" 7 ", at) == 7.0
    assert retry_after_s("1.5") == 1.5 and retry_after_s("-4") == 0.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=5), usegmt=True), at) == 5.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=5), usegmt=True), at) == 0.0
    assert retry_after_s("Sun, 01 Mar 2026 12:00:09 -0000", at) == 9.0  # no zone: UTC
    clock = time.time()
    assert 88 <= retry_after_s(formatdate(clock + 90, usegmt=True)) <= 90  # from the clock
    for unreadable in ("soon", "whenever", "", "  ", None):
        assert retry_after_s(unreadable, at) is None


def test_full_jitter_spans_the_doubling_window_up_to_the_cap():
    rng = random.Random(7)
    for retry in range(11):
        ceiling = min(60, 2 * 2**retry)
        delays = [full_jitter(retry, 2, 60, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling
    assert 0 <= full_jitter(10_000, 2, 60) <= 60  # no overflow far past the cap
    random.seed(3)
    first = full_jitter(2, 0.5, 30)
    random.seed(3)
    assert full_jitter(2, 0.5, 30, random) == first == random.Random(3).uniform(0, 2.0)
