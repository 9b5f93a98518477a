"""The retrain-on-drift rule shared by the sensor and `clipflow run`."""

from __future__ import annotations

from pipelines.sensors.retrain_on_drift import drift_trigger, retrain_request


def test_no_drift_no_trigger():
    assert (
        drift_trigger({"dataset_drift": False, "rmse_alert": False}, "2026-01-10", None, 7) is None
    )
    assert drift_trigger({"skipped": "no champion"}, "2026-01-10", None, 7) is None


def test_drift_or_rmse_alert_triggers_with_a_reason():
    why = drift_trigger({"dataset_drift": True, "rmse_alert": True}, "2026-01-10", None, 7)
    assert why == "drift on 2026-01-10: dataset drift and rmse alert"
    assert drift_trigger({"rmse_alert": True}, "2026-01-10", None, 7).endswith("rmse alert")


def test_cooldown_counts_partition_days():
    meta = {"dataset_drift": True}
    assert drift_trigger(meta, "2026-01-16", "2026-01-10", 7) is None  # 6 days later
    assert drift_trigger(meta, "2026-01-17", "2026-01-10", 7) is not None  # 7 days later


def test_request_is_keyed_by_day_and_forces_a_gated_training():
    req = retrain_request("2026-01-10", "drift on 2026-01-10: dataset drift")
    assert req.run_key == "retrain-on-drift:2026-01-10" and req.partition_key == "2026-01-10"
    cfg = req.run_config["ops"]["clip_quality_model"]["config"]
    assert cfg == {"force_retrain": True, "retrain_trigger": "drift on 2026-01-10: dataset drift"}
    assert req.tags["clipflow/trigger"] == "drift"
