"""An experiment's `ship` moves the aliases (models/experiments/promotion.py) on a real
MLflow SQLite store; which variant shipped, from the result alone."""

from __future__ import annotations

from dataclasses import replace

from support import tiny_training_set

from models.experiments.config import ExperimentConfig
from models.experiments.promotion import Promotion, promote_from_experiment, shipped_variant
from models.synthetic.experiments import DAY_US, experiment_spec
from models.training import registry
from models.training import train as training
from models.training.evaluation import metrics


def test_promote_from_experiment_says_what_it_did(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = training.train(tiny_training_set(200), training.TrainParams(n_estimators=5))
    scores = metrics(trained.y_holdout, trained.holdout_pred)
    v1, v2 = (registry.log_and_register(trained, scores, None, None, uri) for _ in range(2))
    client = registry._client(uri)
    assert registry.promote(client, v1, "first model", expected_champion=None, tracking_uri=uri)
    exp = ExperimentConfig.from_dict(experiment_spec(0, 10 * DAY_US, 10))  # variants on aliases
    up = {"primary": True, "significant": True, "lift": 1.0, "variant": "treatment"}
    ship, no_ship = {"decision": "ship", "metrics": [up]}, {"decision": "no_ship", "metrics": [up]}

    assert promote_from_experiment(client, exp, no_ship, uri) == Promotion(
        False, None, "no promotion"
    )
    assert promote_from_experiment(client, exp, ship, uri) == Promotion(
        False, None, "no challenger to promote"
    )
    assert registry.set_challenger(client, v2, "gate passed", tracking_uri=uri)
    # a shipped variant not served by the challenger promotes nothing
    served_by_champion = replace(exp, model_aliases={"treatment": "champion"})
    assert promote_from_experiment(client, served_by_champion, ship, uri) == Promotion(
        False, None, "no promotion"
    )
    assert promote_from_experiment(client, exp, ship, uri) == Promotion(
        True, v2, f"champion <- v{v2}"
    )
    assert registry.aliases(client) == {"champion": v2}
    tags = client.get_model_version(registry.MODEL_NAME, v2).tags
    assert tags["promoted_by_experiment"] == exp.experiment_id
    assert tags["promoted_reason"] == f"A/B experiment {exp.experiment_id}: ship"


def test_a_promotion_that_loses_the_race_says_so(tmp_path, monkeypatch):
    """The champion moved between reading the aliases and the checked move."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = training.train(tiny_training_set(200), training.TrainParams(n_estimators=5))
    scores = metrics(trained.y_holdout, trained.holdout_pred)
    v1, v2 = (registry.log_and_register(trained, scores, None, None, uri) for _ in range(2))
    client = registry._client(uri)
    assert registry.promote(client, v1, "first model", expected_champion=None, tracking_uri=uri)
    assert registry.set_challenger(client, v2, "gate passed", tracking_uri=uri)
    seen = []

    def lost(*args, **kwargs):
        seen.append((args, kwargs))
        return False

    monkeypatch.setattr(registry, "promote", lost)
    exp = ExperimentConfig.from_dict(experiment_spec(0, 10 * DAY_US, 10))
    up = {"primary": True, "significant": True, "lift": 1.0, "variant": "treatment"}
    assert promote_from_experiment(client, exp, {"decision": "ship", "metrics": [up]}, uri) == (
        Promotion(False, None, "promotion lost a race: champion moved meanwhile")
    )
    assert seen == [
        ((client, v2, f"A/B experiment {exp.experiment_id}: ship", v1), {"tracking_uri": uri})
    ]
    assert "promoted_by_experiment" not in client.get_model_version(registry.MODEL_NAME, v2).tags


def _metric(variant, lift, primary=True, significant=True):
    return {"variant": variant, "lift": lift, "primary": primary, "significant": significant}


def test_shipped_variant_is_the_biggest_significant_primary_win():
    wins = [_metric("b", 0.2), _metric("c", 0.5), _metric("d", 0.3)]
    assert shipped_variant({"decision": "ship", "metrics": wins}) == "c"
    assert shipped_variant({"decision": "no_ship", "metrics": wins}) is None
    assert shipped_variant({"metrics": wins}) is None
    # a secondary metric, an insignificant win, no lift or a loss never ship a variant
    others = [
        _metric("x", 9.0, primary=False),
        _metric("y", 9.0, significant=False),
        _metric("z", 0.0),
        _metric("w", -1.0),
    ]
    assert shipped_variant({"decision": "ship", "metrics": others}) is None
    assert shipped_variant({"decision": "ship", "metrics": [*others, _metric("b", 0.1)]}) == "b"
