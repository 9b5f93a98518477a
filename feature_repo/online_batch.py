"""The fast Redis write's engine: a batch of rows encoded as whole RESP commands at once
(Arrow kernels over columns, no Python loop over rows or values), sent while the next batch
is encoded.

Each call of the upsert script (`redis_layout.UPSERT_LUA`) carries `KEYS_PER_CALL` entities
and every view of the write: a clip's features and its score go into its one Feast hash in
one `HSET`, and Redis parses one script call per 50 keys instead of one command per key
(measured here: 50 keys a call cost Redis about what plain `HSET`s of the same bytes cost;
one call a key, twice that). A batch's bytes are built row-wise by
`online_values.join_cells`: per row, the key's bulk string, and the row's timestamps and
values of each view; a call is then four slices (its header, its keys, the views' fields,
its rows).

Both cores work: this process encodes batch i+1 while Redis (a process of its own) applies
batch i, sent by one background thread on one connection with at most `IN_FLIGHT` batches
queued. A second connection would not help: Redis applies commands on one thread, and the
encoder outpaces it (bench `online_night`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo.online_values import BIN, bulk_strings, bulk_timestamps, bulk_values, join_cells
from feature_repo.redis_layout import (
    UPSERT_SHA,
    ViewFields,
    bulk,
    command_head,
    send_packed,
    string_key_prefix,
    string_keys,
)

KEYS_PER_CALL = 50
IN_FLIGHT = 2  # batches encoded ahead of the one Redis is applying
_NO_ROW = pa.scalar(bulk(b"-"), BIN)  # the script's "no row of this view" (the epoch is b"")


@dataclass(frozen=True)
class ViewPlan:
    """One view's part of a write: its hash fields, and where its row is in the batch."""

    fields: ViewFields
    columns: tuple[str, ...]  # the batch's columns holding its features, in feature order
    value_types: tuple[Any, ...]  # Feast ValueTypes of those features
    ts_col: str  # the batch's column of its event time; null: no row of this view

    def header(self) -> list[bytes]:
        return [self.fields.ts_field, b"%d" % len(self.fields.fields), *self.fields.fields]


@dataclass(frozen=True)
class Counts:
    """Per view: rows offered, and of them skipped, written (new or newer), corrected."""

    rows: np.ndarray  # shape (views,)
    status: np.ndarray  # shape (views, 3): skipped, written, corrected

    @staticmethod
    def zero(n_views: int) -> Counts:
        return Counts(np.zeros(n_views, np.int64), np.zeros((n_views, 3), np.int64))

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.rows + other.rows, self.status + other.status)


def micros(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Event times as int64 UTC microseconds (naive times are UTC), nulls kept."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        col = pc.assume_timezone(col, "UTC")
    return col.cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())


class Encoder:
    """Encodes batches of rows as calls of the upsert script, for fixed views and TTL."""

    def __init__(self, key_col: str, views: list[ViewPlan], config, ttl) -> None:
        self.key_col, self.views, self.config = key_col, views, config
        header = [str(int(ttl)).encode() if ttl else b"", b"%d" % len(views)]
        for view in views:
            header += view.header()
        self.header = b"".join(bulk(a) for a in header)
        self.n_header = len(header)
        self.per_key = sum(1 + len(v.fields.fields) for v in views)

    def keys(self, ids: pa.Array) -> pa.BinaryArray:
        """The RESP bulk strings of the entities' Redis keys (redis_layout's layout)."""
        if self.config.entity_key_serialization_version != 3:
            return bulk_strings(pa.array(string_keys(self.key_col, ids.to_pylist(),
                                                     self.config), BIN))  # fmt: skip
        raw = ids.cast(BIN)
        lengths = pc.binary_length(raw).to_numpy(zero_copy_only=False).astype("<u4")
        le32 = pa.Array.from_buffers(pa.binary(4), len(raw), [None, pa.py_buffer(lengths)])
        prefix = pa.scalar(string_key_prefix(self.key_col), BIN)
        project = pa.scalar(self.config.project.encode(), BIN)
        return bulk_strings(join_cells([prefix, le32.cast(BIN), raw, project]))

    def rows(self, batch: pa.Table) -> pa.BinaryArray:
        """Per row: for each view, its timestamp ('-' when null) and values' bulk strings."""
        cells = []
        for view in self.views:
            ts = micros(batch.column(view.ts_col))
            stamps = bulk_timestamps(ts.fill_null(0).to_numpy(zero_copy_only=False))
            if ts.null_count:
                stamps = pc.if_else(ts.is_null(), _NO_ROW, stamps)
            cells.append(stamps)
            cells += [bulk_values(batch.column(c), vt)
                      for c, vt in zip(view.columns, view.value_types, strict=True)]  # fmt: skip
        return join_cells(cells)

    def encode(self, batch: pa.Table) -> tuple[bytes, int]:
        """(the RESP bytes of the batch's script calls, how many calls)."""
        ids = batch.column(self.key_col).combine_chunks()
        if ids.null_count:
            raise ValueError(f"{ids.null_count} row(s) without a {self.key_col}")
        keys, rows = self.keys(ids.cast(pa.string())), self.rows(batch)
        kbuf, koff = _parts(keys)
        rbuf, roff = _parts(rows)
        n, parts, heads = len(keys), [], {}
        for lo in range(0, n, KEYS_PER_CALL):
            hi = min(n, lo + KEYS_PER_CALL)
            m = hi - lo
            if m not in heads:
                heads[m] = (command_head(b"EVALSHA", 2 + m + self.n_header + m * self.per_key)
                            + bulk(UPSERT_SHA) + bulk(b"%d" % m))  # fmt: skip
            parts += [heads[m], kbuf[koff[lo] : koff[hi]], self.header, rbuf[roff[lo] : roff[hi]]]
        return b"".join(parts), -(-n // KEYS_PER_CALL)

    def count(self, replies: list, views_rows: np.ndarray) -> Counts:
        codes = np.concatenate([np.asarray(r, dtype=np.int64) for r in replies])
        status = np.stack([np.bincount((codes // 3**v) % 3, minlength=3)[:3]
                           for v in range(len(self.views))])  # fmt: skip
        # a view's rows without a row of it (null time) count as neither offered nor skipped
        status[:, 0] -= len(codes) - views_rows
        return Counts(views_rows, status)


def _parts(arr: pa.BinaryArray) -> tuple[memoryview, np.ndarray]:
    """(the data buffer, the n+1 offsets into it) of a binary array."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    return memoryview(arr.buffers()[2]), offsets


def write_batches(client, encoder: Encoder, batches: Iterable[pa.Table], send=None) -> Counts:
    """Encode and send every batch (a background thread sends while the next is encoded);
    the counts of the script's replies. `send(client, payload, n_calls)` defaults to one
    write on one connection of the client's pool (`redis_layout.send_packed`)."""
    send = send or (lambda c, payload, n: send_packed(c.connection_pool, payload, n))
    total = Counts.zero(len(encoder.views))
    pending: collections.deque[tuple[Future, np.ndarray]] = collections.deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="online-write") as pool:
        try:
            for batch in _non_empty(batches):
                payload, n_calls = encoder.encode(batch)
                offered = np.array([len(batch) - batch.column(v.ts_col).null_count
                                    for v in encoder.views], dtype=np.int64)  # fmt: skip
                pending.append((pool.submit(send, client, payload, n_calls), offered))
                del payload
                while len(pending) > IN_FLIGHT:
                    fut, offered = pending.popleft()
                    total = total + encoder.count(fut.result(), offered)
            while pending:
                fut, offered = pending.popleft()
                total = total + encoder.count(fut.result(), offered)
        except BaseException:
            for fut, _ in pending:
                fut.cancel()
            raise
    return total


def _non_empty(batches: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.Table]:
    for batch in batches:
        if batch.num_rows:
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
