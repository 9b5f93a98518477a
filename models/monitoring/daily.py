"""One day of monitoring as one library call: the performance history as labels arrive,
the drift of the day's scored rows against the champion's reference profile, the alerts,
the JSON + HTML report and the `drift_metrics` rows (the `drift_report` asset shows it).

The rows compared are the `clip_features` day-end rows of the clips the champion scored
that day, with the champion's scores; the reference was stored with the model when it was
registered (models/monitoring/drift.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from models.core import stream
from models.core.names import CHAMPION, FEATURE_COLUMNS
from models.core.warehouse import Warehouse, ident
from models.monitoring import alerts, cohorts, drift, performance


@dataclass
class DriftDay:
    """What the day's monitoring found; `skipped` says why there is no report."""

    perf: dict | None
    skipped: str | None = None
    model_version: str | None = None
    result: dict = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    json_path: Path | None = None
    html_path: Path | None = None
    metrics_rows: int = 0

    @property
    def drifted(self) -> bool:
        return bool(
            self.result.get("dataset_drift") or (self.result.get("prediction") or {}).get("drifted")
        )


def monitor_day(
    warehouse: Warehouse,
    ds: str,
    end: datetime,
    *,
    tracking_uri: str,
    thresholds: drift.DriftThresholds,
    limits: alerts.AlertThresholds,
    history_days: int,
    performance_days: int,
) -> DriftDay:
    """Write the day's `model_performance` and, when the champion scored the day and has a
    reference, its drift report and `drift_metrics`."""
    from models.monitoring.report import write_report
    from models.training import registry

    day = date.fromisoformat(ds)
    history = performance.history(warehouse.con, warehouse, day, end, history_days)
    warehouse.write("model_performance", ds, history)
    hist = history.to_pylist()
    perf = performance.pooled(hist, since=day - timedelta(days=performance_days - 1))

    rows = scored_rows(warehouse, ds, end)
    versions = sorted(set(rows.column("model_version").to_pylist())) if rows.num_rows else []
    reference = (
        registry.load_document(versions[-1], drift.REFERENCE_FILE, tracking_uri)
        if versions
        else None
    )
    if reference is None:
        why = "no champion scores today" if not versions else f"v{versions[-1]} has no reference"
        return DriftDay(perf, skipped=why)

    version = versions[-1]
    current = current_profile(rows)
    result = drift.compare(reference, current, thresholds)
    since = drifted_since(warehouse, day, result, history_days)
    for name, first in since.items():
        entry = result["features"].get(name) or result["prediction"]
        entry["since"] = first
    result["changes"] = [
        {"feature": name, "since": first, "population": (
            result["features"].get(name) or result["prediction"]).get("population")}
        for name, first in sorted(since.items(), key=lambda kv: (kv[1], kv[0]))
    ]
    history_rows = [{**r, "scored_ds": r["scored_ds"].isoformat()} for r in hist]
    report = drift.build_report(
        ds, version, reference, current, result, thresholds, perf, history_rows
    )
    champion_rmse = registry.version_metric(version, "rmse", tracking_uri)
    found = alerts.evaluate(report, alerts.score_stats(rows["score"]), champion_rmse, limits)
    report["alerts"] = [{k: a[k] for k in ("name", "passed", "message")} for a in found]
    json_path, html_path = write_report(
        report, reference, current, warehouse.home / "reports" / "drift"
    )
    n = warehouse.write("drift_metrics", ds, metrics_table(result, version))
    return DriftDay(perf, None, version, result, found, json_path, html_path, n)


def drifted_since(warehouse: Warehouse, day: date, result: dict, days: int) -> dict[str, str]:
    """For each feature (and the prediction) drifted on `day`: the first day of its unbroken
    run of drifted days in `drift_metrics`, looking back at most `days` days (ISO dates).
    Reads one small partition per day back, and stops once every run has started."""
    drifted = set(result["drifted_features"])
    if (result.get("prediction") or {}).get("drifted"):
        drifted.add("prediction")
    since = dict.fromkeys(drifted, day.isoformat())
    for back in range(1, max(1, days)):
        d = day - timedelta(days=back)
        if not drifted or not warehouse.has("drift_metrics", d):
            break
        scan = warehouse.partition_scan("drift_metrics", d)
        rows = warehouse.con.sql(f"SELECT feature FROM {scan} WHERE drifted").fetchall()
        drifted &= {r[0] for r in rows}
        for name in drifted:
            since[name] = d.isoformat()
    return since


def current_profile(rows: pa.Table) -> dict:
    """The drift profile of the day's scored rows: features and the champion's scores, and
    their `cohorts` (like with like, models/monitoring/drift.py): the clips created that day
    (the day-end rows younger than 24 h) as arrivals, every row by its age bucket. The
    scores go in as Arrow, so a null score counts as missing (through numpy it became NaN,
    which the profile dropped without counting it)."""
    prof = drift.profile(rows, FEATURE_COLUMNS, predictions=rows.column("score"))
    if "clip_age_hours" in rows.column_names:
        age = rows.column("clip_age_hours").to_numpy()
        arrival = cohorts.bucket_index(age) == 0
        prof["cohorts"] = cohorts.cohort_profiles(
            rows, arrival, np.ones(rows.num_rows, bool), rows.column("score")
        )
    return prof


def scored_rows(warehouse: Warehouse, ds: str | date, end: datetime) -> pa.Table:
    """The features of the day-end `clip_features` rows of the clips the champion scored on
    `ds`, with `score` and `model_version` (an empty table when either partition is
    missing); only the columns the profiles read (7M rows: each column ~56 MB)."""
    features = ", ".join(f"f.{ident(c)}" for c in FEATURE_COLUMNS)
    if not (warehouse.has("clip_features", ds) and warehouse.has("clip_scores", ds)):
        return pa.table({"model_version": pa.array([], pa.string())})
    feats = warehouse.partition_scan("clip_features", ds)
    scores = warehouse.partition_scan("clip_scores", ds)
    sql = f"""
        SELECT {features}, s.score, s.model_version
        FROM {feats} f
        JOIN (SELECT clip_id, score, model_version FROM {scores} WHERE model_alias = ?) s
          USING (clip_id)
        WHERE f.event_timestamp = ?
        """
    # on a connection of its own: on the warehouse's, DuckDB's copy stayed beside Arrow's
    return stream.table(warehouse, sql, [CHAMPION, end])


def metrics_table(result: dict, model_version: str) -> pa.Table:
    """One `drift_metrics` row per feature (and the prediction) of a drift result."""
    entries = {
        **result["features"],
        **({"prediction": result["prediction"]} if result["prediction"] else {}),
    }
    return pa.Table.from_pylist(
        [
            {
                "feature": name,
                "kind": r["kind"],
                "method": r["method"],
                "statistic": r["statistic"],
                "threshold": _float(r["threshold"]),
                "drifted": r["drifted"],
                "missing_reference": _float(r.get("missing_reference")),
                "missing_current": _float(r.get("missing_current")),
                "population": r.get("population"),
                "cohort": r.get("cohort"),
                "n_reference": r.get("n_reference"),
                "n_current": r.get("n_current"),
                "model_version": model_version,
            }
            for name, r in entries.items()
        ],
        schema=METRICS_SCHEMA,
    )


def _float(x) -> float | None:
    return None if x is None else float(x)


METRICS_SCHEMA = pa.schema([
    ("feature", pa.string()),
    ("kind", pa.string()),
    ("method", pa.string()),
    ("statistic", pa.float64()),
    ("threshold", pa.float64()),
    ("drifted", pa.bool_()),
    ("missing_reference", pa.float64()),
    ("missing_current", pa.float64()),
    ("population", pa.string()),  # the rows compared (like with like, #17)
    ("cohort", pa.string()),  # the cohort of `statistic`: arrival or an age bucket
    ("n_reference", pa.int64()),
    ("n_current", pa.int64()),
    ("model_version", pa.string()),
])
