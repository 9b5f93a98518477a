"""Each contract rule as declared and as compiled: the factories' parameters, the DuckDB
expression judged on values at and next to every bound, the quarantine reason word for word,
and the Great Expectations expectation. The ingestion tests (`test_contract_rules.py`) run
the contract's own tables; these run the rule kinds the tables do not use yet (a strict
maximum, a bound with no minimum, names and values that need quoting)."""

from __future__ import annotations

import math
import os

import duckdb
import pytest

from models.core.contract import (
    FLOAT32_MAX,
    NOT_BLANK,
    TABLES,
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
