"""Experiment config validation and deterministic assignment."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest
import yaml
from scipy import stats

from models.experiments.config import (
    ConfigError,
    ExperimentConfig,
    assign_buckets,
    assign_variant,
    assign_variants,
    load_experiments,
    variants_for_buckets,
)
from models.synthetic import experiments as gen

METRICS = {"sessions", "clips_viewed", "watch_time_s"}
TWO = {"experiment_id": "exp_ranker_v2", "variants": {"control": 0.5, "treatment": 0.5}}
THREE = {"experiment_id": "exp_three_arm", "variants": {"control": 0.2, "a": 0.3, "b": 0.5}}

# Computed once with the sha256 scheme; a change here re-buckets every live user.
FROZEN = [
    ("u000001", "control", "b"),
    ("u000002", "control", "b"),
    ("u000003", "control", "b"),
    ("u000042", "treatment", "a"),
    ("u123456", "treatment", "control"),
    ("user-7", "control", "a"),
    ("alice", "control", "b"),
    ("bob", "treatment", "b"),
    ("9f1c2e", "treatment", "b"),
    ("u999999", "control", "b"),
]


def good(**overrides) -> dict:
    exp = {
        "experiment_id": "exp_ok",
        "name": "A fine experiment",
        "variants": {"control": 0.5, "treatment": 0.5},
        "model_aliases": {"control": "champion", "treatment": "challenger"},
        "start": "2026-01-04T00:00:00Z",
        "end": "2026-01-11T00:00:00Z",
        "primary_metric": "watch_time_s",
        "secondary_metrics": ["sessions", "clips_viewed"],
        "min_sample_size": 200,
        "confidence_level": 0.95,
    }
    exp.update(overrides)
    return {k: v for k, v in exp.items() if v is not None}


def write(tmp_path, experiments) -> str:
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"experiments": experiments}, sort_keys=False))
    return path


# -- assignment ---------------------------------------------------------------------------
@pytest.mark.parametrize(("user_id", "two_arm", "three_arm"), FROZEN)
def test_assignment_is_frozen(user_id, two_arm, three_arm):
    assert assign_variant(TWO, user_id) == two_arm
    assert assign_variant(THREE, user_id) == three_arm


def test_bucket_is_sha256_of_experiment_and_user():
    digest = hashlib.sha256(b"exp_ranker_v2:u000042").digest()
    assert assign_buckets("exp_ranker_v2", ["u000042"])[0] == int.from_bytes(digest[:8]) / 2**64
    assert assign_buckets("exp_ranker_v2", ["u000001"])[0] == 0.05445041416504881  # frozen


def test_a_config_and_a_mapping_assign_alike():
    ids = [f"u{i:06d}" for i in range(1, 51)]
    config = ExperimentConfig.from_dict(good(experiment_id="exp_ranker_v2"))
    assert [assign_variant(config, u) for u in ids] == list(assign_variants(TWO, ids))


@pytest.fixture(scope="module")
def million():
    ids = [f"u{i:07d}" for i in range(1_000_000)]
    return assign_buckets("exp_a", ids), assign_buckets("exp_b", ids)


def within_binomial(variants: np.ndarray, weights: dict[str, float], sigmas: float = 4.0):
    n = len(variants)
    for name, w in weights.items():
        count = int((variants == name).sum())
        assert abs(count - n * w) < sigmas * np.sqrt(n * w * (1 - w)), (name, count)


def test_split_accuracy_two_and_three_arms(million):
    a, b = million
    within_binomial(variants_for_buckets(a, TWO["variants"]), TWO["variants"])
    within_binomial(variants_for_buckets(b, THREE["variants"]), THREE["variants"])


def test_two_experiments_split_independently(million):
    a, b = million
    in_a = variants_for_buckets(a, TWO["variants"]) == "treatment"
    in_b = variants_for_buckets(b, TWO["variants"]) == "treatment"
    table = np.array([[(in_a & in_b).sum(), (in_a & ~in_b).sum()],
                      [(~in_a & in_b).sum(), (~in_a & ~in_b).sum()]])  # fmt: skip
    assert stats.chi2_contingency(table).pvalue > 1e-3


# -- config ---------------------------------------------------------------------------------
def test_generated_spec_loads(tmp_path):
    spec = gen.experiment_spec(0, 10 * gen.DAY_US, 10)
    configs, errors = load_experiments(write(tmp_path, [spec]), METRICS)
    assert errors == []
    (exp,) = configs
    assert exp.control == "control" and exp.treatments == ["treatment"]
    assert exp.start == datetime(1970, 1, 4, tzinfo=UTC) and exp.end.tzinfo is not None
    assert exp.metrics == ["watch_time_s", "sessions", "clips_viewed"]
    assert exp.model_aliases == {"control": "champion", "treatment": "challenger"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"name": None}, "name"),
        ({"primary_metric": None}, "primary_metric"),
        ({"variants": {"control": 0.5, "treatment": 0.4}}, "variants"),
        ({"variants": {"control": 1.5, "treatment": -0.5}}, "variants"),
        ({"variants": {"control": 1.0}}, "variants"),
        ({"start": "2026-01-11T00:00:00Z", "end": "2026-01-04T00:00:00Z"}, "end"),
        ({"start": "next tuesday"}, "start"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"confidence_level": 0}, "confidence_level"),
        ({"min_sample_size": 0}, "min_sample_size"),
        ({"min_sample_size": 10.5}, "min_sample_size"),
        ({"primary_metric": "revenue"}, "primary_metric"),
        ({"secondary_metrics": ["sessions", "likes"]}, "secondary_metrics"),
        ({"secondary_metrics": ["watch_time_s"]}, "secondary_metrics"),
        ({"model_aliases": {"control": "champion", "treatmnet": "challenger"}}, "model_aliases"),
        ({"experiment_id": "../escape"}, "experiment_id"),
        ({"method": "bayesian"}, "method"),
        ({"min_runtime_days": -1}, "min_runtime_days"),
        ({"min_runtime_days": 7.5}, "min_runtime_days"),
        ({"min_runtime_days": True}, "min_runtime_days"),
        ({"sequential_tuning_n": 0}, "sequential_tuning_n"),
        ({"method": "fixed_horizon", "horizon_users": 0}, "horizon_users"),
        ({"horizon_users": 500}, "horizon_users"),  # a sequential experiment has no horizon
        ({"guardrail_metrics": ["sessions", "sessions"]}, "guardrail_metrics"),
        ({"guardrail_metrics": ["watch_time_s"]}, "guardrail_metrics"),
        ({"guardrail_metrics": ["revenue"]}, "guardrail_metrics"),
        ({"guardrail_metrics": "sessions"}, "guardrail_metrics"),
    ],
)
def test_a_bad_field_is_named_and_the_others_load(tmp_path, override, field):
    bad = good(**{"experiment_id": "exp_bad", **override})
    configs, errors = load_experiments(write(tmp_path, [good(), bad]), METRICS)
    assert [c.experiment_id for c in configs] == ["exp_ok"]
    assert errors and all(isinstance(e, ConfigError) for e in errors)
    assert field in {e.field for e in errors}
    expected_label = "exp_bad" if field != "experiment_id" else "../escape"
    assert {e.experiment for e in errors} == {expected_label}


def test_the_method_fields_and_their_defaults(tmp_path):
    configs, errors = load_experiments(write(tmp_path, [
        good(),
        good(experiment_id="fixed", method="fixed_horizon", horizon_users=1,
             min_runtime_days=0, sequential_tuning_n=9, guardrail_metrics=["clips_viewed"],
             secondary_metrics=["sessions"]),
    ]), METRICS)  # fmt: skip
    assert errors == []
    default, fixed = configs
    assert (default.method, default.min_runtime_days, default.guardrail_metrics) == (
        "sequential", 7, [])
    assert default.tuning_n == default.min_sample_size * len(default.variants)
    assert (fixed.method, fixed.horizon_users, fixed.min_runtime_days, fixed.tuning_n) == (
        "fixed_horizon", 1, 0, 9)
    assert fixed.metrics == ["watch_time_s", "sessions", "clips_viewed"]
    assert type(fixed).from_dict(fixed.to_dict()) == fixed  # round trip


def test_missing_id_is_named_by_index_and_duplicates_are_rejected(tmp_path):
    configs, errors = load_experiments(
        write(tmp_path, [good(), good(experiment_id=None), good()]), METRICS
    )
    assert [c.experiment_id for c in configs] == ["exp_ok"]
    assert {(e.experiment, e.field) for e in errors} == {
        (1, "experiment_id"),
        ("exp_ok", "experiment_id"),
    }


def test_unknown_metrics_pass_without_a_metric_list(tmp_path):
    configs, errors = load_experiments(write(tmp_path, [good(primary_metric="revenue")]))
    assert errors == [] and configs[0].primary_metric == "revenue"


def test_unquoted_yaml_timestamps_and_dates_are_utc(tmp_path):
    path = tmp_path / "experiments.yaml"
    text = yaml.safe_dump({"experiments": [good()]}, sort_keys=False)
    text = text.replace("'2026-01-04T00:00:00Z'", "2026-01-04 02:00:00+02:00")
    path.write_text(text.replace("'2026-01-11T00:00:00Z'", "2026-01-11"))
    (exp,), errors = load_experiments(path)
    assert errors == []
    assert exp.start == datetime(2026, 1, 4, tzinfo=UTC)
    assert exp.end == datetime(2026, 1, 11, tzinfo=UTC)


def test_a_broken_file_is_one_error_naming_it(tmp_path):
    path = tmp_path / "experiments.yaml"
    path.write_text("experiments: [\n  - {experiment_id: x\n")
    configs, errors = load_experiments(path)
    assert configs == [] and len(errors) == 1 and errors[0].field == str(path)
    path.write_text("- just a list\n")
    assert load_experiments(path)[1][0].field == str(path)
    assert load_experiments(tmp_path / "missing.yaml") == ([], [])


def test_from_dict_raises_with_every_bad_field():
    with pytest.raises(ValueError, match="confidence_level") as err:
        ExperimentConfig.from_dict(good(confidence_level=2, min_sample_size=-1))
    assert "min_sample_size" in str(err.value)
