"""The A/B per-arm moments are exact sums: the same events give bit-identical figures
whatever the file layout and the number of DuckDB threads (a `kill -9` re-run writes the
same `ab_results` bytes), and they equal an independent exact computation in Python."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.core.warehouse import Warehouse, connect
from models.experiments import aggregate
from models.experiments.aggregate import _exact_moments, arm_moments
from models.experiments.config import ExperimentConfig

EXP = ExperimentConfig.from_dict(
    {
        "experiment_id": "exact",
        "name": "exact sums",
        "variants": {"control": 0.5, "treatment": 0.5},
        "start": "2026-01-10T00:00:00Z",
        "end": "2026-01-14T00:00:00Z",
        "primary_metric": "m",
        "secondary_metrics": [],
        "min_sample_size": 1,
        "confidence_level": 0.95,
    }
)
START = datetime(2026, 1, 10, tzinfo=UTC)


def _events(seed: int = 3, users: int = 400):
    """Assignments on the first day; per user events before (pre-period) and after, with
    values of very different magnitudes, so a float sum's result depends on its order."""
    rng = random.Random(seed)
    assigned, events = [], []
    for u in range(users):
        at = START + timedelta(hours=rng.randrange(24))
        assigned.append(("control" if u % 2 else "treatment", f"u{u:04d}", at))
        for _ in range(rng.randrange(0, 12)):
            value = rng.choice([1e8, 3.0, 1e-3, 0.1]) * rng.random()
            ts = at + timedelta(hours=rng.uniform(-24 * 10, 24 * 3))
            events.append((f"u{u:04d}", ts, round(value, 4)))
    return assigned, events


def _write(home, assigned, events, files: int, seed: int) -> Warehouse:
    """The rows shuffled and cut into `files` files per day, row groups of 7 rows."""
    rng = random.Random(seed)
    tables = {
        "assignments": [
            {"experiment_id": EXP.experiment_id, "user_id": u, "variant": v, "assigned_at": t}
            for v, u, t in assigned
        ],
        "user_metrics": [
            {"user_id": u, "event_timestamp": t, "metric": "m", "value": x} for u, t, x in events
        ],
    }
    wh = Warehouse(home)
    for table, rows in tables.items():
        rng.shuffle(rows)
        time_col = "assigned_at" if table == "assignments" else "event_timestamp"
        by_day: dict = {}
        for r in rows:
            by_day.setdefault(r[time_col].date(), []).append({**r, "ds": r[time_col].date()})
        for day, part in by_day.items():
            d = wh.partition_dir(table, day)
            d.mkdir(parents=True, exist_ok=True)
            for i in range(files):
                chunk = part[i::files]
                if chunk:
                    pq.write_table(pa.Table.from_pylist(chunk), d / f"part-{i}.parquet",
                                   row_group_size=7)  # fmt: skip
    return wh


def _expected(assigned, events, as_of: datetime) -> dict:
    """Per arm, the moments computed in exact fractions from the events (values rounded to
    1e-6, as the aggregation reads them), rounded to float once."""
    users = {u: (v, t) for v, u, t in assigned if START <= t <= as_of}
    y = {u: Fraction(0) for u in users}
    x = {u: Fraction(0) for u in users}
    for u, ts, value in events:
        if u not in users:
            continue
        at = users[u][1]
        exact = Fraction(Decimal(repr(value)).quantize(Decimal("0.000001")))
        if at <= ts <= as_of:
            y[u] += exact
        elif at - timedelta(days=14) <= ts < at:
            x[u] += exact
    out = {}
    for arm in ("control", "treatment"):
        ids = [u for u in users if users[u][0] == arm]
        n = len(ids)
        my, mx = sum(y[u] for u in ids) / n, sum(x[u] for u in ids) / n
        out[arm] = (
            n,
            float(my),
            float(sum((y[u] - my) ** 2 for u in ids) / (n - 1)),
            float(mx),
            float(sum((x[u] - mx) ** 2 for u in ids) / (n - 1)),
            float(sum((x[u] - mx) * (y[u] - my) for u in ids) / (n - 1)),
        )
    return out


def _figures(wh: Warehouse, threads: int, as_of: datetime) -> dict:
    con = connect(threads=threads)
    got = arm_moments(con, wh, EXP, as_of)["m"]
    return {arm: tuple(float(getattr(mo, f)) for f in FIELDS) for arm, mo in got.items()}


FIELDS = ("n", "mean_y", "var_y", "mean_x", "var_x", "cov_xy")


def test_same_events_any_layout_any_threads_give_the_same_bits(tmp_path):
    assigned, events = _events()
    as_of = START + timedelta(days=3)
    layouts = [(1, 0, 1), (5, 1, 2), (3, 2, 4), (8, 3, 2)]  # files per day, shuffle, threads
    runs = [
        _figures(_write(tmp_path / f"h{i}", assigned, events, f, s), t, as_of)
        for i, (f, s, t) in enumerate(layouts)
    ]
    assert runs[0]["control"][0] > 100 and runs[0]["treatment"][0] > 100
    assert all(run == runs[0] for run in runs[1:]), runs  # ==, not approx: the same bits
    want = _expected(assigned, events, as_of)
    for arm in ("control", "treatment"):
        assert runs[0][arm] == (float(want[arm][0]), *want[arm][1:]), arm


def test_exact_moments_at_n_0_1_2():
    nan, u = math.isnan, 10**6  # the sums come in micro-units (squares in micro-units squared)
    m0 = _exact_moments(0, 0, 0, 0, 0, 0)
    assert m0.n == 0 and all(nan(getattr(m0, f)) for f in FIELDS[1:])
    m1 = _exact_moments(1, 2_500_000, 6_250_000 * u, u, u * u, 2_500_000 * u)
    assert (m1.n, m1.mean_y, m1.mean_x) == (1.0, 2.5, 1.0)
    assert nan(m1.var_y) and nan(m1.var_x) and nan(m1.cov_xy)  # as var_samp with one row
    # y = (0.1, 0.2), x = (1, 3): var_y = 0.005, var_x = 2, cov = 0.1, each exactly rounded
    m2 = _exact_moments(2, 300_000, 50_000 * u, 4 * u, 10 * u * u, 700_000 * u)
    assert (m2.mean_y, m2.var_y, m2.mean_x, m2.var_x, m2.cov_xy) == (0.15, 0.005, 2.0, 2.0, 0.1)


def _one_user_each(tmp_path, name: str, big: float) -> Warehouse:
    assigned = [("control", "a", START), ("treatment", "b", START)]
    events = [("a", START + timedelta(hours=1), big), ("a", START + timedelta(hours=2), -big),
              ("b", START + timedelta(hours=1), 1.0)]  # fmt: skip
    return _write(tmp_path / name, assigned, events, 1, 0)


def test_sums_past_the_exact_range_fail_naming_the_experiment(tmp_path):
    # a user's sum of |value| must stay below 2**53 micro-units (9,007,199,254.740992):
    # +v and -v make y = 0, but the partial sum v must be exact too
    as_of = START + timedelta(days=1)
    got = arm_moments(connect(), _one_user_each(tmp_path, "ok", 4.5e9), EXP, as_of)["m"]
    assert (got["control"].mean_y, got["treatment"].mean_y) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"experiment 'exact'.*\['m'\].*\|value\| is 9\.0072"):
        arm_moments(connect(), _one_user_each(tmp_path, "big", 4.5036e9), EXP, as_of)
    with pytest.raises(ValueError, match=r"experiment 'exact'.*too large.*\|value\| is nan"):
        arm_moments(connect(), _one_user_each(tmp_path, "nan", math.nan), EXP, as_of)


def test_passes_split_the_users_at_the_accumulator_budget(monkeypatch):
    # 8 bytes per user and slot, plus |value| (8) and the variant code (1): 6 slots = 57 B
    monkeypatch.setattr(aggregate, "ACCUMULATOR_BYTES", 57 * 1000)
    assert aggregate._passes(1000, 6) == 1 and aggregate._passes(1001, 6) == 2
    assert aggregate._passes(3000, 6) == 3 and aggregate._passes(3001, 6) == 4
    assert aggregate._passes(0, 6) == 1


def test_several_passes_give_the_same_bits_as_one(tmp_path, monkeypatch):
    assigned, events = _events(seed=5)
    as_of = START + timedelta(days=3)
    wh = _write(tmp_path / "h", assigned, events, 2, 1)
    one = _figures(wh, 2, as_of)
    monkeypatch.setattr(aggregate, "ACCUMULATOR_BYTES", 25 * 90)  # 2 slots, 400 users: 5
    seen = []
    arrays = aggregate._per_user_arrays
    monkeypatch.setattr(aggregate, "_per_user_arrays", lambda *a: seen.append(a[-1]) or arrays(*a))
    assert _figures(wh, 2, as_of) == one
    assert seen == [f"hash(user_id) % 5 = {p}" for p in range(5)]
    want = _expected(assigned, events, as_of)
    assert one["control"] == (float(want["control"][0]), *want["control"][1:])


class _CountsLess:
    """A connection whose user count comes out one short, as if assignments were written
    between the count and the join."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, *args):
        if sql.lstrip().startswith("SELECT count(*) FROM ("):
            ((n,),) = self.con.execute(sql, *args).fetchall()
            return self.con.execute(f"SELECT {n - 1}")
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_assignments_changed_mid_analysis_fail_rather_than_misplace_sums(tmp_path):
    assigned, events = _events(seed=6, users=50)
    wh = _write(tmp_path / "h", assigned, events, 1, 0)
    con = _CountsLess(connect())
    counts = {"control": 25, "treatment": 25}
    with pytest.raises(RuntimeError, match=r"experiment 'exact': its assignments changed"):
        arm_moments(con, wh, EXP, START + timedelta(days=3), counts)
