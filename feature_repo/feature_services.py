"""Feast feature services: versioned sets of features that a model or an app reads."""

from feast import FeatureService

from feature_repo.entities import OWNER_TAGS
from feature_repo.feature_views import clip_features, clip_scores
from models.core import names

clip_quality_v1 = FeatureService(
    name=names.FEATURE_SERVICE,
    features=[clip_features],
    description="Inputs of the clip_quality model (registered model tag feature_service).",
    tags={**OWNER_TAGS, "model": names.MODEL_NAME},
    owner="ml-platform@clipflow",
)

clip_scores_v1 = FeatureService(
    name="clip_scores_v1",
    features=[clip_scores],
    description="The served quality score of a clip, for apps.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)
