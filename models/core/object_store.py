"""Arrow's S3 file system as DuckDB reads it (#21): DuckDB 2.0 cannot install its httpfs
extension offline, so the Iceberg warehouse (models/core/iceberg.py) registers an fsspec
wrapper of `pyarrow.fs.S3FileSystem` on each DuckDB connection (`register_filesystem`), and
DuckDB reads `s3://bucket/key` through it."""

from __future__ import annotations

import io
import threading


def duckdb_filesystem(fs):
    """Arrow's S3 file system as an fsspec one with protocol `s3`, for DuckDB; its files
    read at each thread's own position (see `_PositionalFile`)."""
    from fsspec.implementations.arrow import ArrowFSWrapper

    class _S3(ArrowFSWrapper):
        protocol = "s3"

        def _open(self, path, mode="rb", block_size=None, seekable=True, **kwargs):
            if mode != "rb":
                return super()._open(path, mode, block_size, seekable, **kwargs)
            return _PositionalFile(self.fs.open_input_file(path))

    return _S3(fs)


class _PositionalFile(io.RawIOBase):
    """A read-only S3 file whose position belongs to the calling thread. DuckDB's threads
    share one handle per file and read it as seek-then-read: with one shared position, two
    threads reading two row groups at once read each other's bytes (measured: "Snappy
    decompression failure", "invalid TType"). Each read is a positional `read_at`."""

    def __init__(self, stream):
        super().__init__()
        self.stream, self.size = stream, stream.size()
        self._local = threading.local()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return getattr(self._local, "pos", 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._local.pos = {0: 0, 1: self.tell(), 2: self.size}[whence] + offset
        return self._local.pos

    def read(self, n: int = -1) -> bytes:
        pos = self.tell()
        n = self.size - pos if n is None or n < 0 else min(n, self.size - pos)
        data = self.stream.read_at(n, pos) if n > 0 else b""
        self._local.pos = pos + len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()
