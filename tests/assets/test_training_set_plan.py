"""Whether and how the training_set asset builds (#19/#20): the model's config in the run
says the window and the policy; a set asked for alone, or a registry that cannot answer,
means it is built."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import dagster as dg

from assets.feature_store import _plan
from assets.resources import MlflowResource

CUTOFF = datetime(2026, 5, 7, 23, 59, 59, 999999, tzinfo=UTC)


def _context(model_config: dict | None, with_model: bool = True):
    keys = {dg.AssetKey("training_set")} | (
        {dg.AssetKey("clip_quality_model")} if with_model else set()
    )
    ops = (
        {} if model_config is None else {"clip_quality_model": SimpleNamespace(config=model_config)}
    )
    step = SimpleNamespace(resolved_run_config=SimpleNamespace(ops=ops))
    return SimpleNamespace(
        op_execution_context=SimpleNamespace(get_step_execution_context=lambda: step),
        job_def=SimpleNamespace(asset_layer=SimpleNamespace(selected_asset_keys=keys)),
        log=logging.getLogger("test"),
    )


def _mlflow(tmp_path) -> MlflowResource:
    return MlflowResource(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def test_the_model_s_config_sets_the_window_and_the_policy(tmp_path):
    mlflow = _mlflow(tmp_path)  # an empty registry: no champion yet
    assert _plan(_context(None), mlflow, CUTOFF) == (90, 2_000_000, "no champion yet")
    cfg = {"train_window_days": 30, "train_row_budget": 5000, "n_estimators": 3}
    assert _plan(_context(cfg), mlflow, CUTOFF) == (30, 5000, "no champion yet")
    forced = {"force_retrain": True, "retrain_trigger": "drift on views_1d"}
    assert _plan(_context(forced), mlflow, CUTOFF)[2] == "drift on views_1d"


def test_asked_for_alone_it_is_built(tmp_path):
    got = _plan(_context({"train_window_days": 7}, with_model=False), _mlflow(tmp_path), CUTOFF)
    assert got == (7, 2_000_000, "asked for without the model")


def test_a_registry_that_cannot_answer_means_built(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"not a database" * 100)
    why = _plan(_context(None), _mlflow(tmp_path), CUTOFF)[2]
    assert why is not None and why.startswith("the registry could not say")
