"""The model: retraining policy, XGBoost training, the validation gate and registration.

`clip_quality_model` decides whether to train today (no champion yet, the champion is
older than `retrain_every_days`, or `force_retrain` from the launchpad), trains on the
day's point-in-time training set, and runs the validation gate (models/training/evaluation.py) on
the holdout BEFORE anything is registered. The gate's verdict is the asset check
`validation_gate` (blocking). A rejected candidate registers nothing and leaves the
champion untouched; the rejection is reported with severity WARN so that the day's
scoring still runs with that champion, and its reasons show in the UI. An accepted
candidate becomes a new version of `clip_quality` with the `challenger` alias, or
`champion` when it is clearly better (or there is none), by checked alias moves.
"""

import re

import dagster as dg
from pydantic import Field, field_validator

from assets.constants import DAILY_PARTITIONS, MODEL_LANE, OWNERS, TRAINING, day_end
from assets.markdown import md_table
from assets.resources import EventsResource, MlflowResource, NotifierResource, WarehouseResource
from models.core.names import MODEL_NAME
from models.training.lifecycle import Outcome, Policy
from models.training.params import TrainParams

_DEVICE = re.compile(r"(cpu|cuda|gpu)(:\d{1,2})?")  # XGBoost's `device`
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # NUL, newline, escape, DEL, C1


def _plain(value) -> bool:
    """A string given as such: an `EnvVar` is checked once the run resolved it."""
    return isinstance(value, str) and not isinstance(value, dg.EnvVar)


class ModelConfig(dg.Config):
    """Hyperparameters, retraining policy and gate thresholds (defaults in one place)."""

    n_estimators: int = TrainParams.n_estimators
    max_depth: int = TrainParams.max_depth
    learning_rate: float = TrainParams.learning_rate
    subsample: float = TrainParams.subsample
    colsample_bytree: float = TrainParams.colsample_bytree
    min_child_weight: float = TrainParams.min_child_weight
    reg_lambda: float = TrainParams.reg_lambda
    early_stopping_rounds: int = TrainParams.early_stopping_rounds
    holdout_fraction: float = TrainParams.holdout_fraction
    validation_fraction: float = TrainParams.validation_fraction
    seed: int = TrainParams.seed
    nthread: int = TrainParams.nthread
    device: str = TrainParams.device  # cpu, cuda or cuda:<n> (where a GPU is); XGBoost's device
    retrain_every_days: int = Policy.retrain_every_days
    force_retrain: bool = Policy.force_retrain
    retrain_trigger: str = Policy.retrain_trigger  # why force_retrain was set: one line of text
    min_labeled_clips: int = Policy.min_labeled_clips
    gate_tolerance_rmse: float = Policy.gate_tolerance_rmse
    gate_bootstrap_samples: int = Policy.gate_bootstrap_samples
    train_window_days: int = Field(default=Policy.train_window_days, ge=1)
    train_row_budget: int = Field(default=Policy.train_row_budget, ge=1)

    @field_validator("device", mode="before")
    @classmethod
    def _device_is_an_xgboost_device(cls, value: str) -> str:
        if _plain(value) and not _DEVICE.fullmatch(value):
            raise ValueError(f"{value[:40]!r}: expected cpu, cuda, cuda:<n>, gpu or gpu:<n>")
        return value

    @field_validator("retrain_trigger", mode="before")
    @classmethod
    def _retrain_trigger_is_one_line(cls, value: str) -> str:
        """Free text (an MLflow tag value and a log line, bound, never pasted into SQL, a
        path or a shell): one line of printable text, so it cannot forge log lines."""
        if _plain(value) and (len(value) > 500 or _CONTROL.search(value)):
            raise ValueError("expected one line of printable text, at most 500 characters")
        return value


@dg.asset(
    group_name=TRAINING,
    owners=OWNERS[TRAINING],
    partitions_def=DAILY_PARTITIONS,
    deps=["training_set"],
    pool=MODEL_LANE,
    kinds={"xgboost", "mlflow"},
    description="XGBoost regressor of clip quality, trained on the day's training set when "
    "the retraining policy says, gated (validation_gate) and registered in MLflow as "
    "`clip_quality`: champion if it passes and beats the champion, else challenger.",
    check_specs=[
        dg.AssetCheckSpec(
            "validation_gate",
            asset="clip_quality_model",
            blocking=True,
            description="Candidate beats the mean predictor and is not "
            "worse than the champion beyond a tolerance (paired "
            "bootstrap CI), predictions in [0, 100], no NaN.",
        ),
        dg.AssetCheckSpec(
            "training_ran",
            asset="clip_quality_model",
            blocking=False,  # a failed training must never stop scoring with the champion
            description="The day's training (when due) ran to a verdict; a crash fails this "
            "check (ERROR), alerts, and keeps the champion serving.",
        ),
    ],
)
def clip_quality_model(
    context: dg.AssetExecutionContext,
    config: ModelConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    events: EventsResource,
    notifier: NotifierResource,
):
    from models.training.lifecycle import run_day

    ds, wh = context.partition_key, warehouse.get()
    fields = {k: getattr(config, k) for k in TrainParams.__dataclass_fields__}
    policy = Policy(**{k: getattr(config, k) for k in Policy.__dataclass_fields__})

    def rows():  # read only when the policy says train: the window, sampled to the budget
        if not wh.has("training_set", ds):
            return None, {}
        from models.features.training_set import read_window

        return read_window(
            wh.con, wh, ds, day_end(ds), policy.train_window_days, policy.train_row_budget
        )

    try:
        out = run_day(
            rows,
            TrainParams(**fields),
            policy,
            cutoff=day_end(ds),
            tracking_uri=mlflow.uri,
            artifact_location=mlflow.artifact_location,
            run_id=context.run.run_id,
            plots_dir=warehouse.home_path / "models" / ds,
        )
    except Exception as e:  # noqa: BLE001 - alert, keep the champion, let scoring run
        return _training_failed(context, e, notifier)
    if not out.trained:
        context.log.info(f"no training today: {out.decision}")
    elif out.version:
        context.log.info(f"clip_quality v{out.version} registered: {out.alias}")
    else:
        context.log.warning("candidate rejected by the gate: " + " ".join(out.gate_reasons))
    if out.promoted:
        events.publish(
            "model_promoted",
            {"version": out.version, "previous": out.champion_before, "reason": "validation gate"},
        )
    ran = dg.AssetCheckResult(check_name="training_ran", passed=True)
    return dg.MaterializeResult(metadata=_metadata(out), check_results=[_gate_check(out), ran])


def _training_failed(context, e: Exception, notifier: NotifierResource) -> dg.MaterializeResult:
    """A training that crashed (e.g. a non-finite value XGBoost refuses): the champion keeps
    serving and the day is still scored; the check fails with the error and an alert says so."""
    ds, why = context.partition_key, f"{type(e).__name__}: {str(e)[:500]}"
    context.log.exception(f"training failed for {ds}; the champion keeps serving")
    notifier.notify("training_failed", f"training failed for {ds}; champion kept: {why}", ds=ds)
    kept = "training failed: champion kept"
    return dg.MaterializeResult(
        metadata={"decision": kept, "trained": False, "error": why},
        check_results=[
            dg.AssetCheckResult(
                check_name="validation_gate", passed=True, metadata={"candidate": "none (failed)"}
            ),
            dg.AssetCheckResult(
                check_name="training_ran",
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description=why,
                metadata={"error": why},
            ),  # fmt: skip
        ],
    )


def _metadata(out: Outcome) -> dict:
    if not out.trained:
        return {
            "decision": out.decision,
            "trained": False,
            "champion_version": out.champion_before or "none",
        }
    table = [
        [
            k,
            round(out.candidate[k], 4),
            round(out.champion[k], 4) if out.champion else "-",
            round(out.baseline[k], 4),
        ]
        for k in ("rmse", "mae", "r2")
    ]
    meta = {
        "decision": out.decision,
        "trained": True,
        "dagster/row_count": out.rows["total"],  # the training set's rows, all splits
        "rows": out.rows,
        "gate": "passed" if out.gate_passed else "rejected: " + "; ".join(out.gate_reasons),
        "holdout_rows": out.holdout_rows,
        "best_iteration": out.best_iteration,
        **{k: out.candidate[k] for k in ("rmse", "mae", "r2")},
        "metrics_vs_champion": dg.MetadataValue.md(
            md_table(["", "candidate", "champion", "baseline"], table)
        ),
        "data_fingerprint": out.data_fingerprint,
        **out.window,  # the window and sample read (#19), as in the version's tags
        "champion_version_before": out.champion_before or "none",
        **{f"plot_{k}": dg.MetadataValue.path(str(v)) for k, v in out.plots.items()},
    }
    if out.version:
        meta.update(
            {
                "model_version": out.version,
                "alias": out.alias,
                "mlflow_model": f"models:/{MODEL_NAME}/{out.version}",
            }
        )
    else:
        meta.update({"model_version": "none (rejected)", "alias": "none"})
    return meta


def _gate_check(out: Outcome) -> dg.AssetCheckResult:
    if not out.trained:
        return dg.AssetCheckResult(
            check_name="validation_gate",
            passed=True,
            metadata={"candidate": f"none today ({out.decision.removeprefix('kept champion: ')})"},
        )
    return dg.AssetCheckResult(
        check_name="validation_gate",
        passed=bool(out.gate_passed),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"checks": dg.MetadataValue.md("\n".join(f"- {c}" for c in out.gate_checks))},
        description="; ".join(out.gate_reasons) or "passed",
    )


training_assets = [clip_quality_model]
