"""Per-creator running state for `clip_features`: a day reads the day plus the state of the
day before, never all history.

Table `creator_state`, one partition a day: per creator, the totals over every event up to
that day's end (event_timestamp <= ds 23:59:59.999999):

| column | type | the sum of |
|---|---|---|
| n_clips | BIGINT | clips created |
| label_sum | DECIMAL(38, 6) | the clips' newest labels (a revision adds new - previous) |
| n_labels | BIGINT | clips labelled at least once |
| early_sum | BIGINT | first-24h views of clips whose first 24 h closed |
| n_early | BIGINT | those clips |

The events of day d (`stage_day_events`) come from bounded reads: clips created on d (one
clip each), labels of d (their clip's creator and earlier label from the clips and labels
partitions since the oldest such clip's creation day; `OWNER_LOOKBACK_DAYS` first, all
earlier clip partitions only for clips not found there), and clips created on d - 1 with
the engagement of d - 1 and d (first 24 h closing on d). Label sums are exact decimals and
the others integers, so state plus events equals the full recomputation exactly.

Freshness is make-like: state d is fresh when its file is newer than the partitions it
reads directly (clips d and d - 1, labels d, engagement d - 1 and d) and than state d - 1.
A late label or clip re-ingested into day d' makes state d' stale, and with it (by the
chain) every later day: `ensure` rebuilds from the first stale day, so re-running any day
gives the features a full recomputation gives. Checking costs a few `stat` calls per day.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from models.core.contract import TABLES
from models.core.warehouse import Warehouse

STATE = "creator_state"
OWNER_LOOKBACK_DAYS = 14  # a label's clip is looked up in these clip partitions first
COLUMNS = ("n_clips", "label_sum", "n_labels", "early_sum", "n_early")
_TYPES = ("BIGINT", "DECIMAL(38, 6)", "BIGINT", "BIGINT", "BIGINT")
_LABELS = ["clip_id", "labeled_at", "quality_score"]
_OWNERS = ["clip_id", "creator_id", "created_at"]  # a clip's creator and creation time


def _day(d: date) -> str:
    return f"TIMESTAMPTZ '{d.isoformat()} 00:00:00+00'"


def read_days(
    warehouse: Warehouse, table: str, cols: list[str], first: date | None, last: date
) -> str:
    """Columns of `table` from partitions [first, last] (all up to last when first is None);
    an empty relation of the contract's types when the table has no data yet."""
    if not warehouse.exists(table):
        spec = TABLES[table]
        typed = ", ".join(f"NULL::{spec.field(c).sql_type} AS {c}" for c in cols)
        return f"(SELECT {typed} WHERE FALSE)"
    lo = f"ds >= DATE '{first.isoformat()}' AND " if first else ""
    return (
        f"(SELECT {', '.join(cols)} FROM {warehouse.scan(table, ', '.join([*cols, 'ds']))} "
        f"WHERE {lo}ds <= DATE '{last.isoformat()}')"
    )


def stage_day_events(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, d: date) -> None:
    """Temp table `_cs_events`: per creator and moment of day d, the deltas d_clips,
    d_label_sum, d_labels, d_early_sum, d_early (NULL where the event has none)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cs_labels AS
        SELECT clip_id, labeled_at, quality_score::DECIMAL(18, 6) AS score
        FROM {read_days(warehouse, "labels", _LABELS, d, d)}""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cs_owners AS
        SELECT * FROM {read_days(warehouse, "clips", _OWNERS, d - timedelta(OWNER_LOOKBACK_DAYS), d)}
        WHERE clip_id IN (SELECT clip_id FROM _cs_labels)""")  # fmt: skip
    ((missing,),) = con.execute(
        "SELECT count(DISTINCT clip_id) FROM _cs_labels "
        "WHERE clip_id NOT IN (SELECT clip_id FROM _cs_owners)"
    ).fetchall()
    if missing:  # labels of older clips: the earlier partitions too
        con.execute(f"""
            INSERT INTO _cs_owners
            SELECT * FROM {read_days(warehouse, "clips", _OWNERS, None, d - timedelta(OWNER_LOOKBACK_DAYS + 1))}
            WHERE clip_id IN (SELECT clip_id FROM _cs_labels)""")  # fmt: skip
    ((oldest,),) = con.execute("SELECT min(created_at)::DATE FROM _cs_owners").fetchall()
    prior = "(SELECT NULL::VARCHAR AS clip_id, NULL::DECIMAL(18, 6) AS newest WHERE FALSE)"
    if oldest is not None and oldest < d:  # a clip's labels come after its creation
        prior = f"""(
            SELECT clip_id, arg_max(quality_score::DECIMAL(18, 6), labeled_at) AS newest
            FROM {read_days(warehouse, "labels", _LABELS, oldest, d - timedelta(1))}
            WHERE clip_id IN (SELECT clip_id FROM _cs_labels)
            GROUP BY clip_id)"""  # fmt: skip
    views = ["clip_id", "event_timestamp", "views"]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cs_events AS
        WITH label_events AS (
            SELECT o.creator_id, l.labeled_at AS ts, l.score,
                   coalesce(lag(l.score) OVER (PARTITION BY l.clip_id
                                               ORDER BY l.labeled_at, l.score),
                            p.newest) AS prev
            FROM _cs_labels l JOIN _cs_owners o USING (clip_id)
            LEFT JOIN {prior} p USING (clip_id)
        ),
        early AS (
            SELECT c.creator_id, c.created_at + INTERVAL 24 HOUR AS ts,
                   coalesce(sum(e.views), 0) AS early_views
            FROM {read_days(warehouse, "clips", _OWNERS, d - timedelta(1), d - timedelta(1))} c
            LEFT JOIN {read_days(warehouse, "engagement", views, d - timedelta(1), d)} e
              ON e.clip_id = c.clip_id AND e.event_timestamp <= c.created_at + INTERVAL 24 HOUR
            GROUP BY c.clip_id, c.creator_id, c.created_at
        )
        SELECT creator_id, created_at AS ts, 1 AS d_clips
        FROM {read_days(warehouse, "clips", _OWNERS, d, d)}
        UNION ALL BY NAME
        SELECT creator_id, ts, score - coalesce(prev, 0) AS d_label_sum,
               CASE WHEN prev IS NULL THEN 1 ELSE 0 END AS d_labels
        FROM label_events
        UNION ALL BY NAME
        SELECT creator_id, ts, early_views AS d_early_sum, 1 AS d_early FROM early""")
    for t in ("_cs_labels", "_cs_owners"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def state_sql(warehouse: Warehouse, d: date) -> str:
    """Partition d of the state as a relation (creator_id and COLUMNS); empty if absent."""
    if not warehouse.has(STATE, d):
        typed = ", ".join(f"NULL::{t} AS {c}" for c, t in zip(COLUMNS, _TYPES, strict=True))
        return f"(SELECT NULL::VARCHAR AS creator_id, {typed} WHERE FALSE)"
    return f"(SELECT creator_id, {', '.join(COLUMNS)} FROM {warehouse.partition_scan(STATE, d)})"


def deltas_sql(warehouse: Warehouse, d: date) -> str:
    """State d - 1 as one event per creator at d's first microsecond minus one, plus the
    events of d (`_cs_events`): summed in time order, they give the totals at any moment."""
    return f"""
        SELECT creator_id, {_day(d)} - INTERVAL 1 MICROSECOND AS ts,
               n_clips AS d_clips, label_sum AS d_label_sum, n_labels AS d_labels,
               early_sum AS d_early_sum, n_early AS d_early
        FROM {state_sql(warehouse, d - timedelta(1))}
        UNION ALL BY NAME
        SELECT * FROM _cs_events"""


def write_state(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, d: date) -> int:
    """Write partition d of the state from state d - 1 and `_cs_events` (staged for d)."""
    sums = ", ".join(
        f"coalesce(sum({src}), 0)::{t} AS {c}"
        for c, t, src in zip(
            COLUMNS, _TYPES, ("d_clips", "d_label_sum", "d_labels", "d_early_sum", "d_early"),
            strict=True,
        )
    )  # fmt: skip
    query = f"SELECT creator_id, {sums} FROM ({deltas_sql(warehouse, d)}) GROUP BY creator_id"
    return warehouse.write_partition(con, STATE, d, query, keys=("creator_id",))


def _fresh(warehouse: Warehouse, d: date, before: int | None) -> bool:
    own = warehouse.version(STATE, d)
    if own is None:
        return False
    inputs = [
        before,
        warehouse.version("clips", d),
        warehouse.version("clips", d - timedelta(1)),
        warehouse.version("labels", d),
        warehouse.version("engagement", d - timedelta(1)),
        warehouse.version("engagement", d),
    ]
    return all(t is None or t < own for t in inputs)


def ensure(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, last: date) -> list[date]:
    """Make every state partition up to `last` fresh, from the first day with clips;
    returns the days (re)built."""
    days = warehouse.partitions("clips")
    if not days or date.fromisoformat(days[0]) > last:
        return []
    d, before = date.fromisoformat(days[0]), None
    while d <= last and _fresh(warehouse, d, before):
        before, d = warehouse.version(STATE, d), d + timedelta(1)
    built = []
    while d <= last:
        stage_day_events(con, warehouse, d)
        write_state(con, warehouse, d)
        built.append(d)
        d += timedelta(1)
    return built
