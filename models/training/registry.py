"""MLflow: log a trained model, register it as `clip_quality`, move its aliases, load it.

Models are stored in XGBoost's own UBJ format (`model.ubj`), never pickled. Each version
carries the tags of CONTRACT §3 plus `category_maps` (JSON); the booster also carries its
features and categories as an attribute, so the model file describes itself.

Aliases: `champion` serves; `challenger` is the newest validated version that has not
replaced the champion. MLflow aliases are last-writer-wins: `set_registered_model_alias`
has no compare-and-set. `set_alias_checked` narrows the race: it reads the alias, moves it
only if it still points where the caller's decision assumed, and re-reads afterwards.
Moves made through clipflow are also serialised by a lock (an `fcntl` lock file beside
a SQLite store, a PostgreSQL advisory lock for a PostgreSQL store); writers that bypass
clipflow, or stores behind an HTTP server, are not covered by the lock.

MLflow is imported inside the functions: it takes seconds to import. `log_and_register`
points MLflow's process-global tracking URI at its store for the call and restores it: do
not log to two different stores from threads of one process at the same time.
"""

from __future__ import annotations

import fcntl
import hashlib
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

from models.training.evaluation import diagnostic_plots
from models.training.train import BOOSTER_ATTR, TrainedModel, to_matrix

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from models.training.evaluation import GateResult

from models.core.names import CHALLENGER, CHAMPION, MODEL_NAME
from models.core.names import EXPERIMENT_NAME as EXPERIMENT

REQUIRED_METRICS = ("rmse", "mae", "r2")
PIP_PACKAGES = ("mlflow", "xgboost", "numpy", "pandas", "pyarrow", "scipy")
_READ_NOW = object()  # promote(): take the champion as it is when the lock is held


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


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def _experiment_id(client, experiment: str, artifact_location: str | None, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = _sqlite_path(uri)
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


def aliases(client, name: str = MODEL_NAME) -> dict[str, str] | None:
    """alias -> version of a registered model; None when the model is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {k: str(v) for k, v in model.aliases.items()}


@contextmanager
def promotion_lock(uri: str) -> Iterator[None]:
    """Serialise alias moves made through clipflow on one store (see the module doc)."""
    db = _sqlite_path(uri)
    if db is not None:
        with open(f"{db}.aliases.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    elif uri.startswith(("postgresql", "postgres:")):
        import sqlalchemy as sa

        key = int.from_bytes(
            hashlib.sha256(b"clipflow:model-aliases").digest()[:8], "big", signed=True
        )
        engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as con:
                con.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    con.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            engine.dispose()
    else:
        yield


def _store_uri(client, tracking_uri: str | None) -> str:
    return tracking_uri or getattr(client, "_registry_uri", None) or ""


def set_alias_checked(
    client,
    name: str,
    alias: str,
    version: str | int,
    expected_current: str | int | None,
    tracking_uri: str | None = None,
) -> bool:
    """Point `alias` at `version` only if it now points at `expected_current` (None: the
    alias must be absent). Returns True when, re-read after the move, the alias points at
    `version`; False when it was stale or another writer won. `tracking_uri` picks the lock
    (default: the client's registry URI)."""
    with promotion_lock(_store_uri(client, tracking_uri)):
        return _checked_move(client, name, alias, str(version), expected_current)


def _checked_move(client, name: str, alias: str, version: str, expected) -> bool:
    current = (aliases(client, name) or {}).get(alias)
    if current != (None if expected is None else str(expected)):
        return False
    client.set_registered_model_alias(name, alias, version)
    return (aliases(client, name) or {}).get(alias) == version


def promote(
    client,
    version: str | int,
    reason: str,
    expected_champion=_READ_NOW,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
) -> bool:
    """champion <- version, checked against `expected_champion` (the champion the decision
    was made against; None: there was none). Tags the version `promoted_reason` and clears
    `challenger` if it pointed at this version. Returns whether the move happened."""
    version = str(version)
    with promotion_lock(_store_uri(client, tracking_uri)):
        current = aliases(client, name) or {}
        expected = current.get(CHAMPION) if expected_champion is _READ_NOW else expected_champion
        if not _checked_move(client, name, CHAMPION, version, expected):
            return False
        client.set_model_version_tag(name, version, "promoted_reason", reason)
        if current.get(CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        return True


def set_challenger(
    client, version: str | int, reason: str, name: str = MODEL_NAME, tracking_uri: str | None = None
) -> bool:
    """challenger <- version, unless the champion is this version or the challenger is
    already this or a newer version. Tags the version `challenger_reason`."""
    version = str(version)
    with promotion_lock(_store_uri(client, tracking_uri)):
        current = aliases(client, name) or {}
        held = current.get(CHALLENGER)
        if current.get(CHAMPION) == version or (held is not None and int(held) >= int(version)):
            return False
        if not _checked_move(client, name, CHALLENGER, version, held):
            return False
        client.set_model_version_tag(name, version, "challenger_reason", reason)
        return True


def apply_gate(
    client,
    version: str | int,
    result: GateResult,
    expected_champion: str | int | None,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
) -> str:
    """Act on a gate result for a registered version: `champion` (passed and clearly better,
    or there was no champion), `challenger` (passed; or better but the champion moved
    meanwhile), `passed` (passed, but a newer challenger exists), `rejected` (failed).
    Tags the version `validation_status` and `gate` (the gate's sentences)."""
    version = str(version)
    text = " ".join(result.details.get("checks", result.reasons))[:5000]
    client.set_model_version_tag(name, version, "gate", text)
    if not result.passed:
        client.set_model_version_tag(name, version, "validation_status", "rejected")
        return "rejected"
    client.set_model_version_tag(name, version, "validation_status", "passed")
    if (expected_champion is None or result.better_than_champion) and promote(
        client, version, text, expected_champion, name, tracking_uri
    ):
        return CHAMPION
    return CHALLENGER if set_challenger(client, version, text, name, tracking_uri) else "passed"


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
