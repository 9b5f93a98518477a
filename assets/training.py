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

from datetime import datetime, timedelta

import dagster as dg

from assets.constants import DAILY_PARTITIONS, OWNERS, TRAINING, day_end
from assets.markdown import md_table
from assets.resources import EventsResource, MlflowResource, WarehouseResource
from models.training.params import TrainParams


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
    device: str = TrainParams.device  # "cuda" where a GPU is available; nothing requires one
    retrain_every_days: int = 7
    force_retrain: bool = False
    retrain_trigger: str = ""  # why force_retrain was set (a sensor says, e.g. drift)
    min_labeled_clips: int = 200
    gate_tolerance_rmse: float = 0.5
    gate_bootstrap_samples: int = 1000


def retrain_reason(champion_tags: dict | None, cutoff: datetime, cfg: ModelConfig) -> str | None:
    """Why to train today, or None (the policy: no champion, schedule, on demand)."""
    if cfg.force_retrain:
        return cfg.retrain_trigger or "on demand (force_retrain)"
    if champion_tags is None:
        return "no champion yet"
    end = champion_tags.get("training_end")
    if not end:
        return "champion has no training_end tag"
    age = cutoff - datetime.fromisoformat(end)
    if age >= timedelta(days=cfg.retrain_every_days):
        return f"champion trained on data up to {end[:10]}, {age.days} days ago (>= {cfg.retrain_every_days})"
    return None


@dg.asset(
    group_name=TRAINING,
    owners=OWNERS[TRAINING],
    partitions_def=DAILY_PARTITIONS,
    deps=["training_set"],
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
        )
    ],
)
def clip_quality_model(
    context: dg.AssetExecutionContext,
    config: ModelConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    events: EventsResource,
):
    import pyarrow.compute as pc

    from models.features.clip_features import FEATURE_COLUMNS
    from models.monitoring.drift import REFERENCE_FILE, reference_profile
    from models.serving.scoring import score
    from models.training import registry, train
    from models.training.evaluation import baseline_metrics, diagnostic_plots, gate, metrics

    ds = context.partition_key
    cutoff = day_end(ds)
    client = mlflow.client()
    current = registry.aliases(client) or {}
    champ_version = current.get(registry.CHAMPION)
    champ_tags = (
        client.get_model_version(registry.MODEL_NAME, champ_version).tags if champ_version else None
    )
    reason = retrain_reason(champ_tags, cutoff, config)

    def skip(why: str):
        context.log.info(f"no training today: {why}")
        return dg.MaterializeResult(
            metadata={
                "decision": f"kept champion: {why}",
                "trained": False,
                "champion_version": champ_version or "none",
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="validation_gate",
                    passed=True,
                    metadata={"candidate": f"none today ({why})"},
                )
            ],
        )

    if reason is None:
        return skip("not due under the retraining policy")
    wh, con = warehouse.get(), warehouse.connect()
    part = wh.partition_dir("training_set", ds)
    if not part.is_dir():
        return skip("no training set for the day")
    rows = con.sql(f"SELECT * EXCLUDE (ds) FROM read_parquet('{part}/*.parquet')").to_arrow_table()
    n_clips = len(pc.unique(rows.column("clip_id")))
    if n_clips < config.min_labeled_clips:
        return skip(f"{n_clips} labelled clips < min_labeled_clips {config.min_labeled_clips}")

    params = TrainParams(**{k: getattr(config, k) for k in TrainParams.__dataclass_fields__})
    trained = train(rows, params)
    y, pred = trained.y_holdout, trained.holdout_pred
    cand = metrics(y, pred)
    base = baseline_metrics(trained.y_train_mean, y)
    champion = registry.load_by_alias(registry.CHAMPION, mlflow.uri)
    champ_pred = score(champion, trained.holdout) if champion else None
    champ = metrics(y, champ_pred) if champion else None
    verdict = gate(
        y,
        pred,
        trained.y_train_mean,
        champ_pred,
        tolerance=config.gate_tolerance_rmse,
        groups=trained.holdout["clip_id"],
        n_boot=config.gate_bootstrap_samples,
        seed=config.seed,
    )
    table = [
        [k, round(cand[k], 4), round(champ[k], 4) if champ else "-", round(base[k], 4)]
        for k in ("rmse", "mae", "r2")
    ]
    meta = {
        "decision": reason,
        "trained": True,
        "dagster/row_count": trained.rows["total"],  # the training set's rows, all splits
        "rows": trained.rows,
        "gate": "passed" if verdict.passed else "rejected: " + "; ".join(verdict.reasons),
        "holdout_rows": len(y),
        "best_iteration": trained.best_iteration,
        "rmse": cand["rmse"],
        "mae": cand["mae"],
        "r2": cand["r2"],
        "metrics_vs_champion": dg.MetadataValue.md(
            md_table(["", "candidate", "champion", "baseline"], table)
        ),
        "data_fingerprint": trained.data_fingerprint,
        "champion_version_before": champ_version or "none",
    }
    plots = diagnostic_plots(trained.booster, y, pred, warehouse.home_path / "models" / ds)
    meta.update({f"plot_{k}": dg.MetadataValue.path(str(v)) for k, v in plots.items()})
    check_meta = {
        "checks": dg.MetadataValue.md(
            "\n".join(f"- {c}" for c in verdict.details.get("checks", verdict.reasons))
        )
    }
    if verdict.passed:
        logged = {
            **cand,
            **{f"baseline_{k}": v for k, v in base.items()},
            **({f"champion_{k}": v for k, v in champ.items()} if champ else {}),
        }
        ho = trained.holdout
        reference = reference_profile(
            rows, ho.loc[ho["event_timestamp"] != ho["created_at"], "prediction"], FEATURE_COLUMNS
        )
        version = registry.log_and_register(
            trained,
            logged,
            {"dagster_run_id": context.run.run_id},
            plots,
            mlflow.uri,
            documents={REFERENCE_FILE: reference},
            artifact_location=mlflow.artifact_location,
        )
        outcome = registry.apply_gate(
            client, version, verdict, champ_version, tracking_uri=mlflow.uri
        )
        meta.update(
            {
                "model_version": version,
                "alias": outcome,
                "mlflow_model": f"models:/clip_quality/{version}",
            }
        )
        context.log.info(f"clip_quality v{version} registered: {outcome}")
        if outcome == registry.CHAMPION:
            events.publish(
                "model_promoted",
                {"version": version, "previous": champ_version, "reason": "validation gate"},
            )
    else:
        meta.update({"model_version": "none (rejected)", "alias": "none"})
        context.log.warning("candidate rejected by the gate: " + " ".join(verdict.reasons))
    return dg.MaterializeResult(
        metadata=meta,
        check_results=[
            dg.AssetCheckResult(
                check_name="validation_gate",
                passed=verdict.passed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=check_meta,
                description="; ".join(verdict.reasons) or "passed",
            )
        ],
    )


training_assets = [clip_quality_model]
