"""The A/B report files: JSON equal to the result, HTML with the decision and the plots."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.core.warehouse import Warehouse, connect
from models.experiments.aggregate import analyze
from models.experiments.config import ExperimentConfig, assign_variants
from models.experiments.decision import INTERVAL_KEYS, settle
from models.experiments.report import (
    decision_text,
    metric_label,
    result_rows,
    result_table,
    write_report,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EXP = ExperimentConfig.from_dict(
    {
        "experiment_id": "exp_report",
        "name": "Ranker v3",
        "variants": {"control": 0.5, "treatment": 0.5},
        "model_aliases": {"control": "champion", "treatment": "challenger"},
        "start": "2026-03-01T00:00:00Z",
        "end": "2026-03-02T00:00:00Z",
        "primary_metric": "watch_time_s",
        "secondary_metrics": ["sessions"],
        "min_sample_size": 1000,
        "confidence_level": 0.95,
        "min_runtime_days": 0,  # a one-day experiment: decided on its first look
    }
)


def build(home, lift: float, users: int = 4000, seed: int = 0) -> Warehouse:
    """One day of assignments and a pre/post event per user and metric, straight to Parquet."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"u{i:05d}" for i in range(users)], dtype=object)
    variant = assign_variants(EXP, ids)
    assigned = np.datetime64("2026-03-01T00:00", "us") + rng.integers(1, 3_600_000_000, users)
    activity = rng.gamma(2.0, 1.0, users)
    treated = variant == "treatment"
    rows = {"user_id": [], "event_timestamp": [], "metric": [], "value": []}
    for metric, scale, effect in (("watch_time_s", 300.0, lift), ("sessions", 3.0, 0.0)):
        for offset_h, boost in ((-2, 0.0), (5, effect)):
            rows["user_id"].append(ids)
            rows["event_timestamp"].append(assigned + np.timedelta64(offset_h, "h"))
            rows["metric"].append(np.full(users, metric, dtype=object))
            noise = rng.lognormal(0, 0.5, users)
            rows["value"].append(scale * activity * noise * (1 + boost * treated))
    wh = Warehouse(home)
    tables = {
        "assignments": {"experiment_id": np.full(users, EXP.experiment_id, dtype=object),
                        "user_id": ids, "variant": variant, "assigned_at": assigned},
        "user_metrics": {k: np.concatenate(v) for k, v in rows.items()},
    }  # fmt: skip
    for name, cols in tables.items():
        d = wh.table_dir(name) / "ds=2026-03-01"
        d.mkdir(parents=True)
        arrays = {
            k: pa.array(v, pa.timestamp("us", tz="UTC")) if v.dtype.kind == "M" else pa.array(v)
            for k, v in cols.items()
        }
        pq.write_table(pa.table(arrays), d / "part-0.parquet")
    return wh


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    wh = build(tmp_path_factory.mktemp("ship"), lift=0.10)
    return analyze(connect(), wh, EXP, EXP.end)


def test_report_files_hold_the_result_and_the_decision(shipped, tmp_path):
    assert shipped["decision"] == "ship"
    json_path, html_path = write_report(shipped, EXP, tmp_path / "reports" / "ab")
    assert json_path.name == "exp_report.json" and html_path.name == "exp_report.html"
    assert json.loads(json_path.read_text()) == shipped

    page = html_path.read_text()
    text = decision_text(shipped, EXP)
    primary = shipped["metrics"][0]
    assert text.startswith("Ship treatment (model alias 'challenger'): watch time (s) per user up")
    assert f"{primary['relative_lift']:.1%}" in text and "95% CI +" in text
    assert "No secondary metric moved significantly." in text
    assert html.escape(text) in page
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 2
    assert "sample-ratio check" in page and "OK: the observed split" in page
    assert "http" not in page  # self-contained


def test_decision_text_for_each_outcome(shipped, tmp_path):
    flat = analyze(connect(), build(tmp_path / "flat", lift=0.0, seed=1), EXP, EXP.end)
    assert flat["decision"] == "no_ship"
    assert decision_text(flat, EXP).startswith(
        "Do not ship: no variant changed watch time (s) per user significantly"
    )
    big = replace(EXP, min_sample_size=1_000_000)
    waiting = {**shipped, "decision": "inconclusive"}
    assert decision_text(waiting, big).startswith("Keep the experiment running: the smallest")
    broken = {**shipped, "decision": "invalid_srm"}
    broken["srm"] = {**shipped["srm"], "observed": {"control": 2100, "treatment": 1900},
                     "p_value": 1e-5, "detected": True}  # fmt: skip
    text = decision_text(broken, EXP)
    assert text.startswith("Do not trust these results") and "treatment 47.5%" in text
    down = {**shipped, "decision": "no_ship"}
    down["metrics"] = [
        {**r, "lift": -abs(r["lift"]), "relative_lift": -0.04} for r in down["metrics"]
    ]
    assert decision_text(down, EXP).startswith(
        "Do not ship treatment: watch time (s) per user down 4.0%"
    )
    _, html_path = write_report(broken, EXP, tmp_path)
    assert "MISMATCH" in html_path.read_text()


def test_result_rows_flatten_for_the_ab_results_table(shipped):
    rows = result_rows(shipped)
    assert len(rows) == len(shipped["metrics"])
    assert {"experiment_id", "analyzed_at", "decision", "srm_p_value", "metric", "lift"} <= set(
        rows[0]
    )
    assert rows[0]["decision"] == "ship" and isinstance(rows[0]["srm_observed"], str)


def test_a_column_empty_on_every_row_is_a_string_column_not_arrow_null(shipped):
    rows = result_rows({**shipped, "decided_on": None})
    table = result_table(rows)
    assert table.schema.field("decided_on").type == pa.string()  # Iceberg v2 has no null type
    assert table.column("decided_on").to_pylist() == [None] * len(rows)
    assert table.to_pylist() == pa.Table.from_pylist(rows).to_pylist()  # nothing else changed
    decided = result_table(result_rows({**shipped, "decided_on": "2026-03-01T23:59:59"}))
    assert decided.column("decided_on").to_pylist() == ["2026-03-01T23:59:59"] * len(rows)


def test_metric_label():
    assert metric_label("watch_time_s") == "watch time (s)"
    assert metric_label("clips_viewed") == "clips viewed"


def test_a_model_change_is_said_in_words_and_the_served_versions_are_shown(shipped, tmp_path):
    why = "served model changed mid-experiment: treatment was served by v2, then v3 from x"
    changed = {
        **shipped,
        "decision": "invalid_model_change",
        "promotion": {"promoted": False, "version": None, "reason": why},
        "model_versions": {
            "known_from": "2026-03-01T00:00:00+00:00",
            "changed": ["treatment"],
            "variants": {
                "control": [{"version": "1", "from": None}],
                "treatment": [{"version": "2", "from": None},
                              {"version": "3", "from": "2026-03-01T12:00:00+00:00"}],
            },
        },
    }  # fmt: skip
    text = decision_text(changed, EXP)
    assert text.startswith("Do not trust these results: a variant's model version changed")
    assert f"({why})" in text and "Nothing was promoted" in text
    json_path, html_path = write_report(changed, EXP, tmp_path)
    assert json.loads(json_path.read_text()) == changed
    page = html_path.read_text()
    assert "<h2>Model versions served</h2>" in page
    assert "<td>treatment</td><td>v2, then v3 from 2026-03-01T12:00:00+00:00</td>" in page
    assert "<td>control</td><td>v1</td>" in page
    assert f"Promotion: {html.escape(why)}." in page
    # a result without model aliases has no such section
    _, plain = write_report(shipped, EXP, tmp_path / "plain")
    assert "Model versions served" not in plain.read_text()


def test_the_method_the_history_and_its_chart(shipped, tmp_path):
    earlier = {"analyzed_at": "2026-02-28T23:59:59.999999+00:00", "decision": "inconclusive",
               "decision_reason": "min_runtime", "final": False,
               "intervals": [{k: r[k] for k in INTERVAL_KEYS} for r in shipped["metrics"]
                             if r["primary"]]}  # fmt: skip
    result = settle(shipped, [earlier])
    assert result["decided_on"] == shipped["analyzed_at"] and len(result["history"]) == 2
    json_path, html_path = write_report(result, EXP, tmp_path)
    assert json.loads(json_path.read_text())["history"] == result["history"]
    page = html_path.read_text()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 3
    assert "Method and decision history" in page
    assert "sequential: always-valid 95% confidence sequences" in page
    assert "<td>2026-02-28</td><td>inconclusive</td><td>before the minimum runtime</td>" in page
    assert "<td>2026-03-02</td><td>ship (final)</td>" in page
    assert "final since 2026-03-02" in page


def test_decision_text_under_each_method(shipped):
    fixed = replace(EXP, method="fixed_horizon")
    running = {**shipped, "decision": "running", "decision_reason": "before_horizon"}
    assert decision_text(running, fixed).startswith(
        "Keep the experiment running: it is analysed once, at its fixed horizon (2026-03-02"
    )
    assert "not decision-grade" in decision_text(running, fixed)
    week = replace(EXP, min_runtime_days=7)
    early = {**shipped, "decision": "inconclusive", "decision_reason": "min_runtime"}
    assert decision_text(early, week) == (
        "Keep the experiment running: no decision before its minimum runtime of 7 days (from "
        "2026-03-01), whatever the figures say."
    )
    empty = {**shipped, "decision": "inconclusive", "decision_reason": "no_outcome_data"}
    assert "no outcome has been observed since assignment yet" in decision_text(empty, EXP)
    guard = {
        "metric": "sessions",
        "variant": "treatment",
        "guardrail": True,
        "significant": True,
        "lift": -0.5,
        "relative_lift": -0.08,
        "primary": False,
    }
    blocked = {**shipped, "decision": "no_ship", "decision_reason": "guardrail_down",
               "metrics": [*shipped["metrics"], guard]}  # fmt: skip
    assert decision_text(blocked, EXP) == (
        "Do not ship: watch time (s) rose, but a guardrail metric fell (sessions -8.0% "
        "(treatment))."
    )
