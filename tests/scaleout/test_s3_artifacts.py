"""MLflow's artifacts on S3-compatible object storage (#21): with
`CLIPFLOW_MLFLOW_ARTIFACTS=s3://bucket/prefix` a registered model, its plots and documents
are written to the bucket (nothing to the home), and loaded back from it: the same booster,
the same predictions. A wrong secret is refused by the server, and no error shows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import tiny_training_set

from assets.resources import MlflowResource
from models.core.settings import check_artifact_uri
from models.training import registry
from models.training import train as training
from models.training.evaluation import metrics
from models.training.train import to_matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def test_a_model_is_registered_to_and_loaded_from_the_bucket(s3_env, home, monkeypatch):
    prefix = f"mlartifacts-{home.parent.name}"
    location = f"s3://{s3_env.bucket}/{prefix}"
    monkeypatch.setenv("CLIPFLOW_MLFLOW_ARTIFACTS", location + "/")
    resource = MlflowResource()
    assert resource.artifact_location == location  # even beside a SQLite registry
    uri = resource.uri
    model = training.train(tiny_training_set(300), training.TrainParams(n_estimators=12))
    version = registry.log_and_register(
        model, metrics(model.y_holdout, model.holdout_pred), None, None, uri,
        artifact_location=resource.artifact_location, documents={"doc.json": {"a": 1}},
    )  # fmt: skip
    registry.promote(registry._client(uri), version, "first", expected_champion=None,
                     tracking_uri=uri)  # fmt: skip

    stored = s3_env.keys(prefix + "/")
    names = {key.rsplit("/", 1)[-1] for key in stored}
    assert {"MLmodel", "model.ubj", "doc.json"} <= names, sorted(names)
    assert any("/plots/" in key for key in stored)
    assert not list(home.rglob("model.ubj")) and not (home / "mlartifacts").exists()

    loaded = registry.load_by_alias("champion", uri)
    assert loaded is not None and loaded.version == version
    x = to_matrix(model.holdout, model.categories)
    np.testing.assert_array_equal(loaded.booster.inplace_predict(x),
                                  model.booster.inplace_predict(x))  # fmt: skip
    assert registry.load_document(version, "doc.json", uri) == {"a": 1}

    # another process with a wrong secret (MLflow keeps its S3 client per process)
    code = ("import sys\nfrom models.training import registry\n"
            "registry.load_by_alias('champion', sys.argv[1])\n")  # fmt: skip
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    r = subprocess.run([sys.executable, "-c", code, uri], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode != 0
    assert "SignatureDoesNotMatch" in r.stderr or "403" in r.stderr, r.stderr[-2000:]
    assert "not-the-secret" not in r.stderr + r.stdout
    assert s3_env.secret_key not in r.stderr + r.stdout


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("/srv/mlartifacts", "expected s3://bucket[/prefix]"),
        ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
        ("s3://a..b/x", "is not an S3 bucket name"),
        ("s3://bucket/../other", "no '..' segment"),
        ("s3://bucket/x?y", "no '..' segment"),
        ("s3://user:secret@bucket/x", "is not an S3 bucket name"),
        ("http://user:secret@host/x", "expected s3://"),
    ],
)
def test_a_bad_artifact_location_is_refused_naming_the_variable(value, names):
    with pytest.raises(ValueError, match="CLIPFLOW_MLFLOW_ARTIFACTS") as e:
        check_artifact_uri(value)
    assert names in str(e.value)
    assert "secret" not in str(e.value)


def test_a_good_location_is_kept_without_its_trailing_slash():
    assert check_artifact_uri("s3://my.bucket-1/ml/artifacts/") == "s3://my.bucket-1/ml/artifacts"
    assert check_artifact_uri("") == ""
