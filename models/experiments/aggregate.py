"""A/B aggregation in DuckDB over the warehouse: users per variant, per-user outcomes and
the per-arm moments `models.experiments.stats` tests, and `analyze`, which puts the two together.

Choices (also in the README):
- Population: users assigned to the experiment with `start <= assigned_at <= min(end,
  as_of)`; assignments to variants the config does not name are left out (and counted in
  `unknown_variants`). Ingest keeps one assignment per (experiment, user).
- Outcome y: per user, the sum of the metric's values with `assigned_at <= event_timestamp
  <= min(end, as_of)`; a user with no events counts 0.
- Pre-period x: the sum of the metric's values in the `pre_period_days` (default 14) before
  `assigned_at`; a fixed lookback gives every user the same pre-period length.
- DuckDB joins each assigned user's events and numbers the users densely; numpy adds the
  joined rows into per-user arrays (`np.add.at` on the dense numbers, Arrow batches
  streamed from DuckDB), and DuckDB sums those per arm. A 10M-user hash aggregate on the
  string `user_id` spilled past the memory limit and cost twice as much; the arrays take a
  fixed 8 bytes per user and slot, and an experiment larger than `ACCUMULATOR_BYTES` runs
  in several passes (users split by a hash of `user_id`), so the memory stays bounded.
  Welch and CUPED need only the per-arm moments (n, means, sample variances, covariance).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from fractions import Fraction

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from models.core.warehouse import Warehouse, sql_str
from models.experiments.config import ExperimentConfig, parse_timestamp
from models.experiments.decision import INTERVAL_KEYS, settle
from models.experiments.stats import Moments, summarize

PRE_PERIOD_DAYS = 14
DAY_US = 86_400_000_000
# The A/B sums are exact, so a re-run gives the same bits whatever order DuckDB's threads add
# in (a float sum's last bits vary with it). Each event value is rounded once to an integer
# number of micro-units (1e-6 of its unit); a user's sums of those integers are exact in
# DOUBLE while every partial sum stays below 2**53 (checked: the user's sum of |value|), in
# any order of addition; the per-arm sums, squares and products are HUGEINTs, whose
# overflow DuckDB reports. Past either bound the analysis fails naming the experiment and
# its metrics, never loses precision: a user's sum of |value| must stay below about 9e9
# units, and an arm's sum of squares below 1.7e26 units squared.
MICRO = 1_000_000
EXACT_BELOW = 2**53  # micro-units: the largest range in which DOUBLE holds every integer
# The per-user arrays of one pass (8 bytes per user and slot, plus |value| and the variant):
# past this, the users are split into passes, each a scan of the events
ACCUMULATOR_BYTES = 1 << 30
BATCH_ROWS = 1 << 20  # joined rows per Arrow batch from DuckDB
NO_EVENTS = 255  # the variant code of a user without events in the per-user arrays


def _sql_ts(t: datetime) -> str:
    return f"TIMESTAMPTZ {sql_str(t.isoformat())}"


def _assignments_sql(warehouse: Warehouse, exp: ExperimentConfig, stop: datetime) -> str:
    lo, hi = exp.start.date() - timedelta(days=1), stop.date() + timedelta(days=1)
    return f"""
        SELECT user_id, variant, assigned_at
        FROM {warehouse.scan("assignments", "experiment_id, user_id, variant, assigned_at, ds")}
        WHERE experiment_id = {sql_str(exp.experiment_id)}
          AND ds BETWEEN DATE '{lo}' AND DATE '{hi}'
          AND assigned_at BETWEEN {_sql_ts(exp.start)} AND {_sql_ts(stop)}"""


def _events_sql(warehouse: Warehouse, metrics: list[str], lo: datetime, hi: datetime) -> str:
    """Events of `metrics` in [lo, hi], the metric as its index in `metrics` (column m)."""
    if not warehouse.exists("user_metrics"):
        return (
            "SELECT NULL::VARCHAR AS user_id, NULL::UTINYINT AS m, NULL::BIGINT AS ts, "
            "NULL::DOUBLE AS value WHERE FALSE"
        )
    cases = " ".join(f"WHEN {sql_str(name)} THEN {i}" for i, name in enumerate(metrics))
    d_lo, d_hi = lo.date() - timedelta(days=1), hi.date() + timedelta(days=1)
    return f"""
        SELECT user_id, (CASE metric {cases} END)::UTINYINT AS m,
               epoch_us(event_timestamp) AS ts, value
        FROM {warehouse.scan("user_metrics", "user_id, event_timestamp, metric, value, ds")}
        WHERE metric IN ({", ".join(sql_str(name) for name in metrics)})
          AND ds BETWEEN DATE '{d_lo}' AND DATE '{d_hi}'
          AND event_timestamp BETWEEN {_sql_ts(lo)} AND {_sql_ts(hi)}"""


def _users_sql(warehouse: Warehouse, exp: ExperimentConfig, stop: datetime, part: str) -> str:
    """The assigned users of the configured variants satisfying `part` (a SQL condition on
    user_id, built here, not from input): user_id, v (the variant's index in the config)
    and a_us (assigned_at in epoch microseconds)."""
    vcases = " ".join(f"WHEN {sql_str(name)} THEN {i}" for i, name in enumerate(exp.variants))
    return f"""
        SELECT user_id, (CASE variant {vcases} END)::UTINYINT AS v,
               epoch_us(assigned_at) AS a_us
        FROM ({_assignments_sql(warehouse, exp, stop)})
        WHERE variant IN ({", ".join(sql_str(name) for name in exp.variants)}) AND {part}"""


def _joined_sql(
    warehouse: Warehouse, exp: ExperimentConfig, metrics: list[str], as_of: datetime,
    pre_days: int, users: str, join: str = "JOIN",
) -> str:  # fmt: skip
    """One row per (assigned user of `users`, event of its windows): the user's columns and
    the event's value with its slot (2 m for the outcome of metric m, 2 m + 1 for its
    pre-period; NULL for a user without events under a LEFT JOIN), from integer
    microseconds."""
    stop, pre_lo = min(exp.end, as_of), exp.start - timedelta(days=pre_days)
    return f"""
        SELECT a.*, e.value, (e.m * 2 + (e.ts < a.a_us)::UTINYINT)::UTINYINT AS slot
        FROM ({users}) a
        {join} ({_events_sql(warehouse, metrics, pre_lo, stop)}) e
            ON e.user_id = a.user_id AND e.ts >= a.a_us - {int(pre_days) * DAY_US}"""


def assignment_counts(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, exp: ExperimentConfig, as_of: datetime
) -> dict[str, int]:
    """Users per variant (every variant logged, named in the config or not)."""
    if not warehouse.exists("assignments"):
        return {}
    sql = _assignments_sql(warehouse, exp, min(exp.end, as_of))
    return dict(con.execute(f"SELECT variant, count(*) FROM ({sql}) GROUP BY 1").fetchall())


def user_outcomes(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    exp: ExperimentConfig,
    metric: str,
    as_of: datetime,
    pre_period_days: int = PRE_PERIOD_DAYS,
) -> pd.DataFrame:
    """Per assigned user: user_id, variant, y (outcome) and x_pre (pre-period) of `metric`;
    for inspection and small data (`analyze` reads only per-arm moments)."""
    if not warehouse.exists("assignments"):
        return pd.DataFrame({"user_id": [], "variant": [], "y": [], "x_pre": []})
    users = _users_sql(warehouse, exp, min(exp.end, as_of), "TRUE")
    sql = _joined_sql(warehouse, exp, [metric], as_of, pre_period_days, users, "LEFT JOIN")
    df = con.execute(f"""
        SELECT user_id, any_value(v) AS v,
               coalesce(sum(value) FILTER (WHERE slot = 0), 0) AS y,
               coalesce(sum(value) FILTER (WHERE slot = 1), 0) AS x_pre
        FROM ({sql}) GROUP BY user_id ORDER BY user_id""").df()
    df.insert(1, "variant", np.array(list(exp.variants), dtype=object)[df.pop("v").to_numpy()])
    return df


def _exact_moments(n: int, sy, syy, sx, sxx, sxy, scale: int = MICRO) -> Moments:
    """Moments of n users from exact integer sums of values times `scale`, computed exactly
    and rounded once; n = 1 gives NaN variances (as var_samp), n = 0 NaN everything."""
    if n == 0:
        return Moments(0.0, math.nan, math.nan, math.nan, math.nan, math.nan)
    sy, sx = Fraction(int(sy), scale), Fraction(int(sx), scale)
    syy, sxx, sxy = (Fraction(int(v), scale * scale) for v in (syy, sxx, sxy))

    def co(sab, sa, sb) -> float:
        return float((sab - sa * sb / n) / (n - 1)) if n > 1 else math.nan

    return Moments(
        float(n), float(sy / n), co(syy, sy, sy), float(sx / n), co(sxx, sx, sx), co(sxy, sx, sy)
    )


def _passes(users: int, slots: int) -> int:
    """How many passes keep one pass's per-user arrays under `ACCUMULATOR_BYTES`."""
    return max(1, math.ceil(users * (8 * (slots + 1) + 1) / ACCUMULATOR_BYTES))


def _per_user_arrays(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, exp: ExperimentConfig,
    as_of: datetime, pre_days: int, part: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One pass over the users of `part`, numbered densely by DuckDB (k): their variant code
    v (`NO_EVENTS` for a user without events), their sum of |value| and sums[slot], all in
    micro-units (exact integers, see MICRO). The joined rows come as Arrow batches that
    `np.add.at` adds in place, so the memory is the arrays plus one batch."""
    users = _users_sql(warehouse, exp, min(exp.end, as_of), part)
    ((n,),) = con.execute(f"SELECT count(*) FROM ({users})").fetchall()
    v, magnitude = np.full(n, NO_EVENTS, np.uint8), np.zeros(n)
    sums = np.zeros((2 * len(exp.metrics), n))
    numbered = f"SELECT (row_number() OVER () - 1)::UINTEGER AS k, * FROM ({users})"
    joined = _joined_sql(warehouse, exp, exp.metrics, as_of, pre_days, numbered)
    sql = f"SELECT k, slot, v, round(value * {MICRO}) FROM ({joined}) WHERE value IS NOT NULL"
    flat = sums.reshape(-1)  # slot-major: sums[slot] is one contiguous column
    for batch in con.sql(sql).to_arrow_reader(BATCH_ROWS):
        k = batch.column(0).to_numpy().astype(np.intp)
        if len(k) and k.max() >= n:  # a concurrent write between the count and the join
            raise RuntimeError(
                f"experiment {exp.experiment_id!r}: its assignments changed during the "
                "analysis; run it again"
            )
        value = batch.column(3).to_numpy()
        np.add.at(flat, batch.column(1).to_numpy().astype(np.intp) * n + k, value)
        np.add.at(magnitude, k, np.abs(value))
        v[k] = batch.column(2).to_numpy()
    return v, magnitude, sums


def arm_moments(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    exp: ExperimentConfig,
    as_of: datetime,
    counts: dict[str, int] | None = None,
    pre_period_days: int = PRE_PERIOD_DAYS,
) -> dict[str, dict[str, Moments]]:
    """{metric: {variant: Moments}} for every metric and configured variant, from exact
    sums (see MICRO): per-user arrays (`_per_user_arrays`, in as many passes as
    `ACCUMULATOR_BYTES` needs), then per arm the HUGEINT sums, squares and cross products in
    DuckDB; users without events (the assigned users `counts` has beyond those with
    events) add zeros to the sums and count in n."""
    counts = assignment_counts(con, warehouse, exp, as_of) if counts is None else counts
    metrics, names = exp.metrics, list(exp.variants)
    why = (
        f"experiment {exp.experiment_id!r}: the metrics {metrics} are too large for exact A/B sums"
    )
    found: dict[int, list] = {}
    passes = _passes(sum(counts.get(name, 0) for name in names), 2 * len(metrics))
    for p in range(passes if counts else 0):
        part = "TRUE" if passes == 1 else f"hash(user_id) % {passes} = {p}"
        v, magnitude, sums = _per_user_arrays(con, warehouse, exp, as_of, pre_period_days, part)
        largest = magnitude.max(initial=0.0)
        if not largest < EXACT_BELOW:  # NaN included
            raise ValueError(
                f"{why}: a user's sum of |value| is {largest / MICRO:.6g}, the bound "
                f"{EXACT_BELOW / MICRO:.6g}"
            )
        h = "::HUGEINT"
        cols = ", ".join(
            f"sum(s{y}{h}), sum(s{y}{h} * s{y}{h}), sum(s{x}{h}), sum(s{x}{h} * s{x}{h}), "
            f"sum(s{x}{h} * s{y}{h})"
            for y, x in ((2 * i, 2 * i + 1) for i in range(len(metrics)))
        )
        per_user = pa.table({"v": v, **{f"s{j}": col for j, col in enumerate(sums)}})
        try:
            rows = con.from_arrow(per_user).filter(f"v <> {NO_EVENTS}").aggregate(f"v, {cols}", "v")
            rows = rows.fetchall()
        except (duckdb.OutOfRangeException, duckdb.ConversionException) as e:
            raise ValueError(f"{why}: {e}") from e
        for code, *vals in rows:  # passes add up exactly (Python integers)
            found[code] = [
                a + (b or 0) for a, b in zip(found.get(code, [0] * len(vals)), vals, strict=True)
            ]
    out: dict[str, dict[str, Moments]] = {m: {} for m in metrics}
    for v, name in enumerate(names):
        vals = found.get(v, [0] * 5 * len(metrics))
        for i, metric in enumerate(metrics):
            out[metric][name] = _exact_moments(counts.get(name, 0), *vals[5 * i : 5 * i + 5])
    return out


# DuckDB's memory for the analysis (the join of a 10M-user experiment's users and events
# fits), so the whole process (DuckDB + the per-user arrays) stays under 3 GB (bench/ab.py
# measures it)
ANALYSIS_MEMORY_LIMIT = "3GB"


def load_history(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, exp: ExperimentConfig, as_of: datetime
) -> list[dict]:
    """The experiment's earlier looks from `ab_results` (those analysed before `as_of`), in
    the shape `decision.settle` takes: the partitions of the experiment's days only (a few
    rows each); rows written before the method existed have no `final`."""
    if not warehouse.exists("ab_results"):
        return []
    cur = con.execute(
        f"SELECT * FROM {warehouse.scan('ab_results')} "
        "WHERE experiment_id = $1 AND ds BETWEEN $2 AND $3",
        [exp.experiment_id, exp.start.date(), as_of.date()],
    )
    names = [d[0] for d in cur.description]
    looks: dict[str, dict] = {}
    for r in (dict(zip(names, row, strict=True)) for row in cur.fetchall()):
        if parse_timestamp(r["analyzed_at"]) >= as_of:
            continue
        look = looks.setdefault(r["analyzed_at"], {
            "analyzed_at": r["analyzed_at"],
            "decision": r["decision"],
            "decision_reason": r.get("decision_reason"),
            "final": bool(r.get("final")),
            "intervals": [],
        })  # fmt: skip
        if r.get("primary"):
            look["intervals"].append({k: r.get(k) for k in INTERVAL_KEYS})
    return sorted(looks.values(), key=lambda h: parse_timestamp(h["analyzed_at"]))


def analyze(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    exp: ExperimentConfig,
    as_of: datetime,
    pre_period_days: int = PRE_PERIOD_DAYS,
    history: list[dict] | None = None,
) -> dict:
    """The A/B result of `exp` as of `as_of` in the contract's JSON shape (every variant vs
    the control, for every metric), plus the decision; with `history` (the earlier looks:
    `load_history`), a final decision of an earlier look stands (`decision.settle`)."""
    counts = assignment_counts(con, warehouse, exp, as_of)
    by_metric = arm_moments(con, warehouse, exp, as_of, counts, pre_period_days)
    result = summarize(exp, counts, by_metric, as_of, pre_period_days)
    return result if history is None else settle(result, history)
