"""Streamed reads: the newest row per key of a partition, in bounded batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from support import newest_per_clip

from models.core import stream
from models.core.stream import latest
from models.core.warehouse import Warehouse

DS = "2026-11-10"
T0 = datetime(2026, 11, 10, 1, tzinfo=UTC)


@pytest.fixture()
def wh(tmp_path):
    return Warehouse(tmp_path)


def _rows(n_clips: int, per_clip: int) -> pa.Table:
    """`per_clip` rows per clip at hourly times, in an order that is not the times'."""
    rows = []
    for c in range(n_clips):
        for k in reversed(range(per_clip)):
            rows.append({"clip_id": f"c{c:04d}", "event_timestamp": T0 + timedelta(hours=k),
                         "v": c * 100 + k, "kind": "a" if c % 2 else "b"})  # fmt: skip
    return pa.Table.from_pylist(rows)


def test_the_newest_row_of_each_key_in_batches_of_at_most_the_size(wh):
    table = _rows(230, 3)
    wh.write("t", DS, table)
    batches = list(latest(wh, "t", DS, key="clip_id", ts="event_timestamp", batch_rows=50))
    assert batches and all(b.num_rows <= 50 for b in batches)
    got = pa.Table.from_batches(batches)
    assert got.num_rows == 230
    want = newest_per_clip(table)
    assert {r["clip_id"]: r["v"] for r in got.to_pylist()} == {k: r["v"] for k, r in want.items()}
    assert {r["v"] % 100 for r in got.to_pylist()} == {2}


def test_columns_and_a_bound_where(wh):
    table = _rows(10, 2)
    wh.write("t", DS, table)
    injected = list(latest(
        wh, "t", DS, key="clip_id", ts="event_timestamp", where="kind = ?",
        params=["a' OR 'x' = 'x"],
    ))  # fmt: skip
    assert sum(b.num_rows for b in injected) == 0
    got = pa.Table.from_batches(list(latest(
        wh, "t", DS, key="clip_id", ts="event_timestamp", columns=["clip_id", "v"]
    )))  # fmt: skip
    assert got.column_names == ["clip_id", "v"] and got.num_rows == 10
    got = pa.Table.from_batches(list(latest(
        wh, "t", DS, key="clip_id", ts="event_timestamp", where="kind = ?", params=["a"]
    )))  # fmt: skip
    assert sorted(got.column("v").to_pylist()) == [c * 100 + 1 for c in range(1, 10, 2)]


def test_an_absent_partition_is_refused(wh):
    with pytest.raises(FileNotFoundError, match=f"no partition ds={DS} of table t"):
        next(latest(wh, "t", DS, key="clip_id", ts="event_timestamp"))


def test_a_tie_on_the_newest_time_gives_both_rows(wh):
    """(key, time) is unique in the warehouse's keyed tables; were it not, nothing is
    dropped silently: both rows come (and the online writer refuses a key twice)."""
    table = _rows(3, 2)
    tie = table.slice(0, 1).set_column(2, "v", pa.array([-1], pa.int64()))
    wh.write("t", DS, pa.concat_tables([table, tie]))
    got = pa.Table.from_batches(list(latest(wh, "t", DS, key="clip_id", ts="event_timestamp")))
    assert sorted(got.column("v").to_pylist()) == [-1, 1, 101, 201]


def test_a_whole_table_keeps_its_columns_when_it_has_no_rows(wh):
    table = _rows(120, 2)
    wh.write("t", DS, table)
    scan = wh.partition_scan("t", DS)
    got = stream.table(wh, f"SELECT clip_id, v FROM {scan} WHERE kind = ? ORDER BY v", ["a"])
    assert got.column("v").to_pylist() == sorted(
        r["v"] for r in table.to_pylist() if r["kind"] == "a"
    )
    none = stream.table(wh, f"SELECT clip_id, v FROM {scan} WHERE kind = ?", ["no such kind"])
    assert none.num_rows == 0 and none.schema.names == ["clip_id", "v"]
    assert none.schema.field("v").type == pa.int64()
