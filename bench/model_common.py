"""What the model benchmarks (`bench.model`: train, `bench.model_score`: score) share: the
settings they run with, data made apart from the measured process, timing wrappers, and the
records. Not a benchmark itself (it declares no `BENCHMARKS`)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.common import floor_record

THREADS, MEMORY_LIMIT = 2, "4GB"  # assets.resources.WarehouseResource defaults
TREES = 300  # TrainParams.n_estimators
NO_EARLY_STOP = 10**6
MIN_ROWS, MIN_TREES = 2_000, 5
IN_PROCESS_BELOW = 100_000  # rows: smaller data is made in this process
TRAIN_REPEATS = 3
NO_TARGET = "breakdown, no target"


def n_trees(scale: float) -> int:
    return max(MIN_TREES, min(TREES, round(TREES * scale)))


def make_data(rows: int, fn: Callable, *args):
    """`fn(*args)`, in a spawned process (its memory stays out of this one's peak RSS)
    unless `rows` is small enough for its memory not to matter (smoke runs)."""
    if rows < IN_PROCESS_BELOW:
        return fn(*args)
    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


@contextmanager
def spy(targets: list[tuple[str, object, str]]) -> Iterator[dict[str, float]]:
    """Wrap `owner.attr` for each (label, owner, attr) so that the wall seconds spent in
    its calls add up under `label`; the originals are put back on exit."""
    spent = {label: 0.0 for label, _, _ in targets}
    saved = []
    for label, owner, attr in targets:
        real = getattr(owner, attr)

        def timed(*args, _real=real, _label=label, **kwargs):
            t0 = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - t0

        saved.append((owner, attr, real))
        setattr(owner, attr, timed)
    try:
        yield spent
    finally:
        for owner, attr, real in reversed(saved):
            setattr(owner, attr, real)


def store_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def record_makers(benchmark: str, scale: float, peak: float, rows: int):
    def record(metric, value, unit, floor_metric, floor, target, limit=None, rate=False, n=rows):
        return floor_record(metric, value, unit, floor_metric, floor, target=target,
                            limit=limit, higher_is_better=rate, benchmark=benchmark, rows=n,
                            peak_rss_mb=peak, scale=scale)  # fmt: skip

    def breakdown(metric, value, unit="s", n=rows):  # no floor: the floor is itself
        value = max(value, 1e-6)
        return record(metric, value, unit, metric, value, NO_TARGET, n=n)

    return record, breakdown
