"""Feast feature views of the clipflow repo.

No TTL (`ttl=timedelta(0)`): Feast applies a view's TTL to historical retrieval but not to
online reads, so a TTL would make training and serving disagree. A clip's newest row stays
its features after its 7 engagement days.
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Bool, Float64, Int64, String

from feature_repo.data_sources import clip_features_push, clip_scores_push
from feature_repo.entities import OWNER_TAGS, clip
from models.core import names

# Every model feature of the warehouse table clip_features, in the model's order
# (models.core.names, the one list the model, the warehouse and Feast share).
_DTYPES = {"float": Float64, "int": Int64, "bool": Bool, "string": String}
CLIP_FEATURE_FIELDS = [Field(name=n, dtype=_DTYPES[k]) for n, k in names.FEATURE_KINDS.items()]

CLIP_FEATURE_NAMES = [f.name for f in CLIP_FEATURE_FIELDS]

clip_features = FeatureView(
    name=names.FEATURES_VIEW,
    entities=[clip],
    ttl=timedelta(0),
    schema=[Field(name="clip_id", dtype=String), *CLIP_FEATURE_FIELDS],
    source=clip_features_push,
    online=True,
    description="The model's features of a clip as known at each scoring moment.",
    tags={**OWNER_TAGS, "grain": "clip_id x event_timestamp"},
    owner="ml-platform@clipflow",
)

clip_scores = FeatureView(
    name=names.SCORES_VIEW,
    entities=[clip],
    ttl=timedelta(0),
    schema=[
        Field(name="clip_id", dtype=String),
        Field(name="score", dtype=Float64),
        Field(name="model_version", dtype=String),
        # the prediction interval (#17; null for a model registered without intervals)
        Field(name="score_low", dtype=Float64),
        Field(name="score_high", dtype=Float64),
        Field(name="interval_level", dtype=Float64),
    ],
    source=clip_scores_push,
    online=True,
    description="The newest quality score of a clip (0-100), its prediction interval "
    "(score_low, score_high at interval_level) and the model version behind it.",
    tags=OWNER_TAGS,
    owner="ml-platform@clipflow",
)
