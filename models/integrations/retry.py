"""Waiting before a retry: what a `Retry-After` header asks, and exponential backoff with
full jitter (a uniform draw in [0, min(cap, base * 2**retry)]).

The video metadata client and the webhook outbox use both; each keeps its own rule for a
`Retry-After`: the client fails the call at once when one asks for more than its cap, the
outbox takes it as a floor (up to a day). Not tenacity: neither caller runs tenacity's kind
of loop (the client defers a token bucket that every thread waits on, the outbox stores the
next attempt's time and moves on), and tenacity's jitter draws from the global `random`,
where the outbox takes a seeded generator.
"""

from __future__ import annotations

import email.utils
import random
import time
from datetime import UTC

MAX_DOUBLINGS = 1000  # 2.0 ** 1024 overflows a float; any cap is reached long before


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delay-seconds, or an HTTP date minus
    `now` (unix seconds, default the clock; a date without a zone is UTC). Never negative;
    None when the header is absent or unreadable."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def full_jitter(retry: int, base_s: float, cap_s: float, rng=random) -> float:
    """Seconds to wait before retry number `retry` (0 for the first retry): uniform in
    [0, min(cap_s, base_s * 2**retry)]."""
    return rng.uniform(0, min(cap_s, base_s * 2 ** min(retry, MAX_DOUBLINGS)))
