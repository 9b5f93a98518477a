"""The online store never goes back in time: for any sequence of batches written with
`write_online` into a real Redis (clips from a small set, random event times with ties and
microsecond steps, random values, any chunk size), after every batch each clip serves the
row with the newest event time written so far; among rows of that time, the last batch's
(a row of the stored time overwrites it: a re-run's correction; within a batch the first of
its ties is kept)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_repo import online_write
from feature_repo.feature_views import CLIP_FEATURE_FIELDS, CLIP_FEATURE_NAMES

SERVICE = "clip_quality_v1"
CLIPS = 3
EPOCH = datetime(2025, 3, 1, tzinfo=UTC)
_ARROW = {"DOUBLE": pa.float64(), "INT64": pa.int64(), "BOOL": pa.bool_(), "STRING": pa.string()}


def _value(dtype) -> st.SearchStrategy:
    from feast.types import Bool, Float64, Int64

    if dtype == Float64:
        inner = st.floats(allow_nan=False)
    elif dtype == Int64:
        inner = st.integers(-(2**63), 2**63 - 1)
    elif dtype == Bool:
        inner = st.booleans()
    else:
        inner = st.text(max_size=8)
    return st.one_of(st.none(), inner)


features = st.fixed_dictionaries({f.name: _value(f.dtype) for f in CLIP_FEATURE_FIELDS})
# microseconds after EPOCH: a few shared instants (ties, 1 us and 1 s apart) and any other
offsets = st.one_of(
    st.sampled_from([0, 1, 999_999, 1_000_000, 1_000_001]), st.integers(0, 7 * 86_400 * 10**6)
)
rows = st.tuples(st.integers(0, CLIPS - 1), offsets, features)
batches = st.lists(st.lists(rows, max_size=5), min_size=1, max_size=5)


def as_table(ids: list[str], batch: list[tuple]) -> pa.Table:
    schema = pa.schema(
        [
            ("clip_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            *[(f.name, _ARROW[f.dtype.to_value_type().name]) for f in CLIP_FEATURE_FIELDS],
        ]
    )
    return pa.Table.from_pylist(
        [
            {"clip_id": ids[c], "event_timestamp": EPOCH + timedelta(microseconds=us), **values}
            for c, us, values in batch
        ],
        schema=schema,
    )


def served(store, ids: list[str]) -> dict[str, tuple[datetime, dict]]:
    """What the Feast SDK serves for each clip: the stored event time and the values."""
    response = store.get_online_features(
        features=store.get_feature_service(SERVICE), entity_rows=[{"clip_id": c} for c in ids]
    )
    names = list(response.proto.metadata.feature_names.val)
    stamps = response.proto.results[names.index(CLIP_FEATURE_NAMES[0])].event_timestamps
    values = response.to_dict()
    return {
        c: (
            stamps[i].ToDatetime(tzinfo=UTC),
            {k: values[k][i] for k in CLIP_FEATURE_NAMES},
        )
        for i, c in enumerate(ids)
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches, chunk_size=st.integers(1, 4))
def test_each_clip_serves_its_newest_row_after_every_write(
    redis_store, prefix, batches, chunk_size
):
    ids = [f"{prefix}{uuid.uuid4().hex[:8]}-{k}" for k in range(CLIPS)]  # fresh keys
    newest: dict[str, tuple[datetime, dict]] = {}
    for batch in batches:
        result = online_write.write_online(redis_store, as_table(ids, batch), chunk_size=chunk_size)
        assert result.method == "fast"
        kept: dict[str, tuple[datetime, dict]] = {}  # the batch's newest row, first of ties
        for c, us, values in batch:
            when = EPOCH + timedelta(microseconds=us)
            if ids[c] not in kept or when > kept[ids[c]][0]:
                kept[ids[c]] = (when, values)
        for clip, (when, values) in kept.items():
            if clip not in newest or when >= newest[clip][0]:
                newest[clip] = (when, values)
        if newest:
            assert served(redis_store, sorted(newest)) == dict(sorted(newest.items()))
