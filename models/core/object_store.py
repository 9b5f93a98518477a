"""Arrow's S3 file system as DuckDB reads it (#21): DuckDB 2.0 cannot install its httpfs
extension offline, so the Iceberg warehouse (models/core/iceberg.py) registers an fsspec
wrapper of `pyarrow.fs.S3FileSystem` on each DuckDB connection (`register_filesystem`), and
DuckDB reads `s3://bucket/key` through it."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from pyarrow import fs as pafs


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


def download(fs, uri: str, target: Path) -> None:
    """Copy the object at `uri` (`s3://bucket/key`) from `fs` to `target`, whole or not at
    all: written under a `.part` name (never globbed as `*.parquet`), then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        pafs.copy_files(uri.removeprefix("s3://"), str(part), source_filesystem=fs)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


class FileCache:
    """Object-store files kept on local disk, by their URI: an Iceberg data file never
    changes (a rewrite is a new file), so a copy is good for as long as it exists. DuckDB
    then reads a local file (Python-level S3 reads cost a 1M-clip day's features up to 1.6x
    the local warehouse's time). A file this process wrote goes in as it is written (`put`);
    one read first is downloaded once. Past `budget` bytes, the files used longest ago are
    removed (never one used in the last `KEEP_S`: a reader may be about to open it)."""

    KEEP_S = 600

    def __init__(self, root: Path, fs, budget: int):
        self.root, self.fs, self.budget = root, fs, budget

    def _path(self, uri: str) -> Path:
        return self.root / f"{hashlib.sha256(uri.encode()).hexdigest()[:40]}.parquet"

    def local(self, uri: str) -> str:
        """A local path holding the file at `uri` (downloaded when not cached)."""
        target = self._path(uri)
        if target.exists():
            os.utime(target)  # used now
            return str(target)
        download(self.fs, uri, target)
        return str(target)

    def put(self, uri: str, file: Path) -> None:
        """Keep `file`, just uploaded to `uri`, as its cached copy; then trim the cache."""
        self.root.mkdir(parents=True, exist_ok=True)
        part = self._path(uri).with_name(f".{uuid.uuid4().hex}.part")
        try:
            os.link(file, part)
        except OSError:
            shutil.copyfile(file, part)
        os.replace(part, self._path(uri))
        self.trim()

    def trim(self) -> None:
        files = [(p.stat(), p) for p in self.root.glob("*.parquet")]
        total = sum(st.st_size for st, _ in files)
        now = time.time()
        for st, p in sorted(files, key=lambda f: f[0].st_mtime):
            if total <= self.budget or now - st.st_mtime < self.KEEP_S:
                break
            p.unlink(missing_ok=True)
            total -= st.st_size
