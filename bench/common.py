"""The benchmark record, its JSON files, and the helpers every benchmark uses.

A figure is one `Record`: a measured `value` next to the `floor_value` of the same work
done by the simplest tool that could do it (a bare DuckDB COPY, ...). `ratio` is always
"how many times worse than the floor" (>= ~1): value / floor for times, floor / value for
throughputs (`higher_is_better=True`). `met` says whether the record hits its `target`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# The keys every record has, in this order (tests and readers rely on them).
KEYS = (
    "benchmark",
    "metric",
    "value",
    "unit",
    "floor_metric",
    "floor_value",
    "ratio",
    "target",
    "met",
    "rows",
    "peak_rss_mb",
    "scale",
    "timestamp",
)

# A benchmark takes (scale, scratch dir) and returns its records; each module of the package
# declares its own in a dict `BENCHMARKS` (name -> function), found by `bench.__main__`.
Benchmark = Callable[[float, Path], list["Record"]]


@dataclass
class Record:
    benchmark: str
    metric: str
    value: float
    unit: str
    floor_metric: str
    floor_value: float
    ratio: float  # how many times worse than the floor: value/floor (times), floor/value (rates)
    target: str
    met: bool
    rows: int
    peak_rss_mb: float
    scale: float = 1.0
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in KEYS}


def ratio_to_floor(value: float, floor: float, *, higher_is_better: bool = False) -> float:
    """How many times worse than the floor (>= 1 means slower / lower than the floor)."""
    if higher_is_better:
        return floor / value if value > 0 else float("inf")
    return value / floor if floor > 0 else float("inf")


def floor_record(
    metric: str,
    value: float,
    unit: str,
    floor_metric: str,
    floor: float,
    *,
    target: str,
    limit: float | None = None,
    higher_is_better: bool = False,
    also_met: bool = True,
    **fields,
) -> Record:
    """A `Record` of `value` against `floor` (value and floor rounded to 4 places, the ratio
    to 3). `met`: `also_met`, and, given a `limit`, the ratio at most `limit`. `fields`: the
    rest of the record (benchmark, rows, peak_rss_mb, scale)."""
    ratio = ratio_to_floor(value, floor, higher_is_better=higher_is_better)
    return Record(
        metric=metric,
        value=round(value, 4),
        unit=unit,
        floor_metric=floor_metric,
        floor_value=round(floor, 4),
        ratio=round(ratio, 3),
        target=target,
        met=(limit is None or ratio <= limit) and also_met,
        **fields,
    )


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (children not included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Timer:
    """`with Timer() as t: ...` then `t.seconds` (wall clock) and `t.cpu` (CPU seconds of
    this process: on a shared, noisy machine a steadier figure than the wall clock)."""

    def __enter__(self) -> Timer:
        self.seconds = self.cpu = 0.0
        self._t0, self._c0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = cpu_seconds() - self._c0


def best_of(n: int, fn: Callable[[int], float]) -> tuple[float, list[float]]:
    """Run `fn(repetition)` n times (it returns seconds); (the smallest, all of them)."""
    times = [fn(i) for i in range(n)]
    return min(times), times


def log(msg: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# -- files -------------------------------------------------------------------------------
def write_records(path: Path, records: Iterable[Record | dict]) -> Path:
    """Write records as JSON lines (one run of one benchmark per file), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict() if isinstance(r, Record) else r) + "\n")
    tmp.replace(path)
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the table ---------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) < 1:
            return f"{v:.3g}"
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


COLUMNS = (
    ("benchmark", "benchmark"),
    ("metric", "metric"),
    ("value", "value"),
    ("unit", "unit"),
    ("floor_value", "floor"),
    ("floor_metric", "floor metric"),
    ("ratio", "x floor"),
    ("met", "met"),
    ("peak_rss_mb", "peak MB"),
    ("rows", "rows"),
    ("target", "target"),
)
_RIGHT = {"value", "floor_value", "ratio", "peak_rss_mb", "rows"}


def format_table(records: list[dict]) -> str:
    """An aligned text table of records (numbers right-aligned)."""
    head = [title for _, title in COLUMNS]
    body = [[_fmt(r.get(k)) for k, _ in COLUMNS] for r in records]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if k in _RIGHT else c.ljust(w)
            for (k, _), c, w in zip(COLUMNS, cells, widths, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(b) for b in body)])
