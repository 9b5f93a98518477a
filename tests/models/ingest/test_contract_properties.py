"""The contract's two enforcers agree on every row: ingestion quarantines a row exactly when
the table's Great Expectations suite, run on that row alone as a partition, fails it.

Rows are generated from the contract's own declarations (each field's type and rules), with
valid values, boundaries, near misses, NaN, infinities, blank strings and nulls, landed as
Parquet (CSV has no NaN and reads an empty value as null). Rules that need another table
(the clip must exist, the row comes after the clip) are checked by the ingestion only, so
rows that name a clip name the one clip the warehouse holds, created at the start of the day.
"""

from __future__ import annotations

import math
import os
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import ARROW_TYPES, GOOD_CLIP, Landing

from models.core.contract import (
    ASSIGNMENTS,
    CLIPS,
    ENGAGEMENT,
    FLOAT32_MAX,
    LABELS,
    USER_METRICS,
    Field,
    Rule,
    Table,
)
from models.core.warehouse import Warehouse, connect
from models.ingest.day import ingest_day
from models.ingest.expectations import build_suite

DAY = date(2026, 1, 1)
NOW = datetime(2026, 1, 2, tzinfo=UTC)
CLIP = {**GOOD_CLIP, "created_at": datetime.combine(DAY, time(), UTC)}
# blank to DuckDB's trim (Unicode space separators), and not blank to it (tab, newline)
BLANK = ["", " ", "  ", "\u00a0", "\u3000", "\u2003 "]
EDGES = [*BLANK, "\t", "\n", " x "]
ANY = object()  # an edge list's stand-in for "any value of the type"


# -- rows from the contract -----------------------------------------------------------------
# A row is a likely-valid row of the table with one or two fields replaced by an edge value
# (so that one broken rule decides the verdict, not five): on and next to every bound,
# NaN, infinities, blank strings, near misses of a set or a pattern, nulls.
def _bounds(rule: Rule | None) -> dict:
    return rule.params if rule is not None and rule.kind == "between" else {}


def likely_valid(fl: Field, table: Table) -> st.SearchStrategy:
    rule = fl.rules[0] if fl.rules else None
    p = _bounds(rule)
    if fl.name == "clip_id" and any(tr.needs_clips for tr in table.table_rules):
        return st.just(CLIP["clip_id"])  # the clip the warehouse holds
    if fl.type == "string" and rule is not None and rule.kind == "in_set":
        return st.sampled_from(rule.params["values"])
    if fl.type == "string" and rule is not None and rule.kind == "regex":
        return st.from_regex(rule.params["pattern"], fullmatch=True)
    if fl.type == "string":
        return st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6)
    if fl.type == "float":
        return st.floats(
            p.get("min"),
            p.get("max"),
            exclude_min=bool(p.get("strict_min")),
            exclude_max=bool(p.get("strict_max")),
            allow_nan=False,
            allow_infinity=False,
        )
    if fl.type == "int":
        return st.integers(0, 10**6)
    if fl.type == "bool":
        return st.booleans()
    if fl.type == "timestamp":  # within the day, after the clip was created
        return st.datetimes(
            datetime.combine(DAY, time()), datetime.combine(DAY, time.max), timezones=st.just(UTC)
        )
    raise ValueError(fl.type)


def edge(fl: Field, table: Table) -> st.SearchStrategy:
    """Any value of the field's type, an edge value of its type and rule, or null: one list
    sampled, so that each edge turns up within a few dozen examples (Hypothesis favours the
    first entry, so it is the broadest)."""
    rule = fl.rules[0] if fl.rules else None
    if fl.name == "clip_id" and any(tr.needs_clips for tr in table.table_rules):
        return st.sampled_from([*BLANK, None])  # any other id is an unknown clip: not GE's
    if fl.type == "float":
        edges = [0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e39, -1e39]
        edges += [FLOAT32_MAX, math.nextafter(FLOAT32_MAX, math.inf)]  # float32's edge
        edges += [-FLOAT32_MAX, math.nextafter(-FLOAT32_MAX, -math.inf)]
        for bound in (_bounds(rule).get("min"), _bounds(rule).get("max")):
            if bound is not None:
                b = float(bound)
                edges += [b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf)]
        anything = st.floats()
    elif fl.type == "int":
        edges, anything = [-1, 0, 1, -(2**63), 2**63 - 1], st.integers(-(2**63), 2**63 - 1)
    elif fl.type == "string":
        edges, anything = EDGES, st.text(max_size=6)
        if rule is not None and rule.kind in ("in_set", "regex"):
            anything = st.one_of(anything, likely_valid(fl, table).flatmap(_near_misses))
    else:  # bool, timestamp: only null is wrong
        edges, anything = [], likely_valid(fl, table)
    return st.sampled_from([ANY, *edges, None]).flatmap(
        lambda v: anything if v is ANY else st.just(v)
    )


def _near_misses(v: str) -> st.SearchStrategy[str]:
    return st.sampled_from([v.lower(), v.upper(), f" {v}", f"{v}\n", f"{v}x", v[:-1]])


@st.composite
def rows(draw, table: Table) -> dict:
    row = draw(st.fixed_dictionaries({fl.name: likely_valid(fl, table) for fl in table.fields}))
    changed = draw(
        st.lists(st.sampled_from(table.fields), min_size=1, max_size=2, unique_by=lambda f: f.name)
    )
    for fl in changed:
        row[fl.name] = draw(edge(fl, table))
    return row


# -- the two verdicts ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def suite_verdict():
    """(table, DataFrame) -> (success, failed expectation types), on one ephemeral GE
    context for the whole module (a context takes seconds to make)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas(name="rows")
    built: dict[str, tuple] = {}

    def verdict(table: Table, df) -> tuple[bool, list[str]]:
        if table.warehouse not in built:
            suite = ctx.suites.add(build_suite(table, require_rows=True))
            asset = source.add_dataframe_asset(name=table.warehouse)
            built[table.warehouse] = (suite, asset.add_batch_definition_whole_dataframe("row"))
        suite, batch_def = built[table.warehouse]
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        res = batch.validate(suite, result_format="BOOLEAN_ONLY")
        failed = [r.expectation_config.type for r in res.results if not r.success]
        return bool(res.success), failed

    return verdict


def arrow_row(table: Table, row: dict) -> pa.Table:
    schema = pa.schema([pa.field(f.name, ARROW_TYPES[f.type]) for f in table.fields])
    return pa.Table.from_pylist([row], schema=schema)


def quarantined(table: Table, row: dict, home: Path) -> tuple[bool, list]:
    """Whether ingesting `row` alone (a Parquet landing file) quarantines it, and why."""
    wh, con = Warehouse(home), connect()
    if table is not CLIPS:
        wh.write("clips", DAY, arrow_row(CLIPS, CLIP))
    Landing(home / "landing").write(table.warehouse, [row])
    res = ingest_day(con, wh, table, home / "landing", DAY, NOW)
    assert not res.files_quarantined
    assert res.rows_valid + res.rows_quarantined == 1
    return res.rows_quarantined == 1, list(res.reasons)


def as_partition(table: Table, row: dict, home: Path):
    """The row as the contract check reads a partition: through the warehouse, with ds."""
    wh = Warehouse(home)
    wh.write("unchecked", DAY, arrow_row(table, row))
    return wh.read("unchecked", DAY, with_ds=True).to_pandas()


def check(table: Table, row: dict, suite_verdict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        rejected, reasons = quarantined(table, row, home)
        passed, failed = suite_verdict(table, as_partition(table, row, home))
    assert rejected != passed, (
        f"ingestion {'quarantines' if rejected else 'keeps'} {row!r} ({reasons}) but the "
        f"suite {'passes' if passed else 'fails'} it ({failed})"
    )


# -- one property per landing table ------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(row=rows(CLIPS))
@example(row={**CLIP, "topic": "  "})  # blank: GE's length >= 1 let it through
@example(row={**CLIP, "creator_id": "\u00a0"})
@example(row={**CLIP, "language": "en\n"})  # GE's regex search let "$" match before "\n"
@example(row={**CLIP, "topic": "\t"})  # not blank to DuckDB's trim: valid for both
@example(row={**CLIP, "bitrate_kbps": math.nan})  # NaN > 0 in DuckDB; null to pandas
def test_clips_quarantine_equals_the_suite(row, suite_verdict):
    check(CLIPS, row, suite_verdict)


@settings(max_examples=40, deadline=None)
@given(row=rows(ENGAGEMENT))
def test_engagement_quarantine_equals_the_suite(row, suite_verdict):
    check(ENGAGEMENT, row, suite_verdict)


@settings(max_examples=30, deadline=None)
@given(row=rows(LABELS))
def test_labels_quarantine_equals_the_suite(row, suite_verdict):
    check(LABELS, row, suite_verdict)


@settings(max_examples=30, deadline=None)
@given(row=rows(ASSIGNMENTS))
@example(
    row={"experiment_id": "e1", "user_id": " ", "variant": "a", "assigned_at": CLIP["created_at"]}
)
def test_assignments_quarantine_equals_the_suite(row, suite_verdict):
    check(ASSIGNMENTS, row, suite_verdict)


@settings(max_examples=30, deadline=None)
@given(row=rows(USER_METRICS))
@example(
    row={"user_id": "u", "event_timestamp": CLIP["created_at"], "metric": "m", "value": math.inf}
)
@example(
    row={"user_id": "u", "event_timestamp": CLIP["created_at"], "metric": "m", "value": math.nan}
)
def test_user_metrics_quarantine_equals_the_suite(row, suite_verdict):
    check(USER_METRICS, row, suite_verdict)
