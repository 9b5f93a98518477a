"""The fast Redis write's engine, near Redis's own mass-insertion speed: a batch of rows
encoded as whole RESP commands at once (Arrow kernels over columns, no Python loop over
rows or values), a batch's check and write sent while the next batch is encoded.

Per batch: (1) the check, a read-only script (`redis_layout.DECIDE_LUA`, 50 keys a call)
answering one digit per key and view (skip, write, same time); (2) the write: rows newer in
every view as one plain `HSET` each of exactly the bytes Feast writes (every view of the
write in one command: a clip's features and its score in its one Feast hash), prepared with
the batch while Redis applies the previous one; rows newer in some views only, `HSET`s of
those views; rows of the stored time in any view go whole through the content-aware upsert
script (`redis_layout.UPSERT_LUA`, 50 keys a call), which compares the values in Redis.
Plain `HSET`s, because a Lua call writing the same bytes costs Redis about 1.5-2x (measured
here with `redis-cli --pipe`). A check by pipelined `HMGET`s costs Redis less but its
replies cost this process more, and the write then waited on it: slower overall (1.44x
against 1.12x of the floor at 490k clips).

Between a batch's check and its write, the writer holds the online store's writer lease
(`writer_lease`): no other clipflow writer can land a newer row that our older one would
overwrite. Both cores work: this process encodes batch i+1 while Redis (a process of its
own) applies batch i, sent by one background thread on one connection. A second
connection would not help: Redis applies commands on one thread, and the encoder keeps
ahead of it (bench `online_night`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo.online_values import BIN, bulk_strings, bulk_timestamps, bulk_values, join_cells
from feature_repo.redis_cluster import ClusterRoutes, is_cluster
from feature_repo.redis_layout import (
    DECIDE_SHA,
    UPSERT_SHA,
    WRITER_LEASE,
    ViewFields,
    bulk,
    command_head,
    send_packed,
    string_key_prefix,
    string_keys,
)

KEYS_PER_CALL = 50
IN_FLIGHT = 2  # writes queued behind the one Redis is applying
LEASE_S = 60  # the writer lease's life without a batch (extended at every batch's check)
LEASE_WAIT_S = 600  # how long a writer waits for another's lease
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
    """Encodes batches of rows as the writer's commands, for fixed views and TTL."""

    def __init__(self, key_col: str, views: list[ViewPlan], config, ttl) -> None:
        self.key_col, self.views, self.config = key_col, views, config
        self.ttl = b"%d" % int(ttl) if ttl else b""
        upsert = [self.ttl, b"%d" % len(views)]
        for view in views:
            upsert += view.header()
        self.upsert_header = (b"".join(bulk(a) for a in upsert), len(upsert))
        decide = [b"%d" % len(views), *(v.fields.ts_field for v in views)]
        self.decide_header = (b"".join(bulk(a) for a in decide), len(decide))
        self.per_key = sum(1 + len(v.fields.fields) for v in views)
        self.names = [pa.scalar(bulk(v.fields.ts_field), BIN) for v in views]

    def keys(self, ids: pa.Array) -> pa.BinaryArray:
        """The RESP bulk strings of the entities' Redis keys (redis_layout's layout)."""
        return bulk_strings(self.raw_keys(ids))

    def raw_keys(self, ids: pa.Array) -> pa.BinaryArray:
        """The entities' Redis keys (redis_layout's layout)."""
        if self.config.entity_key_serialization_version != 3:
            return pa.array(string_keys(self.key_col, ids.to_pylist(), self.config), BIN)
        raw = ids.cast(BIN)
        lengths = pc.binary_length(raw).to_numpy(zero_copy_only=False).astype("<u4")
        le32 = pa.Array.from_buffers(pa.binary(4), len(raw), [None, pa.py_buffer(lengths)])
        prefix = pa.scalar(string_key_prefix(self.key_col), BIN)
        project = pa.scalar(self.config.project.encode(), BIN)
        return join_cells([prefix, le32.cast(BIN), raw, project])

    def prepare(self, batch: pa.Table, slots: np.ndarray | None = None) -> Prepared:
        """A batch's keys, times and values encoded, and the check of its times. `slots`:
        on a Redis Cluster, the rows' key slots, the rows sorted by them (a script call
        holds keys of one slot)."""
        ids = batch.column(self.key_col).combine_chunks()
        if ids.null_count:
            raise ValueError(f"{ids.null_count} row(s) without a {self.key_col}")
        if pc.count_distinct(ids).as_py() < len(ids):  # its rows would race in one HSET batch
            counts = pc.value_counts(ids)
            twice = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"]
            raise ValueError(f"a batch holds {self.key_col} {twice} more than once: keep "
                             "the newest row per entity (online_write.latest_per_entity)")  # fmt: skip
        stamps, values = [], []
        for view in self.views:
            ts = micros(batch.column(view.ts_col))
            cell = bulk_timestamps(ts.fill_null(0).to_numpy(zero_copy_only=False))
            stamps.append(pc.if_else(ts.is_null(), _NO_ROW, cell) if ts.null_count else cell)
            values.append([bulk_values(batch.column(c), vt)
                           for c, vt in zip(view.columns, view.value_types, strict=True)])  # fmt: skip
        keys = self.keys(ids.cast(pa.string()))
        check = _calls(DECIDE_SHA, keys, self.decide_header, join_cells(stamps),
                       len(self.views), slots)  # fmt: skip
        offered = np.array([len(batch) - batch.column(v.ts_col).null_count for v in self.views])
        prep = Prepared(keys, stamps, values, check, offered, None, slots)
        # the commands of the common case, every view newer: built while Redis works
        return dataclasses.replace(prep, hsets=self.hsets(prep, range(len(self.views))))

    def hsets(self, prep: Prepared, views, sel: pa.Array | None = None) -> pa.BinaryArray:
        """Per row (of `sel`, a mask), `HSET key (ts_field ts (field value)*)*` of `views`
        (indices), then `EXPIRE key ttl` under a TTL: the bytes Feast's own write stores."""

        def rows(arr: pa.Array) -> pa.Array:
            return arr if sel is None else arr.filter(sel)

        n_args = 1 + sum(2 * (1 + len(self.views[v].fields.fields)) for v in views)
        cells = [pa.scalar(command_head(b"HSET", n_args), BIN), rows(prep.keys)]
        for v in views:
            cells += [self.names[v], rows(prep.stamps[v])]
            for field, value in zip(self.views[v].fields.fields, prep.values[v], strict=True):
                cells += [pa.scalar(bulk(field), BIN), rows(value)]
        if self.ttl:
            cells += [pa.scalar(command_head(b"EXPIRE", 2), BIN), rows(prep.keys),
                      pa.scalar(bulk(self.ttl), BIN)]  # fmt: skip
        return join_cells(cells)

    def writes(
        self, prep: Prepared, status: np.ndarray
    ) -> tuple[bytes | memoryview, int, np.ndarray, int]:
        """(the commands writing a checked batch, how many replies, the rows sent to the
        upsert script, how many calls of it). `status` (rows x views): the check's digits.
        A row with a view of the stored time goes whole through `UPSERT_LUA` (its values
        decide); any other row is one plain `HSET` of its views to write (and an `EXPIRE`
        under a TTL)."""
        per_row = 2 if self.ttl else 1
        if (status == 1).all():  # every row newer in every view: the prepared commands
            return _buffer(prep.hsets), len(status) * per_row, np.zeros(0, dtype=np.int64), 0
        by_script = np.flatnonzero((status == 2).any(axis=1))
        plain = (status == 1) & ~(status == 2).any(axis=1, keepdims=True)
        parts, replies = [], 0
        for pattern in np.unique(plain[plain.any(axis=1)], axis=0):
            sel = (plain == pattern).all(axis=1)
            if pattern.all():  # every view written: the prepared commands (most rows)
                parts.append(_buffer(prep.hsets if sel.all() else prep.hsets.filter(sel)))
            else:
                parts.append(_buffer(self.hsets(prep, np.flatnonzero(pattern), pa.array(sel))))
            replies += int(sel.sum()) * per_row
        if len(by_script):
            rows = pa.array(by_script)
            cells = []
            for v in range(len(self.views)):
                cells += [prep.stamps[v].take(rows), *(c.take(rows) for c in prep.values[v])]
            keys = prep.keys.take(rows)
            slots = None if prep.slots is None else prep.slots[by_script]
            script, calls = _calls(UPSERT_SHA, keys, self.upsert_header, join_cells(cells),
                                   self.per_key, slots)  # fmt: skip
            parts.append(script)
            replies += calls
        else:
            calls = 0
        return b"".join(parts), replies, by_script, calls

    def count(self, offered: np.ndarray, status: np.ndarray, by_script: np.ndarray,
              calls: int, replies: list) -> Counts:  # fmt: skip
        """Per view: rows offered; skipped, written, corrected (the check's digits for the
        plain rows, the upsert script's replies, the last `calls` of `replies`, for its
        rows)."""
        out = np.zeros((len(self.views), 3), dtype=np.int64)
        plain = np.ones(len(status), dtype=bool)
        plain[by_script] = False
        if calls:
            codes = np.concatenate([np.asarray(r, dtype=np.int64) for r in replies[-calls:]])
            for v in range(len(self.views)):
                out[v] += np.bincount((codes // 3**v) % 3, minlength=3)[:3]
        for v in range(len(self.views)):
            out[v, 1] += int((status[plain, v] == 1).sum())
            out[v, 0] += int((status[plain, v] == 0).sum())
        # a view's rows without a row of it (null time) count as neither offered nor skipped
        out[:, 0] -= len(status) - offered
        return Counts(offered, out)


@dataclass(frozen=True)
class Prepared:
    keys: pa.BinaryArray  # the rows' Redis keys as bulk strings
    stamps: list[pa.BinaryArray]  # per view, the rows' times ('-': no row of the view)
    values: list[list[pa.BinaryArray]]  # per view, per feature, the rows' values
    check: tuple[bytes, int]  # the `DECIDE_LUA` calls of the rows, how many
    offered: np.ndarray  # per view, the rows that have a row of it
    hsets: pa.BinaryArray | None  # per row, its plain write of every view (`Encoder.hsets`)
    slots: np.ndarray | None = None  # on a cluster, the rows' key slots (sorted)


def _calls(sha: bytes, keys: pa.BinaryArray, header: tuple[bytes, int],
           rows: pa.BinaryArray, per_key: int,
           slots: np.ndarray | None = None) -> tuple[bytes, int]:  # fmt: skip
    """`EVALSHA sha m key.. header.. row..` per `KEYS_PER_CALL` rows, a call's keys all of
    one slot when `slots` (sorted) are given: (bytes, calls)."""
    kbuf, koff = _parts(keys)
    rbuf, roff = _parts(rows)
    n, parts, heads = len(keys), [], {}
    bounds = _call_bounds(n, slots)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        m = hi - lo
        if m not in heads:
            heads[m] = (command_head(b"EVALSHA", 2 + m + header[1] + m * per_key)
                        + bulk(sha) + bulk(b"%d" % m))  # fmt: skip
        parts += [heads[m], kbuf[koff[lo] : koff[hi]], header[0], rbuf[roff[lo] : roff[hi]]]
    return b"".join(parts), len(bounds) - 1


def _call_bounds(n: int, slots: np.ndarray | None) -> np.ndarray:
    """Where each script call's rows start, and `n`: every `KEYS_PER_CALL` rows, and at each
    change of slot (then counted afresh) when `slots` are given."""
    pos = np.arange(n)
    if slots is None:
        return np.append(pos[::KEYS_PER_CALL], n)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = slots[1:] != slots[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, pos, 0))
    return np.append(pos[(pos - run_start) % KEYS_PER_CALL == 0], n)


def _parts(arr: pa.BinaryArray) -> tuple[memoryview, np.ndarray]:
    """(the data buffer, the n+1 offsets into it) of a binary array."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    return memoryview(arr.buffers()[2]), offsets[arr.offset : arr.offset + len(arr) + 1]


def _buffer(arr: pa.BinaryArray) -> memoryview:
    """The bytes of all of a binary array's values, in order."""
    buf, offsets = _parts(arr)
    return buf[offsets[0] : offsets[-1]]


def write_batches(client, encoder: Encoder, batches: Iterable[pa.Table], send=None) -> Counts:
    """Check and write every batch under the store's writer lease; the counts.

    One background thread per Redis server talks to it, in order: batch i's check, then its
    write; the next batch is encoded meanwhile. On a Redis Cluster (`RedisCluster`) a batch
    is split by the node serving each row's key slot (`ClusterRoutes`), so every node gets
    its rows' check and write as one pipelined write each, all nodes at once.
    `send(client, payload, n_replies)` defaults to one write on one connection of the
    (node's) client's pool (`redis_layout.send_packed`)."""
    send = send or (lambda c, payload, n: send_packed(c.connection_pool, payload, n))
    total = Counts.zero(len(encoder.views))
    routes = ClusterRoutes(client, encoder.key_col, encoder.raw_keys) if is_cluster(client) \
        else None  # fmt: skip
    with writer_lease(client, encoder.config.project) as lease, contextlib.ExitStack() as stack:
        pools: dict[int, ThreadPoolExecutor] = {}

        def pool_of(c) -> ThreadPoolExecutor:
            if id(c) not in pools:
                pools[id(c)] = stack.enter_context(
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="online-write"))  # fmt: skip
            return pools[id(c)]

        pending: collections.deque[tuple] = collections.deque()

        def settle(write: Future, offered, status, by_script, calls) -> Counts:
            return encoder.count(offered, status, by_script, calls, write.result())

        try:
            for batch in _non_empty(batches):
                parts = routes.split(batch) if routes else [(client, batch, None)]
                preps = [(c, encoder.prepare(b, slots)) for c, b, slots in parts]
                checks = [pool_of(c).submit(_checked, lease, send, c, *prep.check)
                          for c, prep in preps]  # fmt: skip
                for (c, prep), check in zip(preps, checks, strict=True):
                    status = np.frombuffer(b"".join(check.result()), dtype=np.uint8) - ord("0")
                    status = status.reshape(len(prep.keys), len(encoder.views))
                    payload, n_replies, by_script, calls = encoder.writes(prep, status)
                    write = pool_of(c).submit(send, c, payload, n_replies)
                    pending.append((write, prep.offered, status, by_script, calls))
                del payload, preps, parts
                while len(pending) > IN_FLIGHT * max(1, len(pools)):
                    total = total + settle(*pending.popleft())
            while pending:
                total = total + settle(*pending.popleft())
        except BaseException:
            for write, *_ in pending:
                write.cancel()
            raise
    return total


def _non_empty(batches: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.Table]:
    for batch in batches:
        if batch.num_rows:
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _checked(lease, send, client, payload: bytes, n: int) -> list:
    """The check's replies, the writer lease extended first (it must still be ours)."""
    lease.reacquire()
    return send(client, payload, n)


@contextmanager
def writer_lease(client, project: str):
    """The online store's writer lease (`redis_layout.WRITER_LEASE`, a redis-py `Lock`):
    held from a batch's check to its write, so that no other clipflow writer lands in
    between. Waits up to `LEASE_WAIT_S` for another writer; a lease that expired under us
    (`LEASE_S` without a batch) fails the write (`LockNotOwnedError`)."""
    import redis

    name = WRITER_LEASE.format(project=project)
    lease = client.lock(name, timeout=LEASE_S, blocking_timeout=LEASE_WAIT_S, thread_local=False)
    if not lease.acquire():
        raise redis.exceptions.LockError(
            f"another clipflow writer held the online store's writer lease {name!r} for "
            f"more than {LEASE_WAIT_S} s; nothing was written"
        )
    try:
        yield lease
    except BaseException:
        with contextlib.suppress(redis.RedisError, OSError):  # the first error is the news
            lease.release()
        raise
    lease.release()  # LockNotOwnedError: it expired while we wrote, the write is not sure
