"""Stand-ins for the scorer's fast tests (tests/models/serving/test_scorer*.py): an online
store of precomputed scores and features by clip id, and an experiment factory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pyarrow as pa

from models.core.names import FEATURE_SERVICE
from models.experiments.config import ExperimentConfig
from models.serving import scorer as sc

T0 = datetime(2026, 6, 10, tzinfo=UTC)
NO_INTERVAL = {"score_low": None, "score_high": None, "interval_level": None}
DAY = timedelta(days=1)


def experiment(eid="exp", start=T0, end=T0 + 10 * DAY, aliases=None, variants=None):
    return ExperimentConfig(
        experiment_id=eid,
        name=eid,
        variants=variants or {"control": 0.5, "treatment": 0.5},
        start=start,
        end=end,
        primary_metric="watch_time_s",
        min_sample_size=1,
        confidence_level=0.95,
        model_aliases={"control": "champion", "treatment": "challenger"}
        if aliases is None
        else aliases,
    )


class Store:
    """Online rows by clip id: a precomputed score and version, and features (or none)."""

    def __init__(self, scores=None, features=None, score_fields=None):
        self.scores, self.features, self.calls = scores or {}, features or {}, []
        # the clip_scores view's fields (a registry applied before #17 lacks the interval)
        self.score_fields = score_fields or [f.split(":")[1] for f in sc.SCORE_FEATURES]

    def get_feature_view(self, name, allow_registry_cache):
        assert (name, allow_registry_cache) == ("clip_scores", True)
        return SimpleNamespace(features=[SimpleNamespace(name=f) for f in self.score_fields])

    def get_feature_service(self, name, allow_cache):
        assert (name, allow_cache) == (FEATURE_SERVICE, True)
        return "service"

    def get_online_features(self, features, entity_rows):
        ids = [r["clip_id"] for r in entity_rows]
        self.calls.append((features, ids))
        if features == "service":
            cols = {
                c: [self.features.get(i, {}).get(c) for i in ids]
                for c in ("duration_s", "resolution", "views_1d", "clip_age_hours")
            }
            return SimpleNamespace(to_arrow=lambda: pa.table(cols))
        assert features == [f"clip_scores:{f}" for f in self.score_fields]
        # a score is (score, version) or (score, version, low, high, level)
        rows = [(*self.scores.get(i, (None, None)), None, None, None)[:5] for i in ids]
        keys = ("score", "model_version", "score_low", "score_high", "interval_level")
        out = {k: [r[j] for r in rows] for j, k in enumerate(keys) if k in self.score_fields}
        return SimpleNamespace(to_dict=lambda: out)
