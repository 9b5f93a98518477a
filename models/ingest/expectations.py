"""Great Expectations 1.x suites built from the contract, and their validation.

The suite for a table is derived from `models.core.contract` (the same declarations that drive
the row-level quarantine): the partition has rows (where the table must), exactly the
contract's columns, no nulls in required columns, every value rule, no timestamp beyond
`not_after` (the ingestion's future bound, when given), and unique keys.
Great Expectations takes seconds to import, so it is imported only when a suite runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from models.core.contract import NotAfter, Table


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected: int | None
    detail: str = ""


@dataclass
class SuiteResult:
    table: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]


def build_suite(table: Table, *, require_rows: bool, not_after: NotAfter | None = None):
    """The GE ExpectationSuite of one warehouse partition of `table`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{table.warehouse}_contract")
    if require_rows:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    suite.add_expectation(
        gxe.ExpectTableColumnsToMatchSet(column_set=[*table.columns, "ds"], exact_match=True)
    )
    for fl in table.fields:
        if not fl.nullable:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=fl.name))
        for rule in fl.rules:
            exp = rule.expectation(fl.name)
            if exp is not None:
                suite.add_expectation(exp)
        if not_after is not None and fl.type == "timestamp":
            suite.add_expectation(not_after.expectation(fl.name))
    if table.warehouse == "engagement":
        suite.add_expectation(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="views", column_B="completions", or_equal=True
            )
        )
    if len(table.unique) == 1:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=table.unique[0]))
    elif table.unique:
        suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(table.unique)))
    return suite


def validate(
    df: pd.DataFrame, table: Table, *, require_rows: bool, not_after: NotAfter | None = None
) -> SuiteResult:
    """Run the table's suite on one partition's rows (an ephemeral GE context)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _skip_batch_fingerprint()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = ctx.suites.add(build_suite(table, require_rows=require_rows, not_after=not_after))
    source = ctx.data_sources.add_pandas(name=f"{table.warehouse}_partition")
    asset = source.add_dataframe_asset(name=table.warehouse)
    batch_def = asset.add_batch_definition_whole_dataframe(name="partition")
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    res = batch.validate(suite)
    outcomes = []
    for r in res.results:
        cfg = r.expectation_config
        kwargs = cfg.kwargs or {}
        details = r.result or {}
        unexpected = details.get("unexpected_count")
        detail = ""
        if not r.success:
            sample = details.get("partial_unexpected_list") or []
            observed = details.get("observed_value")
            detail = (
                f"sample: {sample[:5]}"
                if sample
                else (f"observed: {observed}" if observed is not None else "")
            )
            if r.exception_info and r.exception_info.get("raised_exception"):
                detail = str(r.exception_info.get("exception_message"))[:300]
        outcomes.append(
            ExpectationOutcome(cfg.type, kwargs.get("column"), bool(r.success), unexpected, detail)
        )
    return SuiteResult(table.warehouse, bool(res.success), len(df), outcomes)


def _skip_batch_fingerprint() -> None:
    """GE's pandas engine fingerprints every batch under 1 GB (`pandas_data_fingerprint`, an
    md5 of `hash_pandas_object` over all rows) for its batch markers, twice per validation:
    11 of 18 s on a 5M-row engagement day. clipflow never reads that marker (the partition
    is named by its table and day), so the threshold is set to 0: the expectations and
    their results are unchanged."""
    from great_expectations.execution_engine import pandas_execution_engine as engine

    if not hasattr(engine, "HASH_THRESHOLD"):  # the pin moved: say so rather than guess
        raise RuntimeError("great_expectations' pandas engine has no HASH_THRESHOLD")
    engine.HASH_THRESHOLD = 0


def rows_expected(table: str, ds: str, clip_days: list[str]) -> tuple[bool, str]:
    """Whether day `ds` of `table` must have rows, and why (the contract check says both).
    `clip_days`: the days the warehouse holds clips for. New clips arrive every day; a clip
    is watched from the day it exists, so engagement is expected once a clip exists before
    the day (the first day of a landing has none yet); labels and experiment data come and
    go."""
    if table == "clips":
        return True, "new clips arrive every day"
    if table == "engagement":
        before = [d for d in clip_days if d < ds]
        if before:
            return True, f"clips exist before {ds} (since {min(before)}), so they are watched"
        return False, f"no clip exists before {ds}: nothing could be watched yet"
    return False, f"{table} rows come and go (an empty day is not an error)"
