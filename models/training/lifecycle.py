"""One day of the model's lifecycle: retraining policy -> train -> gate -> register ->
promote, as one library call with a typed result (the `clip_quality_model` asset shows it).

The policy trains when there is no champion yet, when the champion's training data ends
`retrain_every_days` or more before the day's cutoff, or on demand (`force_retrain`, with
the trigger's reason). The gate (models/training/evaluation.py) runs on the holdout BEFORE
anything is registered: a rejected candidate registers nothing and leaves the champion
alone. An accepted one becomes a version of `clip_quality`, then `champion` when clearly
better (or when there is none) else `challenger`, by checked alias moves (registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from models.core.names import CHAMPION, FEATURE_COLUMNS, MODEL_NAME
from models.training.params import TrainParams

if TYPE_CHECKING:
    from models.training.evaluation import GateResult
    from models.training.train import TrainedModel


@dataclass(frozen=True)
class Policy:
    """When to train and how strict the gate is (the asset's launchpad config)."""

    retrain_every_days: int = 7
    force_retrain: bool = False
    retrain_trigger: str = ""  # why force_retrain was set (a sensor says, e.g. drift)
    min_labeled_clips: int = 200
    gate_tolerance_rmse: float = 0.5
    gate_bootstrap_samples: int = 1000
    # what a training reads (#19): clips created in the last `train_window_days` days before
    # the cutoff, sampled by whole clips to `train_row_budget` rows when more
    train_window_days: int = 90
    train_row_budget: int = 2_000_000


@dataclass
class Outcome:
    """What happened to the model today. `alias` is `champion`, `challenger`, `passed`
    (registered, a newer challenger exists) or `rejected`; None when nothing was trained."""

    decision: str
    trained: bool
    champion_before: str | None
    version: str | None = None
    alias: str | None = None
    gate_passed: bool | None = None
    gate_reasons: list[str] = field(default_factory=list)
    gate_checks: list[str] = field(default_factory=list)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    holdout_rows: int = 0
    best_iteration: int | None = None
    data_fingerprint: str | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    window: dict[str, str] = field(default_factory=dict)  # what was read (version tags)

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION


def retrain_reason(champion_tags: dict | None, cutoff: datetime, policy: Policy) -> str | None:
    """Why to train today, or None (the policy: no champion, schedule, on demand)."""
    if policy.force_retrain:
        return policy.retrain_trigger or "on demand (force_retrain)"
    if champion_tags is None:
        return "no champion yet"
    end = champion_tags.get("training_end")
    if not end:
        return "champion has no training_end tag"
    age = cutoff - datetime.fromisoformat(end)
    if age >= timedelta(days=policy.retrain_every_days):
        return (
            f"champion trained on data up to {end[:10]}, {age.days} days ago "
            f"(>= {policy.retrain_every_days})"
        )
    return None


def champion(client) -> tuple[str | None, dict | None]:
    """The champion's version and tags in the registry (None, None when there is none)."""
    from models.training import registry

    version = (registry.aliases(client) or {}).get(CHAMPION)
    return version, (client.get_model_version(MODEL_NAME, version).tags if version else None)


def run_day(
    training_set: Callable[[], tuple[pa.Table | None, dict[str, str]]],
    params: TrainParams,
    policy: Policy,
    *,
    cutoff: datetime,
    tracking_uri: str,
    artifact_location: str | None,
    run_id: str,
    plots_dir: Path,
) -> Outcome:
    """The day's lifecycle on the rows `training_set()` returns (None: the day has none),
    with the tags saying what was read (the window and sample). It is called only when
    training is due, so a day without training reads nothing."""
    from mlflow import MlflowClient

    from models.training import registry

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    champ_version, champ_tags = champion(client)
    reason = retrain_reason(champ_tags, cutoff, policy)
    if reason is None:
        return Outcome("kept champion: not due under the retraining policy", False, champ_version)
    rows, window = training_set()
    if rows is None:
        return Outcome("kept champion: no training set for the day", False, champ_version)
    n_clips = len(pc.unique(rows.column("clip_id")))
    if n_clips < policy.min_labeled_clips:
        why = f"{n_clips} labelled clips < min_labeled_clips {policy.min_labeled_clips}"
        return Outcome(f"kept champion: {why}", False, champ_version)
    out, verdict, trained = _train_and_gate(rows, params, policy, tracking_uri, plots_dir)
    out.decision, out.champion_before, out.window = reason, champ_version, dict(window)
    if verdict.passed:
        out.version = _register(out, trained, rows, run_id, tracking_uri, artifact_location)
        out.alias = registry.apply_gate(
            client, out.version, verdict, champ_version, tracking_uri=tracking_uri
        )
    else:
        out.alias = "rejected"
    return out


def _train_and_gate(
    rows: pa.Table, params: TrainParams, policy: Policy, tracking_uri: str, plots_dir: Path
) -> tuple[Outcome, GateResult, TrainedModel]:
    from models.serving.scoring import score
    from models.training import registry
    from models.training.evaluation import baseline_metrics, diagnostic_plots, gate, metrics
    from models.training.train import train

    trained = train(rows, params)
    y, pred = trained.y_holdout, trained.holdout_pred
    champion = registry.load_by_alias(CHAMPION, tracking_uri)
    champ_pred = score(champion, trained.holdout) if champion else None
    verdict = gate(
        y,
        pred,
        trained.y_train_mean,
        champ_pred,
        tolerance=policy.gate_tolerance_rmse,
        groups=trained.holdout["clip_id"],
        n_boot=policy.gate_bootstrap_samples,
        seed=params.seed,
    )
    out = Outcome(
        decision="",
        trained=True,
        champion_before=None,
        gate_passed=verdict.passed,
        gate_reasons=list(verdict.reasons),
        gate_checks=list(verdict.details.get("checks", verdict.reasons)),
        candidate=metrics(y, pred),
        champion=metrics(y, champ_pred) if champion else {},
        baseline=baseline_metrics(trained.y_train_mean, y),
        rows=dict(trained.rows),
        holdout_rows=len(y),
        best_iteration=trained.best_iteration,
        data_fingerprint=trained.data_fingerprint,
        plots=diagnostic_plots(trained.booster, y, pred, plots_dir),
    )
    return out, verdict, trained


def _register(
    out: Outcome,
    trained: TrainedModel,
    rows: pa.Table,
    run_id: str,
    tracking_uri: str,
    artifact_location: str | None,
) -> str:
    from models.monitoring.drift import REFERENCE_FILE, reference_profile
    from models.training import intervals, registry

    logged = {
        **out.candidate,
        **{f"baseline_{k}": v for k, v in out.baseline.items()},
        **{f"champion_{k}": v for k, v in out.champion.items()},
    }
    ho = trained.holdout
    day_end = ho["event_timestamp"] != ho["created_at"]
    reference = reference_profile(
        rows,
        ho.loc[day_end, "prediction"],
        FEATURE_COLUMNS,
        holdout_ages=ho.loc[day_end, "clip_age_hours"],
    )
    return registry.log_and_register(
        trained,
        logged,
        {"dagster_run_id": run_id, **out.window},
        out.plots,
        tracking_uri,
        documents={
            REFERENCE_FILE: reference,
            # prediction intervals by age at scoring, from the same holdout (#17)
            intervals.INTERVALS_FILE: intervals.calibrate(
                ho["clip_age_hours"], trained.y_holdout, trained.holdout_pred
            ),
        },
        artifact_location=artifact_location,
    )
