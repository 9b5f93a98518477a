"""The S3 files DuckDB reads through (models/core/object_store.py): each thread reads at its
own position. DuckDB's threads share one handle per file and read it as seek-then-read; with
one shared position a thread read another's bytes (a Snappy or Thrift error at 1M rows)."""

from __future__ import annotations

import threading

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
    assert f.seek(-3, 2) == 7 and f.read() == b"789" and f.read(5) == b""
    assert f.seek(2) == 2 and f.seek(3, 1) == 5 and f.read(100) == b"56789"
    buffer = bytearray(4)
    f.seek(1)
    assert f.readinto(buffer) == 4 and bytes(buffer) == b"1234" and f.tell() == 5
    f.close()
    assert f.closed
