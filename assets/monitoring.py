"""Monitoring: the daily drift report, performance as labels arrive, and alerts.

`drift_report` (daily) compares the day's scored rows (the `clip_features` day-end rows of
the clips the champion scored that day, and the champion's scores) with the champion's
reference profile, stored with the model when it was registered (models/monitoring/drift.py). It
writes `drift_metrics` (one row per feature and one for the prediction), the
`model_performance` history (each recent day's champion rmse/mae on the labels known now,
models/monitoring/performance.py), and `$CLIPFLOW_HOME/reports/drift/<ds>.{json,html}`. Four alerts
(models/monitoring/alerts.py) are asset checks of severity WARN: a failure shows in the UI and goes
to the notifier, and does not stop the rest of the day. `retrain_on_drift_sensor`
(pipelines/sensors/retrain_on_drift.py) reads the report's metadata to request a gated retrain.
"""

import warnings
from typing import Literal

import dagster as dg

from assets.constants import DAILY_PARTITIONS, MODEL_LANE, MONITORING, OWNERS, day_end
from assets.markdown import md_table
from assets.resources import (
    EventsResource,
    MlflowResource,
    NotifierResource,
    WarehouseResource,
)
from models.monitoring.alerts import ALERTS


class MonitoringConfig(dg.Config):
    """Drift methods, thresholds and alert limits (defaults in one place)."""

    numerical_method: Literal["wasserstein", "psi"] = "wasserstein"  # an enum in the launchpad
    wasserstein_threshold: float = 0.1
    psi_threshold: float = 0.2
    jensen_shannon_threshold: float = 0.1
    drift_share: float = 0.5
    non_finite_rise: float = 0.0  # flag a feature whose NaN/inf share rises by more than this
    rmse_ceiling: float = 0.0  # 0: rmse_ratio x the champion's holdout rmse
    rmse_ratio: float = 1.3
    min_labels: int = 50
    max_missing_increase: float = 0.1
    coverage_tolerance: float = 0.05  # interval coverage may fall this far below its level
    performance_days: int = 7  # the report's `performance`: scores of the last 7 days
    history_days: int = 28  # the performance history kept per day


with warnings.catch_warnings():  # partitioned asset checks are a Dagster preview feature
    warnings.simplefilter("ignore", dg.PreviewWarning)
    _CHECKS = [
        dg.AssetCheckSpec(name, asset="drift_report", description=desc)
        for name, desc in ALERTS.items()
    ]


@dg.asset(
    group_name=MONITORING,
    owners=OWNERS[MONITORING],
    partitions_def=DAILY_PARTITIONS,
    deps=["clip_scores", "clip_features", "labels"],
    pool=MODEL_LANE,
    kinds={"duckdb", "numpy"},
    check_specs=_CHECKS,
    description="The day's feature and prediction drift against the champion's reference, "
    "performance history as labels arrive, alerts; JSON + HTML report.",
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    notifier: NotifierResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    from models.monitoring import alerts, drift
    from models.monitoring.daily import monitor_day

    ds = context.partition_key
    out = monitor_day(
        warehouse.get(),
        ds,
        day_end(ds),
        tracking_uri=mlflow.uri,
        thresholds=drift.DriftThresholds(
            numerical_method=config.numerical_method,
            wasserstein=config.wasserstein_threshold,
            psi=config.psi_threshold,
            jensen_shannon=config.jensen_shannon_threshold,
            drift_share=config.drift_share,
            non_finite_rise=config.non_finite_rise,
        ),
        limits=alerts.AlertThresholds(
            rmse_ceiling=config.rmse_ceiling or None,
            rmse_ratio=config.rmse_ratio,
            min_labels=config.min_labels,
            max_missing_increase=config.max_missing_increase,
            coverage_tolerance=config.coverage_tolerance,
        ),
        history_days=config.history_days,
        performance_days=config.performance_days,
    )
    perf = out.perf
    if out.skipped:
        context.log.info(f"no drift report: {out.skipped}")
        return _skipped(out.skipped, perf)
    result, version, html_path = out.result, out.model_version, out.html_path
    if result["non_finite_features"]:
        context.log.warning(
            f"non-finite values (NaN, inf) rose in: {', '.join(result['non_finite_features'])}"
        )
    if out.drifted:
        events.publish(
            "drift_detected",
            {"ds": ds, "model_version": version, "dataset_drift": result["dataset_drift"],
             "drift_share": result["drift_share"], "features": result["drifted_features"],
             "report": str(html_path)},
        )  # fmt: skip
    for a in out.alerts:
        if not a["passed"]:
            notifier.notify(
                f"drift_report.{a['name']}", a["message"], ds=ds, model_version=version,
                report=str(html_path),
            )  # fmt: skip
    by_name = {a["name"]: a for a in out.alerts}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": out.metrics_rows,
            "model_version": version,
            "dataset_drift": result["dataset_drift"],
            "drift_share": round(result["drift_share"], 4),
            "drifted_features": dg.MetadataValue.md(
                "\n".join(
                    f"- {c['feature']} since {c['since']}" for c in result.get("changes", [])
                    if c["feature"] != "prediction"
                )
                or "none"
            ),
            "prediction_drift": bool(result["prediction"] and result["prediction"]["drifted"]),
            "non_finite_features": dg.MetadataValue.md(
                "\n".join(
                    f"- {n}: {result['features'][n]['non_finite_reference']} -> "
                    f"{result['features'][n]['non_finite_current']} rows"
                    for n in result["non_finite_features"]
                )
                or "none"
            ),
            "rmse_alert": not by_name["rmse_ceiling"]["passed"],
            "rmse": perf["rmse"] if perf else None,
            "n_labels": perf["n_labels"] if perf else 0,
            "features": dg.MetadataValue.md(_table(result["features"])),
            "report": dg.MetadataValue.path(str(html_path)),
            "report_json": dg.MetadataValue.path(str(out.json_path)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=a["name"],
                passed=a["passed"],
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"message": a["message"], "value": str(a["value"])},
            )
            for a in out.alerts
        ],
    )


def _table(features: dict) -> str:
    """The 15 features nearest to (or furthest over) their threshold, with the rows each
    was judged on and since when it drifts; features not compared come last."""
    ranked = sorted(
        features.items(),
        key=lambda kv: -(kv[1]["statistic"] or 0) / (kv[1]["threshold"] or 1),
    )
    rows = [
        [name, f["method"], "n/a" if f["statistic"] is None else f"{f['statistic']:.4f}",
         "n/a" if f["threshold"] is None else f"{f['threshold']:.4g}",
         f.get("cohort") or "all rows", "**yes**" if f["drifted"] else "no",
         f.get("since") or ""]
        for name, f in ranked[:15]
    ]  # fmt: skip
    return md_table(["feature", "method", "statistic", "threshold", "judged on", "drifted",
                     "since"], rows)


def _skipped(why: str, perf: dict | None) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            "skipped": why,
            "dataset_drift": False,
            "rmse_alert": False,
            "rmse": perf["rmse"] if perf else None,
            "n_labels": perf["n_labels"] if perf else 0,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=name, passed=True, metadata={"message": f"not judged: {why}"}
            )
            for name in ALERTS
        ],
    )


monitoring_assets = [drift_report]
