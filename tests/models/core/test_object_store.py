"""The S3 files DuckDB reads through (models/core/object_store.py): each thread reads at its
own position. DuckDB's threads share one handle per file and read it as seek-then-read; with
one shared position a thread read another's bytes (a Snappy or Thrift error at 1M rows)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from pyarrow import fs as pafs

from models.core.object_store import _PositionalFile


def test_two_threads_seek_and_read_their_own_positions(tmp_path):
    data = bytes(range(256)) * 4
    (tmp_path / "f.bin").write_bytes(data)
    f = _PositionalFile(pafs.LocalFileSystem().open_input_file(str(tmp_path / "f.bin")))
    seeked, read = threading.Barrier(2), threading.Barrier(2)
    got = {}

    def reader(name: str, at: int) -> None:
        if name == "b":
            seeked.wait()  # b seeks after a did, before a reads
        f.seek(at)
        if name == "a":
            seeked.wait()
        read.wait()
        got[name] = (f.read(8), f.tell(), f.read(4))

    threads = [threading.Thread(target=reader, args=a) for a in (("a", 10), ("b", 600))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got["a"] == (data[10:18], 18, data[18:22])
    assert got["b"] == (data[600:608], 608, data[608:612])


def test_reads_stop_at_the_end_and_seek_from_the_end(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"0123456789")
    f = _PositionalFile(pafs.LocalFileSystem().open_input_file(str(tmp_path / "f.bin")))
    assert f.tell() == 0 and f.read(3) == b"012" and f.tell() == 3  # a new thread starts at 0
    assert f.read(0) == b"" and f.tell() == 3
    assert f.seek(-3, 2) == 7 and f.read() == b"789" and f.read(5) == b""
    assert f.seek(2) == 2 and f.seek(3, 1) == 5 and f.read(100) == b"56789"
    buffer = bytearray(4)
    f.seek(1)
    assert f.readinto(buffer) == 4 and bytes(buffer) == b"1234" and f.tell() == 5
    f.close()
    assert f.closed


def test_the_file_cache_downloads_once_keeps_what_was_written_and_trims_the_oldest(tmp_path):
    from models.core.object_store import FileCache

    store = tmp_path / "store"
    store.mkdir()
    for name, size in (("a", 100), ("b", 200), ("c", 300)):
        (store / f"{name}.parquet").write_bytes(bytes([ord(name)]) * size)
    cache = FileCache(tmp_path / "cache", pafs.LocalFileSystem(), budget=450)
    uri = {n: f"s3://{store}/{n}.parquet" for n in "abc"}
    a = cache.local(uri["a"])
    assert Path(a).read_bytes() == b"a" * 100 and a.startswith(str(tmp_path / "cache"))
    (store / "a.parquet").write_bytes(b"changed")  # never happens to a data file: shows the hit
    assert cache.local(uri["a"]) == a and Path(a).read_bytes() == b"a" * 100
    written = tmp_path / "scratch.parquet"
    written.write_bytes(b"w" * 300)
    cache.put(uri["b"], written)  # what this process wrote: no download
    assert Path(cache.local(uri["b"])).read_bytes() == b"w" * 300
    assert not list((tmp_path / "cache").glob(".*"))  # no part file left
    # 400 bytes cached, budget 450: c's 300 push it over; only files unused for KEEP_S go
    cache.local(uri["c"])  # 700 bytes now, over the budget: nothing old enough to go yet
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 3
    old = time.time() - 2 * FileCache.KEEP_S
    b = cache.local(uri["b"])
    os.utime(b, (old - 10, old - 10))  # b, written after a, is the one used longest ago
    os.utime(a, (old, old))
    cache.trim()
    left = sorted(Path(p).read_bytes()[:1] for p in (tmp_path / "cache").glob("*.parquet"))
    assert left == [b"a", b"c"]  # b (the oldest use) removed: 400 bytes, under the budget
    cache.budget = 0
    cache.trim()  # all over budget: a (old) goes, c (used in the last KEEP_S) stays
    left = [Path(p).read_bytes()[:1] for p in (tmp_path / "cache").glob("*.parquet")]
    assert left == [b"c"]


def test_the_cache_budget_is_a_number_of_gb(monkeypatch):
    from models.core.settings import iceberg_cache_bytes

    monkeypatch.delenv("CLIPFLOW_ICEBERG_CACHE_GB", raising=False)
    assert iceberg_cache_bytes() == 20 * 2**30
    monkeypatch.setenv("CLIPFLOW_ICEBERG_CACHE_GB", "0.5")
    assert iceberg_cache_bytes() == 2**29
    monkeypatch.setenv("CLIPFLOW_ICEBERG_CACHE_GB", "0")
    assert iceberg_cache_bytes() == 0
    for bad in ("-1", "lots", "nan", "2e6"):
        monkeypatch.setenv("CLIPFLOW_ICEBERG_CACHE_GB", bad)
        with pytest.raises(ValueError, match="CLIPFLOW_ICEBERG_CACHE_GB"):
            iceberg_cache_bytes()


def test_duckdb_reads_s3_paths_through_the_wrapper_as_it_reads_local_files(tmp_path):
    """The wrapper DuckDB registers (here over Arrow's local file system, which takes the
    same paths once `s3://` is stripped): a many-row-group file read by 2 threads."""
    import duckdb

    from models.core.object_store import duckdb_filesystem

    con = duckdb.connect()
    con.execute("SET threads = 2")
    path = tmp_path / "big.parquet"
    con.execute(f"COPY (SELECT range AS a, md5(range::VARCHAR) AS b FROM range(600000)) "
                f"TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 50000)")  # fmt: skip
    fs = duckdb_filesystem(pafs.LocalFileSystem())
    assert fs.protocol == "s3"
    con.register_filesystem(fs)
    q = "SELECT count(*), sum(a), count(DISTINCT b), max(b) FROM read_parquet('{}')"
    want = con.execute(q.format(path)).fetchall()
    for _ in range(3):
        assert con.execute(q.format(f"s3://{path}")).fetchall() == want
    with fs.open(f"s3://{tmp_path}/out.bin", "wb") as f:  # writes keep fsspec's own file
        f.write(b"written")
    assert (tmp_path / "out.bin").read_bytes() == b"written"
