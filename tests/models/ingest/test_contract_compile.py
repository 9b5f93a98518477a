"""Each contract rule as declared and as compiled: the factories' parameters, the DuckDB
expression judged on values at and next to every bound, the quarantine reason word for word,
and the Great Expectations expectation. The ingestion tests (`test_contract_rules.py`) run
the contract's own tables; these run the rule kinds the tables do not use yet (a strict
maximum, a bound with no minimum, names and values that need quoting)."""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import pytest

from models.core.contract import (
    DEFAULT_FUTURE_SKEW,
    FLOAT32_MAX,
    NOT_BLANK,
    TABLES,
    NotAfter,
    Rule,
    between,
    in_set,
    non_empty,
    regex,
)

COLUMN = 'it\'s a "col"'  # needs both quotings: "" inside an identifier, '' inside a literal


def test_factories_declare_kind_and_params():
    # Rule equality ignores params: compare them one by one
    assert (non_empty().kind, non_empty().params) == ("non_empty", {})
    assert (between().kind, between().params) == (
        "between",
        {"min": None, "max": None, "strict_min": False, "strict_max": False, "float": True},
    )
    strict = between(1, 2, strict_min=True, strict_max=True, float=False)
    assert strict.params == {
        "min": 1,
        "max": 2,
        "strict_min": True,
        "strict_max": True,
        "float": False,
    }
    assert (in_set("a", "b").kind, in_set("a", "b").params) == ("in_set", {"values": ("a", "b")})
    assert (regex("x+").kind, regex("x+").params) == ("regex", {"pattern": "x+"})


def _holds(rule: Rule, value, sql_type: str = "DOUBLE") -> bool:
    """The rule's DuckDB expression on one value in a column named `COLUMN`."""
    quoted = '"' + COLUMN.replace('"', '""') + '"'
    query = f"SELECT ({rule.sql(COLUMN)}) FROM (SELECT CAST(? AS {sql_type}) AS {quoted})"
    return duckdb.connect().execute(query, [value]).fetchone()[0]


BELOW_ZERO = math.nextafter(0.0, -math.inf)
ABOVE_ZERO = math.nextafter(0.0, math.inf)

SQL_CASES = [
    # duration_s: 0 < x <= 600
    (between(0, 600, strict_min=True), 0.0, False),
    (between(0, 600, strict_min=True), ABOVE_ZERO, True),
    (between(0, 600, strict_min=True), -30.0, False),
    (between(0, 600, strict_min=True), 600.0, True),
    (between(0, 600, strict_min=True), math.nextafter(600.0, math.inf), False),
    (between(0, 600, strict_min=True), math.nan, False),
    # scene_cuts_per_min: 0 <= x, no maximum
    (between(0), 0.0, True),
    (between(0), BELOW_ZERO, False),
    (between(0), math.inf, False),  # finite only: +inf crashed training (#16)
    (between(0), FLOAT32_MAX, True),  # the largest float32 is kept
    (between(0), math.nextafter(FLOAT32_MAX, math.inf), False),  # a float32 cast: inf
    (between(0), math.nan, False),
    (between(0, float=False), 2.0**70, True),  # an int rule has no float32 cap (BIGINT)
    # a strict maximum: x < 1
    (between(max=1, strict_max=True), 1.0, False),
    (between(max=1, strict_max=True), math.nextafter(1.0, 0.0), True),
    (between(max=1, strict_max=True), -math.inf, False),
    (between(max=1, strict_max=True), -FLOAT32_MAX, True),
    (between(max=1), 1.0, True),
    (between(max=1), math.nextafter(1.0, 2.0), False),
    # value: only finite, in float32's range, not NaN
    (between(), -math.inf, False),
    (between(), -FLOAT32_MAX, True),
    (between(), math.nextafter(-FLOAT32_MAX, -math.inf), False),
    (between(), math.nan, False),
    (in_set("it's", "b"), "it's", True),
    (in_set("it's", "b"), "b", True),
    (in_set("it's", "b"), "its", False),
    (in_set("it's", "b"), "B", False),
    (regex("^[a-z]{2}$"), "en", True),
    (regex("^[a-z]{2}$"), "eng", False),
    (regex("^[a-z]{2}$"), "En", False),
    (regex("it's"), "it's", True),
    (non_empty(), "x", True),
    (non_empty(), "\t", True),
    (non_empty(), " \u00a0\u3000", False),
    (non_empty(), "", False),
]


@pytest.mark.parametrize(
    "rule,value,valid", SQL_CASES, ids=[f"{r.kind}-{i}" for i, (r, _, _) in enumerate(SQL_CASES)]
)
def test_sql_on_each_side_of_each_bound(rule, value, valid):
    sql_type = "DOUBLE" if isinstance(value, float) else "VARCHAR"
    assert _holds(rule, value, sql_type) is valid


@pytest.mark.parametrize("value,valid", [(0, True), (-1, False), (2**63 - 1, True)])
def test_sql_of_an_int_bound(value, valid):
    assert _holds(between(0, float=False), value, "BIGINT") is valid


DESCRIPTIONS = [
    (between(0, 600, strict_min=True), "d must be 0 < x <= 600"),
    (between(0), "d must be 0 <= x and finite"),
    (between(0, float=False), "d must be 0 <= x"),
    (between(0, strict_min=True), "d must be 0 < x and finite"),
    (between(0, 1), "d must be 0 <= x <= 1"),
    (between(max=1), "d must be x <= 1 and finite"),
    (between(max=1, strict_max=True), "d must be x < 1 and finite"),
    (between(-1, 1, strict_min=True, strict_max=True), "d must be -1 < x < 1"),
    (between(), "d must be x and finite"),
    (in_set("480p", "4K"), "d must be one of 480p, 4K"),
    (regex("^[a-z]{2}$"), "d must match ^[a-z]{2}$"),
    (non_empty(), "d must be non-empty"),
]


@pytest.mark.parametrize(
    "rule,text", DESCRIPTIONS, ids=[f"{r.kind}-{i}" for i, (r, _) in enumerate(DESCRIPTIONS)]
)
def test_describe_word_for_word(rule, text):
    assert rule.describe("d") == text


@pytest.mark.parametrize("method", ["describe", "sql", "expectation"])
def test_an_unknown_kind_is_an_error_naming_it(method):
    with pytest.raises(ValueError, match="^no_such_kind$"):
        getattr(Rule("no_such_kind"), method)("d")


def test_field_finds_the_named_field():
    for table in TABLES.values():
        assert [table.field(name).name for name in table.columns] == table.columns
    assert TABLES["clips"].field("fps").rules[0].params["max"] == 120


@pytest.fixture(scope="module")
def gxe():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations.expectations as gxe

    return gxe


def test_expectations_of_each_kind(gxe):
    assert non_empty().expectation("d") == gxe.ExpectColumnValuesToMatchRegex(
        column="d", regex=NOT_BLANK
    )
    assert in_set("a", "b").expectation("d") == gxe.ExpectColumnValuesToBeInSet(
        column="d", value_set=["a", "b"]
    )
    # GE searches: the pattern is anchored to a full match, as DuckDB's regexp_full_match
    assert regex("[a-z]{2}").expectation("d") == gxe.ExpectColumnValuesToMatchRegex(
        column="d", regex=r"\A(?:[a-z]{2})\Z"
    )


BETWEEN_EXPECTATIONS = [
    (between(0, 600, strict_min=True), dict(min_value=0, max_value=600, strict_min=True)),
    (between(0), dict(min_value=0, max_value=FLOAT32_MAX)),
    (between(0, float=False), dict(min_value=0, max_value=None)),
    (between(max=1, strict_max=True), dict(min_value=-FLOAT32_MAX, max_value=1, strict_max=True)),
    (between(), dict(min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX)),
    (between(-1, 1), dict(min_value=-1, max_value=1)),
]


@pytest.mark.parametrize(
    "rule,kwargs",
    BETWEEN_EXPECTATIONS,
    ids=[f"between-{i}" for i in range(len(BETWEEN_EXPECTATIONS))],
)
def test_between_expectation(gxe, rule, kwargs):
    expected = {"strict_min": False, "strict_max": False, **kwargs}
    assert rule.expectation("d") == gxe.ExpectColumnValuesToBeBetween(column="d", **expected)


def test_no_bound_is_no_expectation():
    """An int rule without bounds checks nothing more than the type: no expectation."""
    assert between(float=False).expectation("d") is None


# -- float columns and the future bound (#16, cases 5 and 6) ----------------------------------
def test_every_float_column_of_every_table_is_finite_and_float32():
    """A float column without a float rule would let +inf and 1e39 through: none has one."""
    floats = [(t.warehouse, f) for t in TABLES.values() for f in t.fields if f.type == "float"]
    assert len(floats) == 9  # clips 6, engagement 1, labels 1, user_metrics 1
    for table, f in floats:
        kinds = [(r.kind, r.params.get("float")) for r in f.rules]
        assert ("between", True) in kinds, (table, f.name)
        rule = next(r for r in f.rules if r.kind == "between")
        for bad in (math.inf, -math.inf, math.nan, 1e39, -1e39):
            assert not _holds(rule, bad), (table, f.name, bad)
        exp = rule.expectation(f.name)
        assert exp.max_value <= FLOAT32_MAX and exp.min_value >= -FLOAT32_MAX


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _ts_holds(rule: NotAfter, value: datetime | None) -> bool | None:
    quoted = '"' + COLUMN.replace('"', '""') + '"'
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Tokyo'")  # the bound is an instant, whatever the zone
    query = f"SELECT ({rule.sql(COLUMN)}) FROM (SELECT CAST(? AS TIMESTAMPTZ) AS {quoted})"
    return con.execute(query, [value]).fetchone()[0]


@pytest.mark.parametrize(
    "skew,value,valid",
    [
        (timedelta(minutes=5), NOW + timedelta(minutes=5), True),  # on the bound: kept
        (timedelta(minutes=5), NOW + timedelta(minutes=5, microseconds=1), False),
        (timedelta(minutes=5), NOW - timedelta(days=400), True),  # any past day: a backfill
        (timedelta(0), NOW, True),
        (timedelta(0), NOW + timedelta(microseconds=1), False),
        (timedelta(days=1), NOW + timedelta(days=1), True),
        (timedelta(days=1), NOW + timedelta(days=365), False),  # next year
        (timedelta(minutes=5), None, None),  # null is the required rule's, not this one's
    ],
)
def test_not_after_sql_at_its_bound(skew, value, valid):
    assert _ts_holds(NotAfter(NOW, skew), value) is valid


def test_not_after_bound_is_an_instant_in_any_zone():
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    rule = NotAfter(tokyo, timedelta(seconds=90))
    assert rule.bound == NOW + timedelta(seconds=90)
    assert _ts_holds(rule, NOW + timedelta(seconds=90)) is True
    assert _ts_holds(rule, NOW + timedelta(seconds=90, microseconds=1)) is False


def test_not_after_default_skew_is_five_minutes():
    assert timedelta(minutes=5) == DEFAULT_FUTURE_SKEW
    assert NotAfter(NOW).skew == DEFAULT_FUTURE_SKEW


def test_not_after_describes_the_rule_with_skew_and_bound(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # the text says UTC whatever the machine's zone
    time.tzset()
    monkeypatch.undo()
    try:
        _describe_not_after()
    finally:
        time.tzset()


def _describe_not_after():
    assert NotAfter(NOW, timedelta(minutes=5)).describe(COLUMN) == (
        f"{COLUMN} must be <= ingestion time + 300 s (2026-05-01T12:05:00Z): dated in the future"
    )
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    assert NotAfter(tokyo, timedelta(seconds=1.5)).describe("t") == (
        "t must be <= ingestion time + 1.5 s (2026-05-01T12:00:01.500000Z): dated in the future"
    )


@pytest.mark.parametrize(
    "now,skew,why",
    [
        (datetime(2026, 5, 1, 12), timedelta(0), "timezone-aware"),
        (NOW, timedelta(microseconds=-1), "skew must be >= 0"),
    ],
)
def test_not_after_refuses_a_naive_now_or_a_negative_skew(now, skew, why):
    with pytest.raises(ValueError, match=why):
        NotAfter(now, skew)


def test_not_after_expectation(gxe):
    rule = NotAfter(NOW, timedelta(minutes=5))
    assert rule.expectation("d") == gxe.ExpectColumnValuesToBeBetween(
        column="d", max_value=NOW + timedelta(minutes=5)
    )
