"""MLflow: log a trained model, register it as `clip_quality`, load it back.

Models are stored in XGBoost's own UBJ format (`model.ubj`), never pickled. Each version
carries the tags of docs/contract.md §3 plus `category_maps` (JSON); the booster also carries its
features and categories as an attribute, so the model file describes itself.

Moving the aliases (`champion`, `challenger`) and their log (which version each alias held
when: `alias_log`, `stamp`) is `models.training.aliases`; its functions are importable from
here too, as callers have always used them.

MLflow is imported inside the functions: it takes seconds to import. `log_and_register`
points MLflow's process-global tracking URI at its store for the call and restores it: do
not log to two different stores from threads of one process at the same time.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

import xgboost as xgb

from models.core.names import CHALLENGER, CHAMPION, MODEL_NAME
from models.core.names import EXPERIMENT_NAME as EXPERIMENT
from models.training.aliases import (
    alias_log,
    aliases,
    apply_gate,
    promote,
    set_alias_checked,
    set_challenger,
    sqlite_path,
    stamp,
)
from models.training.evaluation import diagnostic_plots
from models.training.train import BOOSTER_ATTR, TrainedModel, to_matrix

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [  # with the alias moves and names callers have always taken from here
    "CHALLENGER",
    "CHAMPION",
    "MODEL_NAME",
    "LoadedModel",
    "alias_log",
    "aliases",
    "apply_gate",
    "load_by_alias",
    "load_document",
    "log_and_register",
    "pip_requirements",
    "promote",
    "set_alias_checked",
    "set_challenger",
    "stamp",
    "version_metric",
]

REQUIRED_METRICS = ("rmse", "mae", "r2")
PIP_PACKAGES = ("mlflow", "xgboost", "numpy", "pandas", "pyarrow", "scipy")


@dataclass
class LoadedModel:
    booster: xgb.Booster
    version: str
    categories: dict[str, list[str]]
    features: list[str]
    name: str = MODEL_NAME
    alias: str | None = None
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def log_and_register(
    trained: TrainedModel,
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None,
    plots: Mapping[str, str | os.PathLike] | None,
    tracking_uri: str,
    experiment: str = EXPERIMENT,
    name: str = MODEL_NAME,
    artifact_location: str | None = None,
    documents: Mapping[str, dict] | None = None,
) -> str:
    """Log params, metrics, plots and the model in one MLflow run; register a new version of
    `name`; return its version (a string, as MLflow numbers them).

    `documents`: JSON artifacts of the run, {file name: dict} (e.g. the drift reference
    profile, `reference_profile.json`); read back with `load_document`.

    `metrics` must hold the holdout `rmse`, `mae`, `r2` (more keys are logged too; None/NaN
    values are skipped). `tags` adds to the version's tags (`dagster_run_id` belongs here).
    `plots` None: the importance and residual plots are drawn here. `artifact_location` is
    used only when the experiment is created (default: `mlartifacts/` beside a SQLite db).
    """
    import mlflow
    from mlflow.models import infer_signature

    missing = [k for k in REQUIRED_METRICS if k not in metrics]
    if missing:
        raise ValueError(f"metrics lack {missing}")
    clean = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
    version_tags = {**_contract_tags(trained), **{k: str(v) for k, v in (tags or {}).items()}}
    sample = to_matrix(trained.holdout.head(100), trained.categories)
    signature = infer_signature(sample, trained.booster.inplace_predict(sample))
    meta = {
        "features": trained.features,
        "categories": trained.categories,
        "feature_service": trained.feature_service,
        "target": "quality_score",
    }
    params = {
        **asdict(trained.params),
        "best_iteration": trained.best_iteration,
        **{f"rows_{k}": v for k, v in trained.rows.items()},
    }

    client = _client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp, _tracking_uri(tracking_uri):
        if plots is None:
            plots = diagnostic_plots(trained.booster, trained.y_holdout, trained.holdout_pred, tmp)
        exp_id = _experiment_id(client, experiment, artifact_location, tracking_uri)
        run_name = f"{name} {trained.training_end:%Y-%m-%d}"
        run_tags = {k: v for k, v in version_tags.items() if k != "category_maps"}
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=run_tags) as run:
            mlflow.log_params(params)
            info = mlflow.xgboost.log_model(
                trained.booster,
                name="model",
                model_format="ubj",
                signature=signature,
                pip_requirements=pip_requirements(),
                metadata=meta,
            )
            mlflow.log_metrics(clean, model_id=info.model_id)
            for path in plots.values():
                mlflow.log_artifact(str(path), artifact_path="plots")
            mlflow.log_dict(trained.categories, "category_maps.json")
            for file_name, doc in (documents or {}).items():
                mlflow.log_dict(doc, file_name)
        # inside the block: the registry store looks the logged model up via the global URI
        _ensure_registered_model(client, name)
        mv = client.create_model_version(
            name,
            source=info.model_uri,
            run_id=run.info.run_id,
            tags=version_tags,
            model_id=info.model_id,
        )
    return str(mv.version)


def _contract_tags(trained: TrainedModel) -> dict[str, str]:
    return {
        "dagster_run_id": "none",
        "training_start": trained.training_start.isoformat(),
        "training_end": trained.training_end.isoformat(),
        "training_rows": str(trained.rows["total"]),
        "feature_service": trained.feature_service,
        "data_fingerprint": trained.data_fingerprint,
        "category_maps": json.dumps(trained.categories, sort_keys=True),
    }


def pip_requirements() -> list[str]:
    """Exact pins of the installed serving packages (read locally: MLflow would otherwise
    infer them in a subprocess, seconds per model)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in PIP_PACKAGES]


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for a block, then restore the global URI and the
    MLFLOW_TRACKING_URI variable (mlflow.set_tracking_uri rewrites the variable)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved, saved_env = getattr(utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def _experiment_id(client, experiment: str, artifact_location: str | None, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = sqlite_path(uri)
    if artifact_location is None and db is not None:
        artifact_location = (db.resolve().parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location)
    except MlflowException as e:  # created by a concurrent writer
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(experiment).experiment_id


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _artifact_location(client, mv) -> str:
    """Where a version's files are. Resolved here for `models:/m-<id>` sources because
    MLflow would resolve them against the global tracking URI, not this client's."""
    model_id = mv.model_id
    if not model_id and mv.source.startswith("models:/m-"):
        model_id = mv.source[len("models:/") :].split("/")[0]
    return client.get_logged_model(model_id).artifact_location if model_id else mv.source


def _local_dir(location: str) -> str | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return url2pathname(parsed.path)
    return location if parsed.scheme == "" else None


def load_document(
    version: str | int, file_name: str, tracking_uri: str, name: str = MODEL_NAME
) -> dict | None:
    """A JSON artifact logged with `documents` on the run of a version; None if absent."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    run_id = client.get_model_version(name, str(version)).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = download_artifacts(
                run_id=run_id, artifact_path=file_name, dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def load_by_alias(alias: str, tracking_uri: str, name: str = MODEL_NAME) -> LoadedModel | None:
    """The version behind `alias`, loaded natively from its `model.ubj`; None when the model
    or the alias does not exist."""
    import mlflow
    from mlflow.models import Model

    client = _client(tracking_uri)
    version = (aliases(client, name) or {}).get(alias)
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    location = _artifact_location(client, mv)
    with tempfile.TemporaryDirectory() as tmp:
        local = _local_dir(location)
        if local is None:  # remote artifact store: fetch a copy
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=tmp, tracking_uri=tracking_uri
            )
        mlmodel = Model.load(os.path.join(local, "MLmodel"))
        data = mlmodel.flavors["xgboost"]["data"]
        booster = xgb.Booster(model_file=os.path.join(local, data))
    described = json.loads(booster.attr(BOOSTER_ATTR) or "null") or mlmodel.metadata or {}
    return LoadedModel(
        booster=booster,
        version=str(version),
        categories=described["categories"],
        features=list(described["features"]),
        name=name,
        alias=alias,
        run_id=mv.run_id,
        tags=dict(mv.tags),
    )


def version_metric(
    version: str | int, metric: str, tracking_uri: str, name: str = MODEL_NAME
) -> float | None:
    """A metric (e.g. the holdout `rmse`) of the run that logged a version; None if absent."""
    client = _client(tracking_uri)
    run_id = client.get_model_version(name, str(version)).run_id
    value = client.get_run(run_id).data.metrics.get(metric) if run_id else None
    return None if value is None else float(value)
