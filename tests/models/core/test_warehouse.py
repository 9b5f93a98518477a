"""The table seam: Arrow in and out of one partition, atomically; values bound, names and
memory limits checked before they reach SQL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from models.core.warehouse import Warehouse, check_memory_limit, glob_literal

ROWS = pa.table({"clip_id": ["a", "b'; DROP TABLE x; --", "c"], "score": [1.5, 2.5, 3.5]})


@pytest.fixture()
def wh(tmp_path):
    return Warehouse(tmp_path / "home", threads=1, memory_limit="512MiB")


def test_a_written_partition_reads_back_the_same_rows(wh):
    assert wh.write("clip_scores", "2026-11-01", ROWS) == 3
    got = wh.read("clip_scores", "2026-11-01")
    assert got.column_names == ["clip_id", "score"]  # no ds: the caller knows its day
    assert got.sort_by("clip_id").to_pylist() == ROWS.sort_by("clip_id").to_pylist()
    with_ds = wh.read("clip_scores", "2026-11-01", with_ds=True)
    assert {str(d) for d in with_ds.column("ds").to_pylist()} == {"2026-11-01"}


def test_a_rewrite_replaces_the_partition_and_never_appends(wh):
    wh.write("clip_scores", "2026-11-01", ROWS)
    wh.write("clip_scores", "2026-11-01", ROWS.slice(0, 1))
    assert wh.read("clip_scores", "2026-11-01").to_pylist() == ROWS.slice(0, 1).to_pylist()
    assert wh.partitions("clip_scores") == ["2026-11-01"]


def test_where_values_are_bound_not_pasted(wh):
    wh.write("clip_scores", "2026-11-01", ROWS)
    hostile = "b'; DROP TABLE x; --"
    got = wh.read(
        "clip_scores", "2026-11-01", columns=["score"], where="clip_id = ?", params=[hostile]
    )
    assert got.column("score").to_pylist() == [2.5]
    assert wh.read("clip_scores", "2026-11-01").num_rows == 3


def test_a_named_file_is_replaced_alone(wh):
    wh.write("quarantine", "2026-11-01", ROWS.slice(0, 2), name="clips")
    wh.write("quarantine", "2026-11-01", ROWS.slice(2, 1), name="video_metadata")
    wh.write("quarantine", "2026-11-01", ROWS.slice(0, 1), name="clips")
    ids = sorted(wh.read("quarantine", "2026-11-01").column("clip_id").to_pylist())
    assert ids == ["a", "c"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: w.read("clip_scores; DROP", "2026-11-01"), "not a valid table"),
        (lambda w: w.read("clip_scores", "2026-11-01", columns=["score) --"]), "not a valid"),
        (lambda w: w.write("quarantine", "2026-11-01", ROWS, name="../evil"), "not a valid"),
        (lambda w: w.read("clip_scores", "2026-13-01"), "month"),
        (lambda w: w.read("clip_scores", "20261101"), "YYYY-MM-DD"),
        (lambda w: w.read("clip_scores", "2026-11-01' OR 1=1 --"), "YYYY-MM-DD"),
        (lambda w: w.read("clip_scores", "../../2026-11-01"), "YYYY-MM-DD"),
        (lambda w: w.read("clip_scores", "2026-11-02"), "no partition ds=2026-11-02 of table"),
    ],
)
def test_bad_names_days_and_absent_partitions_are_refused(wh, call, message):
    wh.write("clip_scores", "2026-11-01", ROWS)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call(wh)


@pytest.mark.parametrize("ok", ["4GB", "4 GB", "0.5GB", "512MiB", "100B", "2TB"])
def test_memory_limits_that_are_sizes_pass(ok):
    assert check_memory_limit(ok) == ok
    assert check_memory_limit(f" {ok}\n") == ok  # surrounding blanks trimmed, never passed on


@pytest.mark.parametrize(
    "bad", ["4", "GB", "4GBs", "4 gb", "-1GB", "4GB'; SELECT 1; --", "4\nGB", "1e3MB", ""]
)
def test_memory_limits_that_are_not_sizes_are_refused(bad, tmp_path):
    with pytest.raises(ValueError, match="memory_limit"):
        check_memory_limit(bad)
    if bad:
        with pytest.raises(ValueError, match="memory_limit"):
            Warehouse(tmp_path, memory_limit=bad)


def test_a_glob_character_in_a_path_is_literal(tmp_path):
    wh = Warehouse(tmp_path / "h[o]me*")
    other = Warehouse(tmp_path / "home-elsewhere")  # what `h[o]me*` would match as a glob
    other.write("clip_scores", "2026-11-01", ROWS)
    assert glob_literal(wh.root, "*.parquet") == f"{tmp_path}/h[[]o]me[*]/warehouse/*.parquet"
    assert not wh.exists("clip_scores")
    wh.write("clip_scores", "2026-11-01", ROWS.slice(0, 1))
    assert wh.con.sql(f"SELECT count(*) FROM {wh.scan('clip_scores')}").fetchall() == [(1,)]


def test_the_same_rows_in_any_order_give_the_same_file_sorted_by_key(tmp_path):
    """A re-run writes the bytes of the first run whatever order the rows arrive in (DuckDB's
    threads give any order): rows go out by key, then by a hash of the whole row."""
    import hashlib
    import random

    import pyarrow.parquet as pq

    wh = Warehouse(tmp_path / "home", threads=2, memory_limit="512MiB")
    n = 5000  # keys repeat: equal keys with different payloads are ordered by the hash
    rows = pa.table({"clip_id": [f"c{i % 700:04d}" for i in range(n)],
                     "views": [i * 7 % 13 for i in range(n)],
                     "score": [float(i % 11) / 3 for i in range(n)]})  # fmt: skip
    shuffled = rows.take(random.Random(1).sample(range(n), n))
    files = []
    for i, table in enumerate((rows, shuffled)):
        wh.con.register("_in", table)
        try:
            wh.write_partition(wh.con, "t", "2026-11-01", "SELECT * FROM _in", keys=["clip_id"],
                               filename=f"f{i}.parquet")  # fmt: skip
        finally:
            wh.con.unregister("_in")
        [f] = (wh.root / "t" / "ds=2026-11-01").glob("*.parquet")
        files.append(f.read_bytes())
        got = pq.read_table(f)
    assert hashlib.sha256(files[0]).digest() == hashlib.sha256(files[1]).digest()
    ids = got.column("clip_id").to_pylist()
    assert ids == sorted(rows.column("clip_id").to_pylist())  # by key
    assert sorted(got.drop(["ds"]).to_pylist(), key=str) == sorted(rows.to_pylist(), key=str)
